"""TableMirror on an in-memory DuckDB: upserts by key, tombstones, key diff, shape checks."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import duckdb
import pytest

from connectors.base import Column, RowBatch
from grounded.errors import FatalConnectorError
from indexes.mirror import TableMirror

COLUMNS = (
    Column("id", "BIGINT"),
    Column("name", "VARCHAR"),
    Column("price", "DECIMAL(8,2)"),
    Column("at", "TIMESTAMPTZ"),
)
AT = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def batch(*rows: tuple[object, ...], table: str = "items") -> RowBatch:
    return RowBatch(table, COLUMNS, list(rows), ("id",))


def test_upsert_replaces_by_key_and_last_duplicate_wins() -> None:
    mirror = TableMirror(duckdb.connect(), "shop")
    assert mirror.upsert(batch((1, "a", Decimal("1.50"), AT), (2, "b", None, None))) == 2
    assert mirror.upsert(batch((2, "b2", Decimal("2"), AT), (3, "c", None, AT), (3, "c2", None, AT))) == 2
    rows = mirror.con.execute('SELECT id, name, price, "at" FROM shop.items ORDER BY id').fetchall()
    assert rows == [(1, "a", Decimal("1.50"), AT), (2, "b2", Decimal("2.00"), AT), (3, "c2", None, AT)]
    # Re-reading unchanged rows writes nothing; only the row that differs is written.
    assert mirror.upsert(batch((1, "a", Decimal("1.50"), AT), (3, "c2", None, AT))) == 0
    assert mirror.upsert(batch((1, "a", Decimal("1.50"), AT), (3, "c3", None, AT))) == 1


def test_tombstones_and_key_diff() -> None:
    mirror = TableMirror(duckdb.connect(), "shop")
    mirror.upsert(batch(*[(i, f"n{i}", None, None) for i in range(10)]))
    assert mirror.delete("items", [(3,), (99,)]) == [(3,)]
    mirror.track_seen("items")
    mirror.mark_seen("items", [(i,) for i in range(10) if i % 2 == 0])
    assert sorted(mirror.delete_unseen("items")) == [(1,), (5,), (7,), (9,)]
    assert mirror.count("items") == 5
    later = TableMirror(mirror.con, "shop")  # the next sync's mirror: the table is not its own
    later.mark_live("items", [])  # an empty live-key list means the source table is empty
    assert len(later.delete_unseen("items")) == 5


def test_a_table_created_in_this_sync_keeps_no_key_diff() -> None:
    """Issue 25, item 4: a first sync read every row it mirrored, so live keys are not collected."""
    mirror = TableMirror(duckdb.connect(), "shop")
    mirror.upsert(batch(*[(i, f"n{i}", None, None) for i in range(10)]))
    mirror.mark_live("items", [(1,)])
    assert mirror.con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)
    assert mirror.delete_unseen("items") == []
    assert mirror.count("items") == 10
    mirror.drop_all()  # --full: the table is created again, by this mirror
    mirror.upsert(batch((1, "a", None, None)))
    mirror.mark_live("items", [])
    assert (mirror.delete_unseen("items"), mirror.count("items")) == ([], 1)


def test_shape_change_and_missing_key_are_clear() -> None:
    mirror = TableMirror(duckdb.connect(), "shop")
    mirror.upsert(batch((1, "a", None, None)))
    changed = RowBatch("items", (Column("id", "BIGINT"), Column("name", "INTEGER")), [(1, 2)], ("id",))
    fresh = TableMirror(mirror.con, "shop")
    with pytest.raises(FatalConnectorError, match=r"changed shape .*grounded sync shop --full"):
        fresh.upsert(changed)
    with pytest.raises(FatalConnectorError, match=r"has no primary key; .*set primary_key"):
        fresh.upsert(RowBatch("other", COLUMNS, [], ()))
