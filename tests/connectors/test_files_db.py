"""SQLite and DuckDB/Parquet/CSV connectors on real files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pytest
from dbkit import mirror_rows

from connectors.duckdb_files import DuckDBFilesConfig, DuckDBFilesConnector
from connectors.sqlite import SQLiteConfig, SQLiteConnector
from connectors.testing import ConnectorContract
from grounded.errors import FatalConnectorError
from grounded.kb import KnowledgeBase


def make_sqlite(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, body TEXT, stars REAL, made DATETIME, seq INTEGER);
        """
    )
    con.executemany(
        "INSERT INTO notes VALUES (?, ?, ?, ?, ?, ?)",
        [(i, f"note {i}", f"body {i}", i / 2, f"2024-02-{i % 28 + 1:02d} 12:00:00", i) for i in range(1, 31)],
    )
    con.commit()
    con.close()
    return path


class TestSQLiteContract(ConnectorContract):
    entry_point = "sqlite"

    @pytest.fixture
    def connector(self, tmp_path: Path) -> SQLiteConnector:
        db = make_sqlite(tmp_path / "notes.db")
        tables = [{"name": "notes", "cursor_column": "seq", "document": {"title": "{title}", "text": "{body}"}}]
        return SQLiteConnector(SQLiteConfig(path=db, tables=tables, page_size=4))

    @pytest.fixture
    def failing_connector(self, tmp_path: Path) -> SQLiteConnector:
        return SQLiteConnector(SQLiteConfig(path=tmp_path / "missing.db", tables=[{"name": "notes"}]))


def test_sqlite_sync_incremental(tmp_path: Path, kb: KnowledgeBase) -> None:
    db = make_sqlite(tmp_path / "notes.db")
    src = SQLiteConnector(SQLiteConfig(path=db, tables=[{"name": "notes", "cursor_column": "seq"}], page_size=7))
    assert kb.sync("notes", src).rows_upserted == 30
    assert dict(mirror_rows(kb, "SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = 'notes'"))["made"] == "TIMESTAMP"  # fmt: skip
    con = sqlite3.connect(db)
    con.execute("UPDATE notes SET body = 'new', seq = 100 WHERE id = 2")
    con.execute("DELETE FROM notes WHERE id = 3")
    con.commit()
    con.close()
    stats = kb.sync("notes", src)
    assert (stats.rows_upserted, stats.rows_deleted) == (1, 1)
    assert mirror_rows(kb, "SELECT count(*), max(seq) FROM notes.notes") == [(29, 100)]


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    folder = tmp_path / "exports"
    folder.mkdir()
    duckdb.sql(
        "COPY (SELECT i AS order_id, 'r' || (i % 3) AS region, i * 2.5 AS amount FROM range(1, 101) t(i)) "
        f"TO '{folder / 'orders.parquet'}' (FORMAT parquet)"
    )
    (folder / "regions.csv").write_text("code,label\nr0,North\nr1,South\nr2,East\n")
    return folder


class TestDuckDBFilesContract(ConnectorContract):
    entry_point = "duckdb_files"

    @pytest.fixture
    def connector(self, exports: Path) -> DuckDBFilesConnector:
        return DuckDBFilesConnector(
            DuckDBFilesConfig(
                files={"orders": str(exports / "*.parquet"), "regions": str(exports / "regions.csv")},
                tables=[
                    {"name": "orders", "primary_key": ["order_id"]},
                    {
                        "name": "regions",
                        "primary_key": ["code"],
                        "document": {"title": "{label}", "columns": ["label"]},
                    },
                ],
                page_size=30,
            )
        )


def test_duckdb_files_and_database(exports: Path, tmp_path: Path, kb: KnowledgeBase) -> None:
    files = DuckDBFilesConnector(
        DuckDBFilesConfig(
            files={"orders": str(exports / "orders.parquet"), "regions": str(exports / "regions.csv")},
            tables=[{"name": "orders", "primary_key": ["order_id"]}, {"name": "regions", "primary_key": ["code"]}],
        )
    )
    stats = kb.sync("sales", files)
    assert stats.rows_upserted == 103
    assert mirror_rows(kb, "SELECT count(*), sum(amount) FROM sales.orders") == [(100, 12625.0)]

    db = tmp_path / "app.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, happened TIMESTAMP, payload MAP(VARCHAR, INTEGER))")
    src = DuckDBFilesConnector(DuckDBFilesConfig(path=db, tables=[{"name": "events"}]))
    with pytest.raises(FatalConnectorError, match=r"column 'payload' .*MAP.*exclude_columns"):
        src.check()
    no_key = DuckDBFilesConnector(
        DuckDBFilesConfig(files={"orders": str(exports / "orders.parquet")}, tables=[{"name": "orders"}])
    )
    with pytest.raises(FatalConnectorError, match="has no primary key; set primary_key"):
        no_key.check()
