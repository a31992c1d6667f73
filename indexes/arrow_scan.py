"""Hand DuckDB an Arrow table to read once, without ``pyarrow.dataset``.

DuckDB's Python binding scans a registered ``pyarrow.Table`` (or ``RecordBatchReader``) through
``pyarrow.dataset``, for filter pushdown, and importing that loads Acero, Parquet, ORC, CSV, JSON
and the S3/GCS/Azure file systems: about 36 MB of resident memory in a process that only wanted
to insert a page of rows (a table sync measured 294 MB at peak, 36 MB of it this import). Through
the Arrow PyCapsule stream interface (``__arrow_c_stream__``) DuckDB reads the same buffers as a
plain stream instead, with no copy and no import.

A stream is read once: DuckDB takes it when the view is registered, so each statement that
reads the rows gets its own :func:`arrow_view` (a second read of the same view fails loudly
with "already released", never silently).

Example::

    with arrow_view(con, "_new_rows", table) as view:
        con.execute(f"INSERT INTO target SELECT * FROM {view}")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa

__all__ = ["arrow_view"]


class _OneStream:
    """Only the capsule interface of ``table``: what DuckDB needs to read it as a stream."""

    __slots__ = ("_table",)

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self._table.__arrow_c_stream__(requested_schema)


@contextmanager
def arrow_view(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[str]:
    """``table`` registered on ``con`` as view ``name`` for one statement's read; yields ``name``."""
    con.register(name, _OneStream(table))
    try:
        yield name
    finally:
        con.unregister(name)
