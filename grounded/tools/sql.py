"""Read-only SQL over the mirrored tables of the published version, and the guard that keeps it so.

Four layers, each enough on its own for the common attacks, together for the rest:

1. :func:`check_sql` parses with DuckDB's own parser: exactly one statement, of type SELECT
   (``WITH`` included); ``ATTACH``, ``COPY``, ``INSTALL``, ``LOAD``, ``PRAGMA``, ``SET``, DDL
   and DML are refused before anything runs.
2. It walks the parsed tree (``json_serialize_sql``): every table must be a mirrored table
   (``<source>.<table>``, or a CTE of the query), never the catalog, the knowledge base's own
   tables or a file path; functions that read files, the network, settings or run SQL text
   (``read_csv``, ``glob``, ``query``, ``getenv``, ...) are refused; table functions other than
   ``range``/``generate_series``/``unnest`` are refused.
3. The query runs on its own in-memory connection that attaches the version's DuckDB file
   ``READ_ONLY``, then sets ``enable_external_access=false`` and ``lock_configuration=true``:
   even a query the guard missed can neither touch files nor change settings nor write.
4. A timer interrupts the query after ``timeout_s``; at most ``row_limit`` rows come back
   (``truncated`` says when there were more) and long cells are cut.

Example::

    guard = check_sql("SELECT name FROM geo.state WHERE population > 1e7", tables)
    result = ReadOnlyDatabase.for_version(path).execute(guard.sql, timeout_s=5, row_limit=100)
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from pydantic import Field

from grounded.errors import InvalidRequest
from grounded.tools.base import Params, Tool, ToolContext, ToolResult

__all__ = [
    "MAX_SQL_CHARS",
    "QueryResult",
    "ReadOnlyDatabase",
    "SqlGuard",
    "SqlRefused",
    "SqlTool",
    "TableInfo",
    "check_sql",
    "render_value",
    "visible_tables",
]

MAX_SQL_CHARS = 10_000
MAX_CELL_CHARS = 300
CATALOG = "kb"

_BLOCKED_FUNCTIONS = frozenset(
    {
        "query", "query_table", "getenv", "current_setting", "set_variable", "getvariable", "glob", "system",
        "shell", "load_extension", "install_extension", "checkpoint", "force_checkpoint", "sniff_csv",
        "json_execute_serialized_sql", "json_serialize_sql", "json_deserialize_sql", "make_timestamp_ms",
    }
)  # fmt: skip
_BLOCKED_PREFIXES = (
    "read_", "parquet_", "duckdb_", "pragma_", "sqlite_", "postgres_", "mysql_", "iceberg_", "delta_",
    "http", "s3", "gcs", "azure", "fts_", "which_secret", "sniff_",
)  # fmt: skip
_ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})


class SqlRefused(InvalidRequest):
    """The guard refused a query; the message says which rule and how to fix the query."""


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A mirrored table: ``schema`` is the source's name."""

    schema: str
    name: str
    columns: tuple[tuple[str, str], ...]
    primary_key: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)
class SqlGuard:
    """A query the guard accepted, with the mirrored tables it reads."""

    sql: str
    tables: tuple[TableInfo, ...]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _cte_names(tree: Any) -> set[str]:
    names: set[str] = set()
    for node in _walk(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            names.update(str(entry["key"]).lower() for entry in cte_map.get("map", []))
    return names


def _function_blocked(name: str) -> bool:
    lowered = name.lower()
    return lowered in _BLOCKED_FUNCTIONS or lowered.startswith(_BLOCKED_PREFIXES)


def check_sql(sql: str, tables: Iterable[TableInfo] | None, *, catalog: str = CATALOG) -> SqlGuard:
    """Accept ``sql`` only if it is one read-only SELECT over ``tables``; else raise :class:`SqlRefused`.

    ``tables=None`` allows any table of the attached ``catalog`` (the notebook's ``kb.sql``,
    which may read the knowledge base's own tables); the statement and function rules still hold.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise SqlRefused("the query is empty; pass one SELECT statement")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRefused(f"the query is {len(sql)} characters long; the limit is {MAX_SQL_CHARS}")
    parser = duckdb.connect(":memory:")
    try:
        try:
            statements = parser.extract_statements(sql)
        except duckdb.Error as exc:
            raise SqlRefused(f"the query does not parse ({str(exc).splitlines()[0]})") from exc
        if len(statements) != 1:
            raise SqlRefused(f"only one statement is allowed; got {len(statements)}")
        kind = statements[0].type
        if kind.name != "SELECT":
            raise SqlRefused(f"only SELECT (or WITH ... SELECT) is allowed; got a {kind.name} statement")
        row = parser.execute("SELECT json_serialize_sql(?)", [sql.strip().rstrip(";")]).fetchone()
    finally:
        parser.close()
    tree = json.loads(row[0]) if row else {"error": True, "error_message": "no parse tree"}
    if tree.get("error"):
        raise SqlRefused(f"the query is not a plain SELECT ({tree.get('error_message', 'unsupported syntax')})")
    known = {t.qualified.lower(): t for t in tables or ()}
    by_name: dict[str, list[TableInfo]] = {}
    for t in known.values():
        by_name.setdefault(t.name.lower(), []).append(t)
    ctes = _cte_names(tree)
    used: dict[str, TableInfo] = {}
    for node in _walk(tree):
        if "function_name" in node and _function_blocked(str(node["function_name"])):
            raise SqlRefused(
                f"function {node['function_name']!r} is not allowed: the SQL tool reads mirrored tables only "
                "(no files, network, settings or dynamic SQL)"
            )
        kind_name = node.get("type")
        if kind_name == "TABLE_FUNCTION":
            fn = str((node.get("function") or {}).get("function_name", "?"))
            if fn.lower() not in _ALLOWED_TABLE_FUNCTIONS:
                raise SqlRefused(
                    f"table function {fn!r} is not allowed; only mirrored tables and "
                    f"{', '.join(sorted(_ALLOWED_TABLE_FUNCTIONS))} may appear in FROM"
                )
        elif kind_name == "BASE_TABLE":
            catalog_name = str(node.get("catalog_name") or "").lower()
            schema = str(node.get("schema_name") or "").lower()
            name = str(node.get("table_name") or "").lower()
            if catalog_name not in ("", catalog.lower()):
                raise SqlRefused(f"table {catalog_name}.{schema}.{name} is outside the knowledge base")
            if (not schema and name in ctes) or tables is None:
                continue
            candidates = [known[f"{schema}.{name}"]] if f"{schema}.{name}" in known else []
            if not schema:
                candidates = by_name.get(name, [])
            if not candidates:
                listed = ", ".join(sorted(known)) or "none (sync a database source first)"
                raise SqlRefused(f"table {name if not schema else schema + '.' + name!r} is not a mirrored table; "
                                 f"available: {listed}")  # fmt: skip
            used[candidates[0].qualified] = candidates[0]
    return SqlGuard(sql.strip().rstrip(";").strip(), tuple(used[k] for k in sorted(used)))


def render_value(value: Any) -> Any:
    """A cell as JSON-ready text or number, written the way answers must repeat it."""
    if value is None or isinstance(value, bool | int | str):
        return value if not isinstance(value, str) or len(value) <= MAX_CELL_CHARS else value[:MAX_CELL_CHARS] + "…"
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, decimal.Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return render_value(str(value))


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool
    elapsed_s: float


@dataclass(slots=True)
class ReadOnlyDatabase:
    """One version's DuckDB file, attached read-only on a connection that cannot reach outside."""

    path: Path
    con: duckdb.DuckDBPyConnection
    search_path: str
    _tables: tuple[TableInfo, ...] | None = field(default=None)

    @classmethod
    def for_version(cls, path: Path) -> ReadOnlyDatabase:
        """The (shared) read-only database of the version stored in ``path``."""
        with _CACHE_LOCK:
            found = _CACHE.get(str(path))
            if found is None:
                found = cls(path, *_open(path))
                _CACHE.clear()  # one version at a time: the old one's file may be deleted soon
                _CACHE[str(path)] = found
            return found

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for one query (``USE`` and ``search_path`` are per connection)."""
        cur = self.con.cursor()
        cur.execute(f"USE {CATALOG}")
        cur.execute(f"SET search_path = '{self.search_path}'")
        return cur

    def tables(self) -> tuple[TableInfo, ...]:
        """Every mirrored table, sorted: every schema but the knowledge base's own (``main`` and the
        full-text index's ``fts_main_chunks``, which holds the terms of every source's documents)."""
        if self._tables is None:
            cur = self.cursor()
            rows = cur.execute(
                "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_catalog = ? AND table_schema NOT IN ('main', 'information_schema', 'pg_catalog') "
                "AND NOT starts_with(table_schema, 'fts_') "
                "ORDER BY table_schema, table_name, ordinal_position",
                [CATALOG],
            ).fetchall()
            keys = cur.execute(
                "SELECT schema_name, table_name, constraint_column_names FROM duckdb_constraints() "
                "WHERE database_name = ? AND constraint_type = 'PRIMARY KEY'",
                [CATALOG],
            ).fetchall()
            pk = {(str(s), str(t)): tuple(str(c) for c in cols) for s, t, cols in keys}
            grouped: dict[tuple[str, str], list[tuple[str, str]]] = {}
            for schema, table, column, type_ in rows:
                grouped.setdefault((str(schema), str(table)), []).append((str(column), str(type_)))
            self._tables = tuple(TableInfo(s, t, tuple(cols), pk.get((s, t), ())) for (s, t), cols in grouped.items())
        return self._tables

    def execute(self, sql: str, *, timeout_s: float, row_limit: int) -> QueryResult:
        """Run an already-checked query with a timeout and a row limit."""
        cur = self.cursor()
        timer = threading.Timer(timeout_s, cur.interrupt)
        started = time.perf_counter()
        timer.start()
        try:
            result = cur.execute(sql)
            columns = tuple(str(d[0]) for d in (result.description or []))
            fetched = result.fetchmany(row_limit + 1)
        except duckdb.InterruptException as exc:
            raise TimeoutError(f"the query ran longer than {timeout_s:g}s and was stopped") from exc
        finally:
            timer.cancel()
            cur.close()
        rows = tuple(tuple(render_value(v) for v in row) for row in fetched[:row_limit])
        return QueryResult(columns, rows, len(fetched) > row_limit, round(time.perf_counter() - started, 4))


_CACHE: dict[str, ReadOnlyDatabase] = {}
_CACHE_LOCK = threading.Lock()


def _open(path: Path) -> tuple[duckdb.DuckDBPyConnection, str]:
    con = duckdb.connect(":memory:")
    quoted = str(path).replace("'", "''")
    con.execute(f"ATTACH '{quoted}' AS {CATALOG} (READ_ONLY)")
    con.execute(f"USE {CATALOG}")
    schemas = [
        str(r[0])
        for r in con.execute(
            "SELECT DISTINCT schema_name FROM duckdb_schemas() WHERE database_name = ? "
            "AND schema_name NOT IN ('main', 'information_schema', 'pg_catalog') "
            "AND NOT starts_with(schema_name, 'fts_') ORDER BY 1",
            [CATALOG],
        ).fetchall()
    ]
    path_items = ",".join(f"{CATALOG}.{_ident(s)}" for s in schemas) or f"{CATALOG}.main"
    search_path = path_items.replace("'", "''")
    con.execute("SET memory_limit = '1GB'")
    # Last: from here on the connection can neither read files nor change its own settings.
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con, search_path


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"' if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) else name


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


def visible_tables(db: ReadOnlyDatabase, ctx: ToolContext) -> tuple[TableInfo, ...]:
    """The mirrored tables the caller may read: a hidden source's tables look like missing ones."""
    from grounded.access import readable_sources

    groups = getattr(ctx.extra.get("filters"), "acl_groups", None)
    acls = {name: s.acl for name, s in ctx.kb.settings.sources.items()} if ctx.kb is not None else {}
    allowed = readable_sources(acls, groups)
    return db.tables() if allowed is None else tuple(t for t in db.tables() if t.schema in allowed)


class SqlArguments(Params):
    query: str = Field(
        min_length=1, max_length=MAX_SQL_CHARS, description="One read-only SELECT (or WITH ... SELECT) statement."
    )


class SqlTool(Tool):
    """Read-only SQL over the mirrored tables of the knowledge base's published version."""

    name = "sql"
    description = (
        "Run one read-only SQL SELECT (DuckDB dialect) over the mirrored database tables, named "
        "<source>.<table>. Use it for counts, sums, averages, rankings and lookups of structured data."
    )
    Arguments = SqlArguments

    def run(self, args: Any, ctx: ToolContext) -> ToolResult:
        if ctx.kb is None:
            return ToolResult.failure(self.name, "no knowledge base is open")
        snapshot = ctx.kb.snapshot()
        db = ReadOnlyDatabase.for_version(snapshot.version.store_path)
        try:
            guard = check_sql(args.query, visible_tables(db, ctx))
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
