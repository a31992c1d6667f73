"""Sandboxed, read-only SQL connections over a published version, for people and for models.

Both ``kb.sql`` (the notebook, for the people who own the knowledge base) and the ``sql`` tool
(models and API callers) run their queries here, after :mod:`grounded.sql.guard` accepted them:

1. an in-memory DuckDB ATTACHes database files of the version ``READ_ONLY``;
2. then turns off every file, extension and network access (``enable_external_access = false``)
   and locks its configuration, so nothing a query says can turn them back on — even a query the
   guard missed can neither touch files nor change settings nor write;
3. a watchdog stops a query after ``timeout_s`` (DuckDB's interrupt, and the caller gets control
   back even when the query does not notice it); at most ``row_limit`` rows come back
   (``truncated`` says when there were more) and long cells are cut.

Two scopes share that sandbox:

- ``owner`` (``kb.sql``) attaches the version's whole store as :data:`CATALOG`: unqualified names
  resolve in the knowledge base's own tables (``documents``, ``chunks``, ``sources``, ...) and the
  full-text extension is loaded, so BM25 macros resolve.
- the **tables scope** (the ``sql`` tool, the SQL writer) attaches only the per-source copies of
  the mirrored tables (``tables/<source>.duckdb`` in the version, see
  :func:`indexes.mirror.export_tables`) of the sources the caller may read, each as a database
  named after its source, so ``<source>.<table>`` resolves as before. A table the caller may not
  read, the store (documents, chunks, the catalog of every table) and the version's files are
  not on that connection at all: no name, CTE or catalog query can reach them, whatever the
  guard lets through. :func:`caller_database` gives a request's caller its connection.

Example::

    db = caller_database(view)                      # the tables this caller may read, nothing else
    result = db.execute("SELECT name FROM geo.state WHERE population > 1e7", timeout_s=5, row_limit=100)
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import decimal
import functools
import logging
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import pyarrow as pa

from indexes.duckdb_store import fts_extension_path
from indexes.mirror import export_tables
from indexes.versions import TABLES_DIR

if TYPE_CHECKING:
    from grounded.store import View

__all__ = [
    "CATALOG",
    "MAX_CELL_CHARS",
    "MAX_RUNAWAY_QUERIES",
    "QueryResult",
    "ReadOnlyDatabase",
    "TableInfo",
    "caller_database",
    "quote_ident",
    "quote_identifier",
    "render_value",
    "visible_tables",
]

log = logging.getLogger("grounded.sql")

CATALOG = "kb"
"""The name a published version's store is attached under on the owner's connection."""
MAX_CELL_CHARS = 300
MAX_RUNAWAY_QUERIES = 2
"""Queries past their timeout that DuckDB has not stopped yet (some functions, ``range(10^8)`` or
``repeat(s, 10^9)``, check for interrupts only when they finish). While this many are still
running, new queries are refused at once instead of piling up on the CPU."""
MAX_CALLER_DATABASES = 16
"""Tables-scope connections kept per process (one per version and set of readable sources)."""
_OWNER_SCHEMAS_HIDDEN = ("main", "information_schema", "pg_catalog")
_T = TypeVar("_T")


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

    @property
    def sql_name(self) -> str:
        """``schema.table`` as prompts, templates and the grammar write it: each part bare when plain,
        else quoted (``shop."Order Lines"``, see :func:`quote_identifier`)."""
        return f"{quote_identifier(self.schema)}.{quote_identifier(self.name)}"


def quote_ident(name: str) -> str:
    """A DuckDB identifier, always double-quoted."""
    return '"' + name.replace('"', '""') + '"'


_PLAIN = re.compile(r"[a-z_][a-z0-9_]*")


@functools.cache
def _keywords() -> frozenset[str]:
    """Words DuckDB reads as keywords where a name stands (such names are written quoted)."""
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category IN ('reserved', 'type_function')"
        ).fetchall()
    finally:
        con.close()
    return frozenset(str(r[0]) for r in rows)


def quote_identifier(name: str) -> str:
    """``name`` as DuckDB reads it: bare when plain lower case and not a keyword, else double-quoted.

    What a model is shown and what it may write (prompts, grammar, templates) use this one
    spelling: ``Order Lines``, ``select`` or ``Name`` shown bare would be copied into SQL that
    does not parse (or, for ``Name``, that a case-exact grammar refuses).
    """
    if _PLAIN.fullmatch(name) and name not in _keywords():
        return name
    return quote_ident(name)


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
    """Database files of one version, attached read-only on a connection that cannot reach outside.

    ``readable`` is the set of sources whose tables are attached (tables scope; ``None``: every
    source); ``owner`` attaches the whole store instead.
    """

    path: Path
    owner: bool
    con: duckdb.DuckDBPyConnection
    search_path: str
    readable: frozenset[str] | None = None
    catalogs: tuple[str, ...] = ()
    """The databases attached (the sources' names; :data:`CATALOG` for the owner)."""
    _tables: tuple[TableInfo, ...] | None = field(default=None)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_version(
        cls, path: Path, *, owner: bool = False, readable: Collection[str] | None = None
    ) -> ReadOnlyDatabase:
        """The (shared) read-only database of the version whose store is ``path``.

        ``owner=True`` is the notebook's scope (the whole store, the knowledge base's own tables
        too). Otherwise the tables scope: the mirrored tables of the ``readable`` sources only
        (``None``: of every source) — see the module docstring.
        """
        if owner and readable is not None:
            raise ValueError("the owner scope reads the whole store; pass readable only for the tables scope")
        wanted = None if readable is None else frozenset(readable)
        key = (str(path), owner, wanted)
        with _CACHE_LOCK:
            found = _CACHE.get(key)
            if found is not None:
                _CACHE.move_to_end(key)
                return found
        # Opened outside the lock: a first open may copy a legacy version's tables (seconds).
        opened = _open_owner(Path(path)) if owner else _open_tables(Path(path), wanted)
        with _CACHE_LOCK:
            found = _CACHE.get(key)
            if found is None:
                found = cls(Path(path), owner, *opened)
                # One version per scope: an old version's files may be deleted soon.
                for stale in [k for k in _CACHE if k[1] == owner and k[0] != str(path)]:
                    del _CACHE[stale]
                _CACHE[key] = found
                while len(_CACHE) > MAX_CALLER_DATABASES:
                    _CACHE.popitem(last=False)
            else:
                opened[0].close()
            return found

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for one query (``USE`` and ``search_path`` are per connection)."""
        with self._lock:
            cur = self.con.cursor()
        if self.owner:
            cur.execute(f"USE {CATALOG}")
        cur.execute(f"SET search_path = '{self.search_path}'")
        return cur

    def tables(self) -> tuple[TableInfo, ...]:
        """The mirrored tables on this connection, sorted (owner scope: every schema but the knowledge
        base's own, ``main``, and the full-text index's ``fts_main_chunks``)."""
        if self._tables is None:
            self._tables = _owner_tables(self) if self.owner else _attached_tables(self)
        return self._tables

    def execute(
        self, sql: str, *, timeout_s: float, row_limit: int, params: Sequence[Any] | None = None
    ) -> QueryResult:
        """Run an already-checked query; ``TimeoutError`` after ``timeout_s``, ``duckdb.Error`` on failure."""
        started = time.perf_counter()

        def run(cur: duckdb.DuckDBPyConnection) -> tuple[tuple[str, ...], list[Any]]:
            result = cur.execute(sql, list(params) if params else None)
            return tuple(str(d[0]) for d in (result.description or [])), result.fetchmany(row_limit + 1)

        columns, fetched = self._running(run, timeout_s)
        rows = tuple(tuple(render_value(v) for v in row) for row in fetched[:row_limit])
        return QueryResult(columns, rows, len(fetched) > row_limit, round(time.perf_counter() - started, 4))

    def arrow(self, sql: str, params: Sequence[Any] | None = None, *, limit: int, timeout_s: float) -> pa.Table:
        """Rows of an already-checked query as an Arrow table of at most ``limit`` rows.

        The table's schema metadata ``grounded.truncated`` is ``b"1"`` when there were more.
        """

        def run(cur: duckdb.DuckDBPyConnection) -> pa.Table:
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

        return self._running(run, timeout_s)

    def _running(self, work: Callable[[duckdb.DuckDBPyConnection], _T], timeout_s: float) -> _T:
        """``work(cursor)`` in a worker thread, stopped after ``timeout_s`` (see :data:`MAX_RUNAWAY_QUERIES`).

        DuckDB checks for an interrupt between vectors of work; a single function over a huge
        value (``range(10^8)``, ``repeat(s, 10^9)``) checks only when it finishes. So the caller
        waits at most ``timeout_s`` plus a moment, whatever the query does; a query that ignores
        the interrupt finishes in the background, and while too many do, new ones are refused.
        """
        _admit()
        cur = self.cursor()
        box: dict[str, Any] = {}
        done = threading.Event()

        def target() -> None:
            try:
                box["value"] = work(cur)
            except BaseException as exc:  # handed to the waiting caller
                box["error"] = exc
            finally:
                cur.close()
                with _RUNAWAY_LOCK:  # with the caller's check below: counted once, released once
                    done.set()
                    if box.get("abandoned"):
                        _RUNAWAY[0] -= 1

        worker = threading.Thread(target=target, name="grounded-sql", daemon=True)
        worker.start()
        if not done.wait(timeout_s):
            with contextlib.suppress(duckdb.Error):  # it finished (and closed) just now
                cur.interrupt()
            if not done.wait(_INTERRUPT_GRACE_S):
                with _RUNAWAY_LOCK:
                    if not done.is_set():
                        box["abandoned"] = True
                        _RUNAWAY[0] += 1
                log.warning(
                    "a query ignored its %gs timeout; it keeps running in the background until it ends", timeout_s
                )
            raise TimeoutError(f"the query ran longer than {timeout_s:g}s and was stopped")
        if "error" in box:
            error = box["error"]
            if isinstance(error, duckdb.InterruptException):
                raise TimeoutError(f"the query ran longer than {timeout_s:g}s and was stopped") from error
            raise error
        value: _T = box["value"]
        return value


_INTERRUPT_GRACE_S = 0.2
_RUNAWAY = [0]
_RUNAWAY_LOCK = threading.Lock()


def _admit() -> None:
    with _RUNAWAY_LOCK:
        running = _RUNAWAY[0]
    if running >= MAX_RUNAWAY_QUERIES:
        raise TimeoutError(
            f"{running} earlier SQL queries ran past their timeout and are still being stopped; try again in a "
            "few seconds (and avoid functions over huge values, such as range(n) lists or repeat)"
        )


def caller_database(view: View) -> ReadOnlyDatabase:
    """The tables-scope database of ``view``'s version holding exactly the tables its caller may read."""
    return ReadOnlyDatabase.for_version(view.snapshot.version.store_path, readable=view.readable_sources())


def visible_tables(db: ReadOnlyDatabase, readable: Collection[str] | None) -> tuple[TableInfo, ...]:
    """The tables of ``db`` that belong to the ``readable`` sources (``None``: all)."""
    return db.tables() if readable is None else tuple(t for t in db.tables() if t.schema in readable)


_CACHE: OrderedDict[tuple[str, bool, frozenset[str] | None], ReadOnlyDatabase] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _connect() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(
        ":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )


def _lock_down(con: duckdb.DuckDBPyConnection) -> None:
    # Last: from here on the connection can neither read files nor change its own settings.
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _open_owner(path: Path) -> tuple[duckdb.DuckDBPyConnection, str, None, tuple[str, ...]]:
    con = _connect()
    try:
        con.execute(f"LOAD '{_quote(str(fts_extension_path()))}'")
        con.execute(f"ATTACH '{_quote(str(path))}' AS {CATALOG} (READ_ONLY)")
        con.execute(f"USE {CATALOG}")
        schemas = [
            str(r[0])
            for r in con.execute(
                "SELECT DISTINCT schema_name FROM duckdb_schemas() WHERE database_name = ? "
                "AND NOT list_contains(?, schema_name) AND NOT starts_with(schema_name, 'fts_') ORDER BY 1",
                [CATALOG, list(_OWNER_SCHEMAS_HIDDEN)],
            ).fetchall()
        ]
        items = [f"{CATALOG}.main", *(f"{CATALOG}.{quote_ident(s)}" for s in schemas)]
        _lock_down(con)
    except duckdb.Error:
        con.close()
        raise
    return con, ",".join(items).replace("'", "''"), None, (CATALOG,)


def _open_tables(
    path: Path, readable: frozenset[str] | None
) -> tuple[duckdb.DuckDBPyConnection, str, frozenset[str] | None, tuple[str, ...]]:
    files = _source_files(path)
    attach = sorted(files if readable is None else set(files) & readable)
    con = _connect()
    try:
        for source in attach:
            con.execute(f"ATTACH '{_quote(str(files[source]))}' AS {quote_ident(source)} (READ_ONLY)")
        search_path = ",".join(f"{quote_ident(s)}.main" for s in attach) or "memory.main"
        con.execute("SET memory_limit = '1GB'")  # a model's runaway join must not take the server down
        _lock_down(con)
    except duckdb.Error:
        con.close()
        raise
    return con, search_path.replace("'", "''"), readable, tuple(attach)


def _source_files(store_path: Path) -> dict[str, Path]:
    """``{source: its tables' file}`` of the version whose store is ``store_path``.

    A version published before per-source files existed gets them once per process, copied from
    its store into a private temporary folder (removed at exit): slower the first time, same
    isolation.
    """
    folder = store_path.parent / TABLES_DIR
    if not folder.is_dir():
        folder = _legacy_tables(store_path)
    return {f.stem: f for f in sorted(folder.glob("*.duckdb"))}


_LEGACY: dict[str, Path] = {}
_LEGACY_LOCK = threading.Lock()


def _legacy_tables(store_path: Path) -> Path:
    with _LEGACY_LOCK:
        found = _LEGACY.get(str(store_path))
        if found is not None:
            return found
        folder = Path(tempfile.mkdtemp(prefix="grounded-tables-"))
        atexit.register(shutil.rmtree, folder, True)
        log.warning(
            "version %s has no per-source table files (built by an older grounded); copying its mirrored tables "
            "to %s for this process. The next published version has them.",
            store_path.parent.name,
            folder,
        )
        con = _connect()
        try:
            con.execute(f"ATTACH '{_quote(str(store_path))}' AS {CATALOG} (READ_ONLY)")
            con.execute(f"USE {CATALOG}")
            sources = [
                str(r[0])
                for r in con.execute(
                    "SELECT DISTINCT schema_name FROM duckdb_tables() WHERE database_name = ? AND schema_name <> 'main' "
                    "AND NOT starts_with(schema_name, 'fts_')",
                    [CATALOG],
                ).fetchall()
            ]
            for source in sources:
                export_tables(con, source, folder / f"{source}.duckdb")
        finally:
            con.close()
        _LEGACY[str(store_path)] = folder
        return folder


def _attached_tables(db: ReadOnlyDatabase) -> tuple[TableInfo, ...]:
    if not db.catalogs:
        return ()
    cur = db.cursor()
    try:
        rows = cur.execute(
            "SELECT table_catalog, table_name, column_name, data_type FROM information_schema.columns "
            "WHERE list_contains(?, table_catalog) AND table_schema = 'main' "
            "ORDER BY table_catalog, table_name, ordinal_position",
            [list(db.catalogs)],
        ).fetchall()
        keys = cur.execute(
            "SELECT database_name, table_name, constraint_column_names FROM duckdb_constraints() "
            "WHERE list_contains(?, database_name) AND constraint_type = 'PRIMARY KEY'",
            [list(db.catalogs)],
        ).fetchall()
    finally:
        cur.close()
    return _group(rows, keys)


def _owner_tables(db: ReadOnlyDatabase) -> tuple[TableInfo, ...]:
    cur = db.cursor()
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
    return _group(rows, keys)


def _group(rows: list[Any], keys: list[Any]) -> tuple[TableInfo, ...]:
    pk = {(str(s), str(t)): tuple(str(c) for c in cols) for s, t, cols in keys}
    grouped: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, type_ in rows:
        grouped.setdefault((str(schema), str(table)), []).append((str(column), str(type_)))
    return tuple(TableInfo(s, t, tuple(cols), pk.get((s, t), ())) for (s, t), cols in grouped.items())


def _quote(text: str) -> str:
    return text.replace("'", "''")
