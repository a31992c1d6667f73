"""Read-only SQL for people exploring a knowledge base (``kb.sql``, and the helpers in
:mod:`grounded.explore`).

Each published version gets one connection of its own: an in-memory DuckDB that ATTACHes the
version's file ``READ_ONLY``, loads ``fts`` (so BM25 macros resolve), then turns off all file,
extension and network access (``enable_external_access = false``) and locks its configuration,
so nothing a query says can turn them back on. :meth:`SQLReader.check` lets exactly one
``SELECT`` statement through (DuckDB's own parser decides: ``WITH ... SELECT``, ``FROM t``,
``DESCRIBE``, ``SUMMARIZE`` are SELECTs); a timer interrupts a query after ``timeout_s``.

Unlike the answer engine's SQL tool (:mod:`grounded.tools.sql`), which only lets a model read
mirrored tables, this one also reads the catalog (``documents``, ``chunks``, ``sources``,
``sync_state``): it is for the people who own the knowledge base.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import pyarrow as pa

from grounded.errors import InvalidRequest
from indexes.duckdb_store import fts_extension_path

if TYPE_CHECKING:
    from grounded.kb import KnowledgeBase

__all__ = ["CATALOG", "SQLReader", "reader_for", "to_frame"]

CATALOG = "grounded_kb"
"""The name the published version is attached under in the read-only SQL connection."""


class SQLReader:
    """A read-only, sandboxed DuckDB connection to one published version's store file."""

    def __init__(self, store_path: Path) -> None:
        self.path = Path(store_path)
        con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
        try:
            con.execute(f"LOAD '{_quote(str(fts_extension_path()))}'")
            con.execute(f"ATTACH '{_quote(str(self.path))}' AS {CATALOG} (READ_ONLY)")
            con.execute(f"USE {CATALOG}")
            # From here on no file, extension or network access, and no way to turn it back on.
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except duckdb.Error:
            con.close()
            raise
        self._con = con
        self._lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for one query (``USE`` is per connection, so it is set again)."""
        with self._lock:
            cur = self._con.cursor()
        cur.execute(f"USE {CATALOG}")
        return cur

    def check(self, query: str) -> str:
        """``query`` if it is exactly one SELECT statement; else InvalidRequest naming what it is."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequest("kb.sql needs a SELECT statement; got an empty query")
        try:
            statements = self.cursor().extract_statements(query)
        except duckdb.Error as exc:
            raise InvalidRequest(f"kb.sql cannot parse the query: {exc}") from exc
        if len(statements) != 1:
            raise InvalidRequest(f"kb.sql runs exactly one statement; got {len(statements)}. Send them one at a time")
        kind = statements[0].type
        if kind.name != "SELECT":
            raise InvalidRequest(f"kb.sql is read-only: it runs SELECT (or WITH ... SELECT) only; got {kind.name}")
        return query

    def query(
        self, query: str, *, params: Sequence[Any] | None = None, limit: int = 10_000, timeout_s: float = 30.0
    ) -> pa.Table:
        """Rows of one checked SELECT as an Arrow table, at most ``limit`` rows."""
        self.check(query)
        return self._run(query, params, limit=limit, timeout_s=timeout_s)

    def _run(self, query: str, params: Sequence[Any] | None, *, limit: int, timeout_s: float) -> pa.Table:
        cur = self.cursor()
        timer = threading.Timer(timeout_s, cur.interrupt)
        timer.start()
        try:
            reader = cur.execute(query, list(params) if params else None).fetch_record_batch(min(limit, 2048) or 1)
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
        except duckdb.InterruptException as exc:
            raise InvalidRequest(
                f"kb.sql stopped the query after {timeout_s:g} s; narrow it or pass timeout_s"
            ) from exc
        except duckdb.PermissionException as exc:
            raise InvalidRequest(
                f"kb.sql reads only the knowledge base's own tables (no files, no network): {exc}"
            ) from exc
        except duckdb.Error as exc:
            raise InvalidRequest(f"kb.sql: {exc}") from exc
        finally:
            timer.cancel()
            cur.close()
        meta = {**(table.schema.metadata or {}), b"grounded.truncated": b"1" if truncated else b"0"}
        return table.replace_schema_metadata(meta)


def _quote(text: str) -> str:
    return text.replace("'", "''")


@functools.lru_cache(maxsize=4)
def _reader(store_path: str, version: str) -> SQLReader:
    # Versions are immutable, so one reader per (path, version) serves every later call.
    return SQLReader(Path(store_path))


def reader_for(kb: KnowledgeBase) -> SQLReader:
    """The read-only SQL connection for the knowledge base's current version."""
    snap = kb.snapshot()
    return _reader(str(snap.version.store_path), snap.version.id)


def to_frame(table: pa.Table, fmt: Literal["pandas", "arrow"]) -> Any:
    """``table`` as asked: Arrow as is, or a pandas DataFrame (``attrs['truncated']`` set)."""
    if fmt == "arrow":
        return table
    if fmt != "pandas":
        raise InvalidRequest(f"format must be 'pandas' or 'arrow'; got {fmt!r}")
    frame = table.to_pandas()
    frame.attrs["truncated"] = (table.schema.metadata or {}).get(b"grounded.truncated") == b"1"
    return frame
