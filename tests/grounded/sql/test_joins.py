"""Joins nothing reads, dropped on DuckDB's parse tree when they filter no row; the lean query and the
check that an inner join keeps every row run on a real DuckDB."""

from __future__ import annotations

import duckdb
import pytest

from grounded.sql.database import TableInfo
from grounded.sql.joins import Column, Covers, drop_unused_joins, match_query

STATE = TableInfo("geo", "state", (("state_name", "VARCHAR"), ("area", "DOUBLE")))
BORDER = TableInfo("geo", "border_info", (("state_name", "VARCHAR"), ("border", "VARCHAR")))
CITY = TableInfo("geo", "city", (("city_name", "VARCHAR"), ("state_name", "VARCHAR"), ("population", "BIGINT")))
TABLES = [STATE, BORDER, CITY]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA geo")
    con.execute("CREATE TABLE geo.state (state_name VARCHAR, area DOUBLE)")
    con.execute("CREATE TABLE geo.border_info (state_name VARCHAR, border VARCHAR)")
    con.execute("CREATE TABLE geo.city (city_name VARCHAR, state_name VARCHAR, population BIGINT)")
    con.execute("INSERT INTO geo.state VALUES ('texas', 695662), ('ohio', 116096), ('alaska', 1717856)")
    con.execute(
        "INSERT INTO geo.border_info VALUES ('texas', 'new mexico'), ('texas', 'oklahoma'), ('ohio', 'indiana')"
    )
    con.execute("INSERT INTO geo.city VALUES ('austin', 'texas', 790390), ('houston', 'texas', 2099451)")
    con.execute("CREATE TABLE geo.river (river_name VARCHAR, traverse VARCHAR)")
    con.execute("CREATE TABLE geo.lake (lake_name VARCHAR, state_name VARCHAR)")
    con.execute(
        "INSERT INTO geo.river VALUES ('mississippi', 'minnesota'), ('mississippi', 'iowa'), "
        "('mississippi', 'missouri'), ('missouri', 'missouri'), ('ohio', 'ohio')"
    )
    con.execute("INSERT INTO geo.lake VALUES ('superior', 'minnesota'), ('erie', 'ohio'), ('tahoe', 'california')")
    return con


def on_data(con: duckdb.DuckDBPyConnection) -> Covers:
    """Whether an inner join keeps every row, answered by running :func:`match_query` on ``con``."""

    def covers(kept: Column, dropped: Column) -> bool:
        row = con.execute(match_query(kept, dropped)).fetchone()
        return row is not None and row[0] is True

    return covers


def test_a_left_join_only_its_condition_reads_is_dropped(con: duckdb.DuckDBPyConnection) -> None:
    sql = (
        "SELECT T1.area FROM geo.state AS T1 LEFT JOIN geo.border_info AS T2 ON T1.state_name = T2.state_name "
        "WHERE T1.state_name = 'texas'"
    )
    lean = drop_unused_joins(sql, TABLES)
    assert lean == "SELECT T1.area FROM geo.state AS T1 WHERE (T1.state_name = 'texas')"
    assert con.execute(sql).fetchall() == [(695662.0,), (695662.0,)]  # once per border
    assert con.execute(lean).fetchall() == [(695662.0,)]


def test_an_inner_join_that_filters_no_row_is_dropped(con: duckdb.DuckDBPyConnection) -> None:
    sql = (
        "SELECT c.city_name FROM geo.city AS c JOIN geo.state AS s ON c.state_name = s.state_name "
        "ORDER BY c.population DESC LIMIT 1"
    )
    assert drop_unused_joins(sql, TABLES) is None  # no data to ask: an inner join stays
    lean = drop_unused_joins(sql, TABLES, on_data(con))  # every city's state is in geo.state
    assert lean == "SELECT c.city_name FROM geo.city AS c ORDER BY c.population DESC LIMIT 1"
    assert con.execute(lean).fetchall() == con.execute(sql).fetchall() == [("houston",)]


def test_an_inner_join_that_filters_rows_stays(con: duckdb.DuckDBPyConnection) -> None:
    # The defect seen on GeoQuery test ("which state has the most major rivers running through it"):
    # the river join kept only the lakes' states that a river crosses, and the lean query counted lakes.
    sql = (
        "SELECT T2.state_name FROM geo.river AS T1 JOIN geo.lake AS T2 ON T1.traverse = T2.state_name "
        "GROUP BY T2.state_name ORDER BY COUNT(*) DESC LIMIT 1"
    )
    assert drop_unused_joins(sql, TABLES, on_data(con)) is None
    assert con.execute(sql).fetchall() == [("minnesota",)]  # california's lake has no river: filtered
    # Alaska has no border: the comma join filters it, so it stays.
    alaska = (
        "SELECT s.area FROM geo.state AS s, geo.border_info AS b "
        "WHERE s.state_name = b.state_name AND s.state_name = 'alaska'"
    )
    assert drop_unused_joins(alaska, TABLES, on_data(con)) is None
    assert con.execute(alaska).fetchall() == []


def test_a_chain_of_unread_joins_is_dropped_from_the_end(con: duckdb.DuckDBPyConnection) -> None:
    sql = (
        "SELECT c.city_name FROM geo.city AS c JOIN geo.state AS s ON c.state_name = s.state_name "
        "LEFT JOIN geo.border_info AS b ON s.state_name = b.state_name ORDER BY c.population DESC LIMIT 1"
    )
    assert drop_unused_joins(sql, TABLES) == (
        "SELECT c.city_name FROM geo.city AS c INNER JOIN geo.state AS s ON ((c.state_name = s.state_name)) "
        "ORDER BY c.population DESC LIMIT 1"
    )
    lean = drop_unused_joins(sql, TABLES, on_data(con))
    assert lean == "SELECT c.city_name FROM geo.city AS c ORDER BY c.population DESC LIMIT 1"
    assert con.execute(lean).fetchall() == [("houston",)]


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        (
            "SELECT s.area FROM geo.state AS s JOIN geo.border_info AS b ON s.state_name = b.state_name "
            "WHERE b.border = 'indiana'",
            "WHERE reads the joined table",
        ),
        ("SELECT * FROM geo.state AS s JOIN geo.border_info AS b ON s.state_name = b.state_name", "* reads both"),
        (
            "SELECT count(*) FROM geo.state AS s JOIN geo.border_info AS b ON s.state_name = b.state_name",
            "nothing names either table: which one counts is not ours to choose",
        ),
        (
            "SELECT s.area FROM geo.state AS s JOIN geo.border_info AS b ON s.state_name = b.state_name "
            "WHERE border = 'ohio'",
            "an unqualified column of the joined table",
        ),
        (
            "SELECT c.city_name FROM geo.city AS c JOIN geo.state AS s ON c.state_name = s.state_name "
            "WHERE c.population > (SELECT MAX(x.population) FROM geo.city AS x WHERE x.state_name = s.state_name)",
            "a subquery reads it",
        ),
        ("SELECT area FROM geo.state", "one table"),
        ("SELECT area FROM", "does not parse"),
    ],
)
def test_a_join_something_reads_stays(con: duckdb.DuckDBPyConnection, sql: str, why: str) -> None:
    assert drop_unused_joins(sql, TABLES, on_data(con)) is None, why


def test_count_reads_as_the_model_wrote_it(con: duckdb.DuckDBPyConnection) -> None:
    sql = (
        "SELECT COUNT(*) FROM geo.state AS s JOIN geo.border_info AS b ON s.state_name = b.state_name "
        "WHERE b.border = 'oklahoma'"
    )
    lean = drop_unused_joins(sql, TABLES, on_data(con))  # every border's state is a state
    assert lean == "SELECT count(*) FROM geo.border_info AS b WHERE (b.border = 'oklahoma')"
    assert con.execute(lean).fetchall() == [(1,)]
