"""One sandboxed, read-only SQL connection per published version, for people and for models.

Both ``kb.sql`` (the notebook, for the people who own the knowledge base) and the ``sql`` tool
(models and API callers) run their queries here, after :mod:`grounded.sql.guard` accepted them:

1. an in-memory DuckDB ATTACHes the version's file ``READ_ONLY`` as :data:`CATALOG`;
2. then turns off every file, extension and network access (``enable_external_access = false``)
   and locks its configuration, so nothing a query says can turn them back on — even a query the
   guard missed can neither touch files nor change settings nor write;
3. a timer interrupts a query after ``timeout_s``; at most ``row_limit`` rows come back
   (``truncated`` says when there were more) and long cells are cut.

Two scopes share that sandbox. ``owner`` (``kb.sql``) resolves unqualified names in the
knowledge base's own tables (``documents``, ``chunks``, ``sources``, ...) and has the full-text
extension loaded, so BM25 macros resolve. The default scope resolves unqualified names among the
mirrored tables only (``<source>.<table>``, each source a schema).

Example::

    db = ReadOnlyDatabase.for_version(snapshot.version.store_path)
    result = db.execute("SELECT name FROM geo.state WHERE population > 1e7", timeout_s=5, row_limit=100)
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from indexes.duckdb_store import fts_extension_path

__all__ = [
    "CATALOG",
    "MAX_CELL_CHARS",
    "QueryResult",
    "ReadOnlyDatabase",
    "TableInfo",
    "quote_ident",
    "render_value",
    "visible_tables",
]

CATALOG = "kb"
"""The name a published version is attached under on the read-only connection."""
MAX_CELL_CHARS = 300
_INTERNAL_SCHEMAS = ("main", "information_schema", "pg_catalog")


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A mirrored table: ``schema`` is the source's name; ``rows`` is filled in where counted."""

    schema: str
    name: str
    columns: tuple[tuple[str, str], ...]
    primary_key: tuple[str, ...] = ()
    rows: int | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def quoted(self) -> str:
        """``"schema"."table"``, safe to paste into SQL whatever the names hold."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"


def quote_ident(name: str) -> str:
    """A DuckDB identifier, always double-quoted."""
    return '"' + name.replace('"', '""') + '"'


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
    """Rows of one query, cells rendered by :func:`render_value`."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool
    elapsed_s: float


@dataclass(slots=True)
class ReadOnlyDatabase:
    """One version's DuckDB file, attached read-only on a connection that cannot reach outside."""

    path: Path
    owner: bool
    con: duckdb.DuckDBPyConnection
    search_path: str
    _tables: tuple[TableInfo, ...] | None = field(default=None)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_version(cls, path: Path, *, owner: bool = False) -> ReadOnlyDatabase:
        """The (shared) read-only database of the version stored in ``path``.

        ``owner=True`` is the notebook's scope (the knowledge base's own tables too); the
        default is the mirrored tables only.
        """
        key = (str(path), owner)
        with _CACHE_LOCK:
            found = _CACHE.get(key)
            if found is None:
                found = cls(Path(path), owner, *_open(Path(path), owner=owner))
                # One version per scope: an old version's file may be deleted soon.
                for stale in [k for k in _CACHE if k[1] == owner]:
                    del _CACHE[stale]
                _CACHE[key] = found
            return found

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for one query (``USE`` and ``search_path`` are per connection)."""
        with self._lock:
            cur = self.con.cursor()
        cur.execute(f"USE {CATALOG}")
        cur.execute(f"SET search_path = '{self.search_path}'")
        return cur

    def tables(self) -> tuple[TableInfo, ...]:
        """Every mirrored table, sorted: every schema but the knowledge base's own (``main`` and the
        full-text index's ``fts_main_chunks``, which holds the terms of every source's documents)."""
        if self._tables is None:
            cur = self.cursor()
            try:
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
            finally:
                cur.close()
            pk = {(str(s), str(t)): tuple(str(c) for c in cols) for s, t, cols in keys}
            grouped: dict[tuple[str, str], list[tuple[str, str]]] = {}
            for schema, table, column, type_ in rows:
                grouped.setdefault((str(schema), str(table)), []).append((str(column), str(type_)))
            self._tables = tuple(TableInfo(s, t, tuple(cols), pk.get((s, t), ())) for (s, t), cols in grouped.items())
        return self._tables

    def execute(
        self, sql: str, *, timeout_s: float, row_limit: int, params: Sequence[Any] | None = None
    ) -> QueryResult:
        """Run an already-checked query; ``TimeoutError`` after ``timeout_s``, ``duckdb.Error`` on failure."""
        started = time.perf_counter()
        with self._running(timeout_s) as cur:
            result = cur.execute(sql, list(params) if params else None)
            columns = tuple(str(d[0]) for d in (result.description or []))
            fetched = result.fetchmany(row_limit + 1)
        rows = tuple(tuple(render_value(v) for v in row) for row in fetched[:row_limit])
        return QueryResult(columns, rows, len(fetched) > row_limit, round(time.perf_counter() - started, 4))

    def arrow(self, sql: str, params: Sequence[Any] | None = None, *, limit: int, timeout_s: float) -> pa.Table:
        """Rows of an already-checked query as an Arrow table of at most ``limit`` rows.

        The table's schema metadata ``grounded.truncated`` is ``b"1"`` when there were more.
        """
        with self._running(timeout_s) as cur:
            reader = cur.execute(sql, list(params) if params else None).fetch_record_batch(min(limit, 2048) or 1)
            batches: list[pa.RecordBatch] = []
            rows = 0
            truncated = False
            for batch in reader:
                if rows + batch.num_rows > limit:
                    batches.append(batch.slice(0, limit - rows))
                    truncated = True
                    break
                batches.append(batch)
                rows += batch.num_rows
            table = pa.Table.from_batches(batches, schema=reader.schema)
        meta = {**(table.schema.metadata or {}), b"grounded.truncated": b"1" if truncated else b"0"}
        return table.replace_schema_metadata(meta)

    @contextmanager
    def _running(self, timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self.cursor()
        timer = threading.Timer(timeout_s, cur.interrupt)
        timer.start()
        try:
            yield cur
        except duckdb.InterruptException as exc:
            raise TimeoutError(f"the query ran longer than {timeout_s:g}s and was stopped") from exc
        finally:
            timer.cancel()
            cur.close()


def visible_tables(db: ReadOnlyDatabase, readable: set[str] | None) -> tuple[TableInfo, ...]:
    """The mirrored tables of the ``readable`` sources (``None``: all); a hidden source's tables
    look exactly like tables that do not exist."""
    return db.tables() if readable is None else tuple(t for t in db.tables() if t.schema in readable)


_CACHE: dict[tuple[str, bool], ReadOnlyDatabase] = {}
_CACHE_LOCK = threading.Lock()


def _open(path: Path, *, owner: bool) -> tuple[duckdb.DuckDBPyConnection, str]:
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    try:
        if owner:
            con.execute(f"LOAD '{_quote(str(fts_extension_path()))}'")
        con.execute(f"ATTACH '{_quote(str(path))}' AS {CATALOG} (READ_ONLY)")
        con.execute(f"USE {CATALOG}")
        schemas = [
            str(r[0])
            for r in con.execute(
                "SELECT DISTINCT schema_name FROM duckdb_schemas() WHERE database_name = ? "
                "AND NOT list_contains(?, schema_name) AND NOT starts_with(schema_name, 'fts_') ORDER BY 1",
                [CATALOG, list(_INTERNAL_SCHEMAS)],
            ).fetchall()
        ]
        items = [f"{CATALOG}.main"] if owner else []
        items += [f"{CATALOG}.{_ident(s)}" for s in schemas]
        search_path = (",".join(items) or f"{CATALOG}.main").replace("'", "''")
        if not owner:
            con.execute("SET memory_limit = '1GB'")  # a model's runaway join must not take the server down
        # Last: from here on the connection can neither read files nor change its own settings.
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except duckdb.Error:
        con.close()
        raise
    return con, search_path


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _ident(name: str) -> str:
    return quote_ident(name) if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) else name
