"""The SQL grammar of the linked tables, and text-to-SQL decoded under it.

The grammar tests check strings against the grammar with xgrammar (what decoding under it could
write); the model tests decode with the real SmolLM2-135M through the transformers backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pytest

from grounded.experts.base import Generation, GrammarGenerator, Message
from grounded.experts.transformers_backend import TransformersGenerator
from grounded.sql.database import ReadOnlyDatabase, TableInfo
from grounded.sql.grammar import accepts, quote_identifier, sql_grammar
from grounded.sql.guard import check_sql
from grounded.sql.schema_link import SchemaLinker
from grounded.sql.writer import SqlWriter

STATE = TableInfo("geo", "state", (("state_name", "VARCHAR"), ("population", "BIGINT"), ("area", "DOUBLE")))
BORDER = TableInfo("geo", "border_info", (("state_name", "VARCHAR"), ("border", "VARCHAR")))
GRAMMAR = sql_grammar([STATE, BORDER])


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT state_name FROM geo.state WHERE population > 1000000",
        "SELECT COUNT(*) FROM geo.border_info WHERE state_name = 'texas'",
        "SELECT s.state_name FROM geo.state AS s JOIN geo.border_info AS b ON s.state_name = b.border"
        " ORDER BY s.area DESC LIMIT 1",
        "SELECT state_name FROM geo.state WHERE area = (SELECT MAX(area) FROM geo.state)",
        "SELECT border FROM geo.border_info WHERE state_name IN (SELECT state_name FROM geo.state WHERE area > 1.5)",
        "SELECT state_name, COUNT(DISTINCT border) FROM geo.border_info GROUP BY state_name HAVING COUNT(*) >= 4",
        "SELECT state_name FROM geo.state EXCEPT SELECT border FROM geo.border_info",
        "SELECT state_name FROM geo.border_info GROUP BY state_name ORDER BY count(*) DESC LIMIT 1",
        "SELECT geo.state.population / geo.state.area FROM geo.state WHERE state_name LIKE 'new%'",
        "SELECT state_name FROM geo.state WHERE state_name = 'rhode island''s'",
        "SELECT state0.area FROM geo.state AS state0 WHERE state.area > 1 AND T1.area < 9",
        "SELECT T1.area FROM geo.state AS T1 INNER JOIN geo.border_info AS T2 ON T1.state_name = T2.border",
    ],
)
def test_the_grammar_accepts_read_only_queries_over_the_shown_tables(sql: str) -> None:
    assert accepts(GRAMMAR, sql)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT name FROM geo.lake", "a table that was not shown"),
        ("SELECT capital FROM geo.state", "a column no shown table has"),
        ("SELECT * FROM read_csv('/etc/passwd')", "a file-reading table function"),
        ("SELECT getenv('HOME') FROM geo.state", "a function outside the list"),
        ("SELECT state_name FROM geo.state; DROP TABLE geo.state", "a second statement"),
        ("ATTACH 'x.db' AS x", "not a SELECT"),
        ("SELECT state_name FROM geo.state -- the biggest one", "a comment"),
        ("SELECT state_name FROM geo.state\nThis query lists the states.", "prose after the query"),
        ("SELECT state_name FROM geo.state WHERE", "an unfinished query"),
        ("SELECT x.state_name FROM geo.state AS lake_county", "a long made-up table alias"),
        ("select state_name from geo.state", "lower-case keywords (one spelling)"),
    ],
)
def test_the_grammar_rejects_what_is_not_a_query_over_the_shown_tables(sql: str, why: str) -> None:
    assert not accepts(GRAMMAR, sql), why


ROWS = TableInfo("wtq", "t", (("id", "INTEGER"), ("name", "VARCHAR"), ("a1", "VARCHAR"), ("s", "INTEGER")))


@pytest.mark.parametrize("qualified", [False, True])
def test_a_column_name_is_never_a_table_alias(qualified: bool) -> None:
    """``id.id = 10`` is what SmolLM2 and Qwen looped on when any two letters made an alias."""
    grammar = sql_grammar([ROWS, STATE], qualified=qualified)
    assert not accepts(grammar, "SELECT t.name FROM wtq.t WHERE id.id = 10")
    assert not accepts(grammar, "SELECT s.name FROM wtq.t AS s")  # a one-letter column
    assert not accepts(grammar, "SELECT a1.name FROM wtq.t AS a1")  # a letter-and-digit column
    assert not accepts(grammar, "SELECT t.name FROM wtq.t AS on")  # a keyword


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT T1.name FROM wtq.t AS T1 WHERE T1.id = 10",
        "SELECT x.name FROM wtq.t AS x WHERE x.id = 10",
        "SELECT a2.name FROM wtq.t AS a2",  # a1 is a column, a2 is not
        "SELECT t.name FROM wtq.t WHERE t.id = 10",
        "SELECT st.area FROM geo.state AS st JOIN wtq.t AS t1 ON st.state_name = t1.name",
    ],
)
def test_a_declared_alias_or_table_name_qualifies_a_column(sql: str) -> None:
    assert accepts(sql_grammar([ROWS, STATE]), sql)
    duckdb_con = duckdb.connect()
    duckdb_con.execute("CREATE SCHEMA wtq; CREATE TABLE wtq.t (id INTEGER, name VARCHAR, a1 VARCHAR, s INTEGER)")
    duckdb_con.execute("CREATE SCHEMA geo; CREATE TABLE geo.state (state_name VARCHAR, population BIGINT, area DOUBLE)")
    duckdb_con.execute(sql)  # and DuckDB binds it


def test_an_unfinished_query_is_a_prefix_of_the_grammar() -> None:
    assert accepts(GRAMMAR, "SELECT state_name FROM geo.state WHERE", prefix=True)
    assert not accepts(GRAMMAR, "SELECT state_name FROM geo.lake", prefix=True)


def test_names_duckdb_would_misread_are_quoted_in_the_grammar() -> None:
    table = TableInfo("shop", "Order Lines", (("order", "INTEGER"), ("Total Sales", "DOUBLE"), ("qty", "INTEGER")))
    grammar = sql_grammar([table])
    sql = 'SELECT "order", "Total Sales" FROM shop."Order Lines" WHERE qty > 2'
    assert accepts(grammar, sql)
    assert not accepts(grammar, "SELECT order FROM shop.Order Lines")
    con = duckdb.connect()
    con.execute(
        'CREATE SCHEMA shop; CREATE TABLE shop."Order Lines" ("order" INTEGER, "Total Sales" DOUBLE, qty INTEGER)'
    )
    con.execute('INSERT INTO shop."Order Lines" VALUES (1, 9.5, 3), (2, 1.0, 1)')
    assert con.execute(sql).fetchall() == [(1, 9.5)]  # the grammar's spelling is what DuckDB reads


def test_plain_names_stay_bare() -> None:
    assert [quote_identifier(n) for n in ("state_name", "area2", "select", "Area")] == [
        "state_name",
        "area2",
        '"select"',
        '"Area"',
    ]


def test_a_grammar_needs_a_table_with_columns() -> None:
    with pytest.raises(ValueError, match="at least one table"):
        sql_grammar([])


# -- the writer ----------------------------------------------------------------------------------------


class GrammarRecorder:
    """A grammar-capable generator that writes a fixed query and keeps the grammars it was given."""

    fingerprint = "recorder"

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.grammars: list[str] = []

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        return Generation(self.sql, 10, 5, 0.0, 0.0)

    def generate_grammar(
        self, messages: Sequence[Message], grammar: str, *, max_tokens: int, timeout_s: float | None = None
    ) -> Generation:
        self.grammars.append(grammar)
        return Generation(self.sql, 10, 5, 0.0, 0.0)


def _linker(kb: Any) -> SchemaLinker:
    db = ReadOnlyDatabase.for_version(kb.snapshot().version.store_path)
    return SchemaLinker.for_version(db, kb.embedder)


def test_the_writer_decodes_under_the_linked_tables_grammar(shop_kb: Any) -> None:
    linker = _linker(shop_kb)
    expert = GrammarRecorder("SELECT count(*) FROM shop.products")
    assert isinstance(expert, GrammarGenerator)
    links = linker.link("how many products are in the kitchen room?")[:1]
    draft = SqlWriter(expert, linker, db=linker.db).write("how many products are in the kitchen room?", links)
    assert draft.constrained
    assert draft.sql == "SELECT count(*) FROM shop.products"
    assert expert.grammars == [sql_grammar([links[0].table])]


def test_the_writer_can_be_told_not_to_use_the_grammar(shop_kb: Any) -> None:
    expert = GrammarRecorder("SELECT count(*) FROM shop.products")
    draft = SqlWriter(expert, _linker(shop_kb), db=_linker(shop_kb).db, grammar=False).write(
        "how many products are in the kitchen room?"
    )
    assert not draft.constrained
    assert draft.sql is not None
    assert expert.grammars == []


# -- the real models -----------------------------------------------------------------------------------

QUESTIONS = ("how many products are in the kitchen room?", "which city has the most people?")


@pytest.mark.slow
def test_smollm2_under_the_grammar_writes_only_queries_of_the_grammar(
    smollm2: TransformersGenerator, shop_kb: Any
) -> None:
    linker = _linker(shop_kb)
    writer = SqlWriter(smollm2, linker, db=linker.db)
    finished = 0
    for question in QUESTIONS:
        links = linker.link(question)[:2]
        grammar = sql_grammar([link.table for link in links])
        out = smollm2.generate_grammar(writer.messages(question, links), grammar, max_tokens=128)
        # Cut off by max_tokens, it is the start of a query of the grammar; finished, a whole one.
        assert accepts(grammar, out.text, prefix=out.finish_reason == "length"), out.text
        if out.finish_reason == "stop":
            finished += 1
            check_sql(out.text, linker.db.tables())  # and the guard lets it run
    assert finished >= 1
