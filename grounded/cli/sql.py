"""``grounded sql "SELECT ..."``: one read-only query over the mirrored tables, as a caller would run it.

The query goes through the same path as the ``sql`` tool of the API and MCP: the guard, then the
caller's own read-only connection, which holds only the tables of the sources the caller may
read (an API key's groups; with no key and no keys created, every source). The knowledge base's
own tables (documents, chunks) are not there: ``kb.sql`` in a notebook reads those.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from grounded.cli.app import KBOption, app, console, fail, handle_errors, knowledge_base


@app.command("sql")
@handle_errors
def sql_command(
    query: Annotated[str, typer.Argument(help='One read-only SELECT, e.g. "SELECT count(*) FROM shop.products".')],
    kb: KBOption = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            envvar="GROUNDED_API_KEY",
            show_envvar=True,
            help="API key whose groups the query runs for (needed once keys exist; see `grounded keys`).",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="Rows to return at most.")] = 100,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds before the query is stopped.")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print columns and rows as JSON.")] = False,
) -> None:
    """Run one read-only SQL query over the mirrored tables the caller may read."""
    from grounded.errors import Unauthorized
    from grounded.ops.keys import KEYS_FILE, KeyStore
    from grounded.tools import ToolContext, get_tool

    knowledge = knowledge_base(kb, create=False)
    try:
        principal = KeyStore(knowledge.path / KEYS_FILE).authenticate(key)
    except Unauthorized as exc:
        hint = "pass --key gk_... or set GROUNDED_API_KEY" if not key else "create one with `grounded keys create`"
        raise fail(f"{exc} ({hint})", code=2) from None
    if knowledge.version is None:
        raise fail(f"{knowledge.path} has no published version yet; sync a database source first (grounded sync)", 2)
    view = knowledge.store.view(acl_groups=principal.acl_groups)
    result = get_tool("sql").call({"query": query}, ToolContext(view=view, row_limit=limit, timeout_s=timeout))
    if not result.ok:
        raise fail(result.error or "the query failed", code=2 if result.refused else 1)
    columns, rows = result.data["columns"], result.data["rows"]
    if as_json:
        console.print_json(json.dumps({"columns": columns, "rows": rows, "truncated": result.data["truncated"]}))
        return
    table = Table(title=f"{len(rows)} row{'s' if len(rows) != 1 else ''} (version {view.version})")
    for column in columns:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    console.print(table)
    if result.data["truncated"]:
        console.print(f"[dim]only the first {limit} rows are shown (--limit)[/]")
