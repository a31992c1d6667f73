"""The SQL tool and its guard: read-only, mirrored tables only, bounded in time and size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from grounded.sql.database import ReadOnlyDatabase, TableInfo
from grounded.sql.guard import SqlRefused, check_sql, shared_parser
from grounded.tools import ToolContext, get_tool
from tests.duckdb_spy import count_connections

TABLES = (TableInfo("shop", "products", (("id", "BIGINT"), ("name", "VARCHAR")), ("id",)),)


def run_sql(kb: Any, query: str, acl_groups: tuple[str, ...] | None = None, **ctx: Any) -> Any:
    return get_tool("sql").call({"query": query}, ToolContext(view=kb.store.view(acl_groups=acl_groups), **ctx))


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("ATTACH '/tmp/x.db' AS x", "ATTACH"),
        ("COPY shop.products TO '/tmp/out.csv'", "COPY"),
        ("INSTALL httpfs", "LOAD"),
        ("LOAD httpfs", "LOAD"),
        ("PRAGMA database_list", "not a plain SELECT"),
        ("SET enable_external_access = true", "SET"),
        ("DROP TABLE shop.products", "DROP"),
        ("DELETE FROM shop.products", "DELETE"),
        ("UPDATE shop.products SET name = 'x'", "UPDATE"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("SELECT 1; DROP TABLE shop.products", "one statement"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
        ("SELECT * FROM '/etc/passwd'", "not a mirrored table"),
        ("SELECT * FROM read_text('/etc/passwd')", "read_text"),
        ("SELECT getenv('HOME')", "getenv"),
        ("SELECT * FROM query('SELECT 1')", "query"),
        ("SELECT * FROM glob('/etc/*')", "glob"),
        ("SELECT * FROM duckdb_settings()", "duckdb_settings"),
        ("SELECT * FROM documents", "not a mirrored table"),
        ("SELECT * FROM main.chunks", "not a mirrored table"),
        ("SELECT * FROM information_schema.tables", "not a mirrored table"),
        ("SELECT * FROM other.db.t", "outside"),
        ("EXPLAIN SELECT 1", "EXPLAIN"),
        ("", "empty"),
        ("SELEC name FROM shop.products", "parse"),
    ],
)
def test_guard_refuses(sql: str, why: str) -> None:
    with pytest.raises(SqlRefused, match=why):
        check_sql(sql, TABLES)


def test_guard_accepts_select_with_cte_and_unqualified_names() -> None:
    sql = "WITH cheap AS (SELECT * FROM products WHERE id < 3) SELECT upper(name), count(*) FROM cheap GROUP BY 1;"
    guard = check_sql(sql, TABLES)
    assert guard.sql.endswith("GROUP BY 1")
    assert [t.qualified for t in guard.tables] == ["shop.products"]


def test_checks_in_a_shared_parser_block_open_one_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    opened = count_connections(monkeypatch)
    check_sql("SELECT name FROM shop.products", TABLES)
    assert len(opened) == 1  # a lone check: one connection (it used to open two)
    with shared_parser():
        for i in range(5):
            check_sql(f"SELECT name FROM shop.products WHERE id = {i}", TABLES)
        with pytest.raises(SqlRefused, match="parse"):
            check_sql("SELEC name FROM shop.products", TABLES)
        with shared_parser():  # nested: the outer block's connection
            assert check_sql("SELECT 1", TABLES).sql == "SELECT 1"
    assert len(opened) == 2


def test_a_shared_parser_is_closed_when_its_block_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    opened = count_connections(monkeypatch)

    def failing_run() -> None:
        with shared_parser():
            check_sql("SELECT name FROM shop.products", TABLES)
            raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError):
        failing_run()
    with pytest.raises(duckdb.ConnectionException, match="closed"):
        opened[0].execute("SELECT 1")
    check_sql("SELECT name FROM shop.products", TABLES)  # outside a block again: a connection of its own
    assert len(opened) == 2


def test_sql_tool_answers_with_provenance(shop_kb: Any) -> None:
    result = run_sql(shop_kb, "SELECT id, name, price FROM shop.products WHERE price > 100 ORDER BY id")
    assert result.ok, result.error
    assert result.data["rows"] == [[4, "sofa", 899], [5, "desk", 249]]
    assert result.provenance["tables"] == ["shop.products"]
    assert result.provenance["row_keys"] == [[4], [5]]
    assert result.provenance["index_version"] == shop_kb.version
    assert "Row 1: id = 4; name = sofa; price = 899." in result.text


def test_the_full_text_index_is_not_a_mirrored_table(shop_kb: Any) -> None:
    db = ReadOnlyDatabase.for_version(shop_kb.snapshot().version.store_path)
    assert {t.schema for t in db.tables()} == {"shop"}  # the KB has documents, so fts_main_chunks exists
    for query in ("SELECT * FROM fts_main_chunks.docs", "SELECT * FROM dict", "SELECT * FROM terms"):
        result = run_sql(shop_kb, query)
        assert result.refused, query
        assert "not a mirrored table" in (result.error or "")
    assert "fts_" not in db.search_path  # an unqualified name never reaches the index either


def test_sql_tool_refuses_with_clear_error_and_never_raises(shop_kb: Any) -> None:
    result = run_sql(shop_kb, "SELECT * FROM read_csv('/etc/passwd')")
    assert not result.ok
    assert result.refused
    assert "read_csv" in (result.error or "")
    failed = run_sql(shop_kb, "SELECT no_such_column FROM shop.products")
    assert not failed.ok
    assert not failed.refused
    assert "no_such_column" in (failed.error or "")


def test_runaway_query_is_interrupted(shop_kb: Any) -> None:
    result = run_sql(shop_kb, "SELECT count(*) FROM range(1000000000000) a, range(1000) b", timeout_s=0.3)
    assert not result.ok
    assert result.refused
    assert "longer than 0.3s" in (result.error or "")
    assert run_sql(shop_kb, "SELECT count(*) AS n FROM shop.products").data["rows"] == [[5]]


def test_huge_result_is_cut_at_the_row_limit(shop_kb: Any) -> None:
    result = run_sql(shop_kb, "SELECT range AS i FROM range(1000000)", row_limit=50)
    assert result.ok
    assert len(result.data["rows"]) == 50
    assert result.data["truncated"] is True
    assert "row limit" in result.text


def test_connection_cannot_reach_files_even_past_the_guard(shop_kb_path: Path, shop_kb: Any) -> None:
    db = ReadOnlyDatabase.for_version(shop_kb.snapshot().version.store_path)
    for statement in ("SELECT * FROM read_csv('/etc/passwd')", "SET enable_external_access = true"):
        with pytest.raises(Exception, match=r"disabled|Cannot change"):
            db.execute(statement, timeout_s=5, row_limit=10)
    with pytest.raises(Exception, match=r"read-only|read only"):
        db.execute("INSERT INTO shop.products VALUES (9, 'x', 1, 1, 'y')", timeout_s=5, row_limit=10)


def test_nothing_is_written_by_queries(shop_kb: Any) -> None:
    version = shop_kb.version
    store = shop_kb.snapshot().version.store_path
    before = store.stat().st_mtime_ns
    for attack in ("DELETE FROM shop.products", "SELECT 1; DROP TABLE shop.products", "ATTACH ':memory:' AS m"):
        assert run_sql(shop_kb, attack).refused
    assert shop_kb.version == version
    assert store.stat().st_mtime_ns == before
    assert run_sql(shop_kb, "SELECT count(*) FROM shop.products").data["rows"] == [[5]]


def test_injection_in_arguments_stays_data(shop_kb: Any) -> None:
    # A model that pastes a question's "'; DROP TABLE ..." into a literal gets a harmless string.
    result = run_sql(shop_kb, "SELECT count(*) FROM shop.products WHERE name = 'x''; DROP TABLE shop.products; --'")
    assert result.ok
    assert result.data["rows"] == [[0]]
    refused = get_tool("sql").call({"query": "SELECT 1", "extra": "DROP"}, ToolContext(view=shop_kb.store.view()))
    assert refused.refused
    assert "extra" in (refused.error or "")


def test_tables_of_sources_a_caller_may_not_read_look_missing(shop_kb: Any) -> None:
    hidden = run_sql(shop_kb, "SELECT count(*) FROM shop.products", acl_groups=("x",))
    assert hidden.refused
    assert "not a mirrored table; available: none" in (hidden.error or "")
    admin = run_sql(shop_kb, "SELECT count(*) FROM shop.products")
    assert admin.ok
