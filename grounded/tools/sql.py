"""The ``sql`` tool: one read-only SELECT over the mirrored tables a caller may read.

The query runs on the caller's own sandboxed, read-only connection
(:func:`grounded.sql.database.caller_database`), which holds only the tables of the sources the
caller may read: a hidden source's tables, the knowledge base's own tables and the catalogs of
either are not there, so no name can reach them. Before it runs, the query passes
:func:`grounded.sql.guard.check_sql` against those same tables (a second layer: one SELECT, no
file or settings functions). A timeout and a row limit bound it; the rows become short sentences
the writer can quote and the verifier check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
from pydantic import Field

from grounded.sql.database import QueryResult, caller_database
from grounded.sql.guard import MAX_SQL_CHARS, SqlGuard, SqlRefused, check_sql
from grounded.tools.base import Params, Tool, ToolContext, ToolResult

__all__ = ["SqlArguments", "SqlTool", "render_rows", "row_keys"]


def render_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_rows: int = 20) -> str:
    """Rows as short sentences (``col = value; ...``) the writer can quote and the verifier check."""
    if not rows:
        return "The query returned no rows."
    lines = [f"The query returned {len(rows)} row{'s' if len(rows) != 1 else ''}."]
    for i, row in enumerate(rows[:max_rows], start=1):
        cells = "; ".join(f"{c} = {'NULL' if v is None else v}" for c, v in zip(columns, row, strict=True))
        lines.append(f"Row {i}: {cells}.")
    if len(rows) > max_rows:
        lines.append(f"({len(rows) - max_rows} more rows not shown.)")
    return "\n".join(lines)


def row_keys(guard: SqlGuard, result: QueryResult) -> list[list[Any]] | None:
    """Primary-key values of the returned rows, when the query read one table and selected its key."""
    if len(guard.tables) != 1 or not guard.tables[0].primary_key:
        return None
    lowered = [c.lower() for c in result.columns]
    idx = [lowered.index(k.lower()) for k in guard.tables[0].primary_key if k.lower() in lowered]
    if len(idx) != len(guard.tables[0].primary_key):
        return None
    return [[row[i] for i in idx] for row in result.rows]


class SqlArguments(Params):
    query: str = Field(
        min_length=1, max_length=MAX_SQL_CHARS, description="One read-only SELECT (or WITH ... SELECT) statement."
    )


class SqlTool(Tool[SqlArguments]):
    """Read-only SQL over the mirrored tables of the knowledge base's published version."""

    name = "sql"
    description = (
        "Run one read-only SQL SELECT (DuckDB dialect) over the mirrored database tables, named "
        "<source>.<table>. Use it for counts, sums, averages, rankings and lookups of structured data."
    )
    Arguments = SqlArguments

    def run(self, args: SqlArguments, ctx: ToolContext) -> ToolResult:
        if ctx.view is None:
            return ToolResult.failure(self.name, "no knowledge base is open")
        snapshot = ctx.view.snapshot
        db = caller_database(ctx.view)
        try:
            guard = check_sql(args.query, db.tables())
        except SqlRefused as exc:
            return ToolResult.failure(self.name, f"refused: {exc}", refused=True)
        try:
            result = db.execute(guard.sql, timeout_s=ctx.timeout_s, row_limit=ctx.row_limit)
        except TimeoutError as exc:
            return ToolResult.failure(self.name, str(exc), refused=True)
        except duckdb.Error as exc:
            return ToolResult.failure(self.name, f"the query failed: {str(exc).splitlines()[0]}")
        provenance: Mapping[str, Any] = {
            "tool": "sql",
            "source": ",".join(sorted({t.schema for t in guard.tables})),
            "tables": [t.qualified for t in guard.tables],
            "query": guard.sql,
            "row_keys": row_keys(guard, result),
            "index_version": snapshot.version.id,
            "truncated": result.truncated,
        }
        text = render_rows(result.columns, result.rows)
        if result.truncated:
            text += f"\nOnly the first {ctx.row_limit} rows were returned (row limit)."
        return ToolResult(
            tool=self.name,
            ok=True,
            text=text,
            data={
                "columns": list(result.columns),
                "rows": [list(r) for r in result.rows],
                "truncated": result.truncated,
            },
            provenance=provenance,
            size=len(result.rows),
        )
