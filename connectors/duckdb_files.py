"""Tables from a DuckDB database file, and from Parquet, CSV or JSON files, mirrored into the KB.

Each configured table is either a table of the database at ``path`` or, when ``files`` names it,
a view over files (a path or glob, read by DuckDB's ``read_parquet``/``read_csv``/``read_json``).
Files carry no primary key, so set ``primary_key`` on those tables.

Example ``grounded.toml``::

    [sources.sales]
    type = "duckdb_files"
    [sources.sales.params]
    files = { orders = "exports/orders-*.parquet", regions = "regions.csv" }
    tables = [{ name = "orders", primary_key = ["order_id"] }, { name = "regions", primary_key = ["code"] }]
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import duckdb
from pydantic import BaseModel, Field

from connectors.sql import SQLConfig, SQLConnector
from grounded.errors import ConnectorError, FatalConnectorError

__all__ = ["DuckDBFilesConfig", "DuckDBFilesConnector"]

_READERS = {".parquet": "read_parquet", ".csv": "read_csv", ".tsv": "read_csv", ".json": "read_json",
            ".jsonl": "read_json", ".ndjson": "read_json"}  # fmt: skip
# Types the mirror cannot re-create faithfully from a file's schema.
_UNMAPPABLE = re.compile(r"^(UNION|MAP|BIT|VARINT|BIGNUM)\b", re.IGNORECASE)


class DuckDBFilesConfig(SQLConfig):
    path: Path | None = Field(None, description="A DuckDB database file whose tables are read.")
    files: dict[str, str] = Field(
        default_factory=dict, description="Table name -> Parquet/CSV/JSON file or glob read as that table."
    )


class DuckDBFilesConnector(SQLConnector):
    """Mirror tables of a DuckDB file or of Parquet/CSV/JSON files."""

    name: ClassVar[str] = "duckdb_files"
    Config: ClassVar[type[BaseModel]] = DuckDBFilesConfig
    placeholder: ClassVar[str] = "?"
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (duckdb.Error,)

    def __init__(self, config: DuckDBFilesConfig) -> None:
        super().__init__(config)
        self.files_config = config

    def location(self) -> str:
        return (
            str(self.files_config.path)
            if self.files_config.path
            else "files " + ", ".join(sorted(self.files_config.files.values()))
        )

    def connect(self) -> duckdb.DuckDBPyConnection:
        cfg = self.files_config
        if cfg.path is not None and not cfg.path.is_file():
            raise FatalConnectorError(f"duckdb database {str(cfg.path)!r} does not exist; fix path")
        con = duckdb.connect(
            str(cfg.path) if cfg.path else ":memory:",
            read_only=cfg.path is not None,
            config={"autoinstall_known_extensions": False},
        )
        try:
            for table, pattern in sorted(cfg.files.items()):
                reader = _READERS.get(Path(pattern).suffix.lower())
                if reader is None:
                    raise FatalConnectorError(
                        f"files[{table!r}] = {pattern!r}: unknown file type; use .parquet, .csv, .tsv or .json(l)"
                    )
                literal = pattern.replace("'", "''")
                con.execute(f"CREATE TEMP VIEW {self.quote(table)} AS SELECT * FROM {reader}('{literal}')")
        except duckdb.Error as exc:
            con.close()
            raise FatalConnectorError(f"cannot read {self.location()}: {exc}") from exc
        return con

    def describe(self, conn: Any, table: str) -> list[tuple[str, str]]:
        try:
            rows = conn.execute(f"DESCRIBE SELECT * FROM {self.quote_table(table)}").fetchall()
        except duckdb.CatalogException:
            return []
        return [(str(r[0]), str(r[1])) for r in rows]

    def primary_key_of(self, conn: Any, table: str) -> list[str]:
        schema, _, name = table.rpartition(".")
        row = conn.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = ? "
            "AND (? = '' OR schema_name = ?) AND constraint_type = 'PRIMARY KEY'",
            [name, schema, schema],
        ).fetchone()
        return [str(c) for c in row[0]] if row else []

    def duckdb_type(self, source_type: str) -> str | None:
        if _UNMAPPABLE.match(source_type):
            return None
        if source_type.startswith("ENUM("):
            return "VARCHAR"
        return source_type

    def stream_rows(self, conn: Any, sql: str, params: Sequence[Any], size: int) -> Iterator[list[tuple[Any, ...]]]:
        # The connection itself, not a cursor: the file views are temporary, visible to it alone.
        result = conn.execute(sql, list(params))
        while rows := result.fetchmany(size):
            yield rows

    def wrap_error(self, exc: Exception) -> ConnectorError:
        return FatalConnectorError(f"duckdb {self.location()}: {exc}")
