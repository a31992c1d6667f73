"""``grounded search "..."``: hybrid search from the command line, as a table or JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table

if TYPE_CHECKING:
    from grounded.retrieval import Mode

from grounded.cli.app import KBOption, app, console, fail, handle_errors, knowledge_base


@app.command()
@handle_errors
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    kb: KBOption = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Number of results.")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, bm25 or dense.")] = "hybrid",
    filters: Annotated[
        str | None, typer.Option("--filter", help='Filters as JSON, e.g. \'{"source": "docs"}\'.')
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Search the knowledge base and print the best chunks."""
    try:
        parsed = json.loads(filters) if filters else None
    except ValueError as exc:
        raise fail(f'--filter is not valid JSON ({exc}); example: --filter \'{{"source": "docs"}}\'', 2) from None
    knowledge = knowledge_base(kb)
    # search() refuses a mode that is not one of MODES with a message naming them.
    hits = knowledge.search(query, k=k, filters=parsed, mode=cast("Mode", mode))
    if as_json:
        console.print_json(
            json.dumps(
                [
                    {
                        "score": h.score,
                        "doc_id": h.doc_id,
                        "title": h.title,
                        "uri": h.uri,
                        "source": h.source,
                        "start": h.start,
                        "end": h.end,
                        "text": h.text,
                    }
                    for h in hits
                ]
            )
        )
        return
    table = Table(title=f"{len(hits)} results for {query!r} (version {knowledge.version})", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("title / source")
    table.add_column("text")
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit.text.split())
        table.add_row(
            str(rank),
            f"{hit.score:.4f}",
            f"[bold]{hit.title or hit.key}[/]\n[dim]{hit.source} · {hit.start}-{hit.end}[/]",
            snippet[:300] + ("…" if len(snippet) > 300 else ""),
        )
    console.print(table)
