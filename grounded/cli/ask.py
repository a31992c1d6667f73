"""``grounded ask "..."``: a cited, verified answer with its numbered sources."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from grounded.cli.app import KBOption, app, console, fail, handle_errors, knowledge_base


@app.command()
@handle_errors
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    kb: KBOption = None,
    k: Annotated[int | None, typer.Option("-k", "--k", help="Evidence passages to read.")] = None,
    filters: Annotated[
        str | None, typer.Option("--filter", help='Filters as JSON, e.g. \'{"source": "docs"}\'.')
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore the answer cache.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Answer a question from the knowledge base; every sentence cites its source."""
    try:
        parsed = json.loads(filters) if filters else None
    except ValueError as exc:
        raise fail(f'--filter is not valid JSON ({exc}); example: --filter \'{{"source": "docs"}}\'', 2) from None
    knowledge = knowledge_base(kb)
    answer = knowledge.ask(question, k=k, filters=parsed, use_cache=not no_cache)
    if as_json:
        console.print_json(json.dumps(answer.to_dict(), default=str))
        return
    if answer.abstained:
        console.print(f"[bold yellow]{answer.text}[/]", highlight=False)
        if answer.closest is not None:
            cid = answer.closest.citations[0]
            console.print(f"Closest evidence: “{answer.closest.text}” [{cid}]", highlight=False, soft_wrap=True)
    else:
        console.print(answer.text, highlight=False, soft_wrap=True)
    cited = answer.cited()
    if cited:
        console.print("\n[bold]Sources[/]")
    for c in cited:
        synced = f", synced {c.synced_at:%Y-%m-%d %H:%M}" if c.synced_at else ""
        console.print(
            f"  [{c.id}] {c.title or c.doc_id} — {c.uri or c.doc_id} (chars {c.start}-{c.end}; {c.source}{synced})",
            highlight=False,
            soft_wrap=True,
        )
    took = answer.timings.get("total_ms", 0.0) / 1000
    console.print(
        f"[dim]index version {answer.index_version} · {took:.1f} s{' · cached' if answer.cached else ''}[/]",
        highlight=False,
    )
