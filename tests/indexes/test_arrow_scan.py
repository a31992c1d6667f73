"""arrow_view: DuckDB reads an Arrow table once, as a stream, with its types."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest

from indexes.arrow_scan import arrow_view

AT = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
TABLE = pa.table(
    {
        "id": pa.array([1, 2], type=pa.int64()),
        "price": pa.array([Decimal("1.50"), None], type=pa.decimal128(8, 2)),
        "at": pa.array([AT, AT], type=pa.timestamp("us", tz="UTC")),
    }
)


def test_a_statement_reads_the_rows_with_their_types() -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    with arrow_view(con, "_rows", TABLE) as view:
        rows = con.execute(f'SELECT id, price, "at" FROM {view} ORDER BY id').fetchall()
    assert rows == [(1, Decimal("1.50"), AT), (2, None, AT)]


def test_the_view_is_read_once_and_gone_after_the_block() -> None:
    con = duckdb.connect()
    with arrow_view(con, "_rows", TABLE) as view:
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (2,)
        with pytest.raises(duckdb.Error, match="released"):
            con.execute(f"SELECT count(*) FROM {view}").fetchall()
    with pytest.raises(duckdb.CatalogException):
        con.execute("SELECT * FROM _rows")
