"""SQLite tables mirrored into DuckDB (the database file is opened read-only).

Example ``grounded.toml``::

    [sources.notes]
    type = "sqlite"
    params = { path = "notes.db", tables = [{ name = "notes", document = { title = "{title}", text = "{body}" } }] }
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from connectors.sql import SQLConfig, SQLConnector
from grounded.errors import ConnectorError, FatalConnectorError, RetriableConnectorError

__all__ = ["SQLiteConfig", "SQLiteConnector"]


class SQLiteConfig(SQLConfig):
    path: Path = Field(description="The SQLite database file.")
    timeout: float = Field(10.0, gt=0, description="Seconds to wait while another process writes.")


class SQLiteConnector(SQLConnector):
    """Mirror SQLite tables (and render rows into documents)."""

    name: ClassVar[str] = "sqlite"
    Config: ClassVar[type[BaseModel]] = SQLiteConfig
    placeholder: ClassVar[str] = "?"
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)

    def __init__(self, config: SQLiteConfig) -> None:
        super().__init__(config)
        self.path = config.path

    def location(self) -> str:
        return str(self.path)

    def connect(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise FatalConnectorError(f"sqlite database {str(self.path)!r} does not exist; fix path")
        return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=self.timeout())

    def timeout(self) -> float:
        assert isinstance(self.config, SQLiteConfig)
        return self.config.timeout

    def describe(self, conn: Any, table: str) -> list[tuple[str, str]]:
        schema, _, name = table.rpartition(".")
        rows = conn.execute(f"PRAGMA {self.quote(schema or 'main')}.table_info({self.quote(name)})").fetchall()
        return [(str(r[1]), str(r[2])) for r in rows]

    def primary_key_of(self, conn: Any, table: str) -> list[str]:
        schema, _, name = table.rpartition(".")
        rows = conn.execute(f"PRAGMA {self.quote(schema or 'main')}.table_info({self.quote(name)})").fetchall()
        return [str(r[1]) for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]

    def duckdb_type(self, source_type: str) -> str | None:
        # SQLite's own type-affinity rules (https://www.sqlite.org/datatype3.html, 3.1), refined
        # for the date/time and boolean names applications declare.
        declared = source_type.upper()
        if "INT" in declared:
            return "BIGINT"
        if any(t in declared for t in ("CHAR", "CLOB", "TEXT")):
            return "VARCHAR"
        if declared == "" or "BLOB" in declared:
            return "BLOB" if declared else "VARCHAR"
        if any(t in declared for t in ("REAL", "FLOA", "DOUB")):
            return "DOUBLE"
        if "DATETIME" in declared or "TIMESTAMP" in declared:
            return "TIMESTAMP"
        if declared == "DATE":
            return "DATE"
        if declared in ("BOOLEAN", "BOOL"):
            return "BOOLEAN"
        if "NUMERIC" in declared or "DECIMAL" in declared:
            return "DOUBLE"
        return None

    def converter(self, source_type: str) -> Any:
        return str if source_type == "" else None

    def stream_rows(self, conn: Any, sql: str, params: Sequence[Any], size: int) -> Iterator[list[tuple[Any, ...]]]:
        cur = conn.execute(sql, list(params))
        try:
            while rows := cur.fetchmany(size):
                yield rows
        finally:
            cur.close()

    def wrap_error(self, exc: Exception) -> ConnectorError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return RetriableConnectorError(f"sqlite {self.path}: {exc}; another process holds a write lock")
        return FatalConnectorError(f"sqlite {self.path}: {exc}")
