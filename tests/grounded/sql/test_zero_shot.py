"""The zero-shot text-to-SQL path on a real SQLite database mirrored through the sqlite connector:
value linking, candidates and their choice, repair turns, routing that tries the tables."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from grounded.experts.base import Generation, Message
from grounded.grounding.router import Router
from grounded.sql.candidates import (
    Candidate,
    choose,
    echoes,
    measure_for_count,
    rekeyed,
    rewrites,
    swapped,
    unechoed,
)
from grounded.sql.database import QueryResult, ReadOnlyDatabase
from grounded.sql.examples import qualify
from grounded.sql.grammar import accepts, sql_grammar
from grounded.sql.schema_link import SchemaLinker, cover
from grounded.sql.values import ValueIndex
from grounded.sql.writer import SqlWriter

CITIES = [
    ("san francisco", "california", 805235),
    ("los angeles", "california", 3792621),
    ("austin", "texas", 790390),
    ("houston", "texas", 2099451),
    ("new york", "new york", 8175133),
]
STATES = [("california", "sacramento", 423967), ("texas", "austin", 695662), ("new york", "albany", 141297)]
RIVERS = [
    ("rio grande", "3,057 km", "usa", "texas"),
    ("colorado", "2,330 km", "usa", "california"),
    ("red", "2,190 km", "usa", "texas"),
    ("hudson", "507 km", "usa", "new york"),
]


def make_geo(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE city (city_name TEXT, state_name TEXT, population INTEGER, PRIMARY KEY (city_name, state_name));
        CREATE TABLE state (state_name TEXT PRIMARY KEY, capital TEXT, area INTEGER);
        CREATE TABLE river (river_name TEXT PRIMARY KEY, length TEXT, country_name TEXT, traverse TEXT);
        """
    )
    con.executemany("INSERT INTO city VALUES (?, ?, ?)", CITIES)
    con.executemany("INSERT INTO state VALUES (?, ?, ?)", STATES)
    con.executemany("INSERT INTO river VALUES (?, ?, ?, ?)", RIVERS)
    con.commit()
    con.close()
    return path


@pytest.fixture(scope="module")
def geo_kb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knowledge base holding only the mirrored tables of one SQLite database (source ``geo``)."""
    import grounded
    from connectors.registry import build_connector

    root = tmp_path_factory.mktemp("zeroshot")
    db = make_geo(root / "geo.sqlite")
    kb = grounded.open(root / "kb")
    params = {"path": str(db), "tables": [{"name": "city"}, {"name": "state"}, {"name": "river"}]}
    kb.sync("geo", build_connector("sqlite", params, source="geo"))
    return root / "kb"


@pytest.fixture(scope="module")
def linker(geo_kb_path: Path) -> SchemaLinker:
    import grounded

    kb = grounded.open(geo_kb_path, create=False)
    db = ReadOnlyDatabase.for_version(kb.snapshot().version.store_path)
    return SchemaLinker.for_version(db, kb.embedder)


class Scripted:
    """A sql expert whose replies are scripted in turn; it records every chat it was given."""

    def __init__(self, *replies: str | Callable[[str], str]) -> None:
        self.fingerprint = "scripted:sql"
        self.replies = list(replies)
        self.chats: list[list[Message]] = []

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        self.chats.append(list(messages))
        reply = self.replies[min(len(self.chats), len(self.replies)) - 1]
        text = reply(messages[-1].content) if callable(reply) else reply
        return Generation(text, 10, 5, 0.0, 0.0)


def test_value_linking_finds_the_data_spelling_and_every_column(linker: SchemaLinker) -> None:
    index = linker.values
    matches = index.match("How many people live in San Francisco, the city of California?")
    assert [m.span for m in matches] == ["san francisco", "california"]
    assert matches[0].where == (("geo.city", "city_name", "san francisco"),)
    assert {(t, c) for t, c, _ in matches[1].where} == {("geo.city", "state_name"), ("geo.river", "traverse"),
                                                        ("geo.state", "state_name")}  # fmt: skip
    assert index.spelling("San Francisco") == "san francisco"
    assert index.spelling("san francisco") is None  # already as stored
    assert index.spelling("Atlantis") is None
    assert index.lookup("Rio Grandes") == [("geo.river", "river_name", "rio grande")]  # plural read as singular
    assert ("geo.river", "length") in index.numeric_text  # '3,057 km' is a number with a unit
    assert index.match("rivers in texas", tables={"geo.river"})[0].where == (("geo.river", "traverse", "texas"),)
    links = linker.link("what is the population of san francisco?")
    assert links[0].table.qualified == "geo.city"
    assert links[0].values == ("san francisco",)


def test_rewrites_respell_move_to_the_column_that_holds_the_value_and_type_numbers(linker: SchemaLinker) -> None:
    tables = linker.db.tables()
    found = rewrites("SELECT river.river_name FROM geo.river WHERE river.country_name = 'Texas'", tables, linker.values)
    assert [r.sql for r in found] == [
        "SELECT river.river_name FROM geo.river WHERE river.traverse = 'texas'",
    ]
    respelt = rewrites("SELECT c.population FROM geo.city AS c WHERE c.city_name IN ('San Francisco', 'Austin')",
                       tables, linker.values)  # fmt: skip
    assert respelt[0].sql == "SELECT c.population FROM geo.city AS c WHERE c.city_name IN ('san francisco', 'austin')"
    typed = rewrites("SELECT river.river_name FROM geo.river WHERE river.length > 2200 ORDER BY river.length DESC",
                     tables, linker.values)  # fmt: skip
    assert "TRY_CAST(regexp_extract(replace(river.length" in typed[0].sql
    rows = linker.db.execute(typed[0].sql, timeout_s=5, row_limit=10).rows
    assert rows == (("rio grande",), ("colorado",))  # as numbers: 3057 > 2330 (as text, '3,057' < '507')


def test_a_column_its_table_lacks_moves_to_the_column_that_holds_the_value(linker: SchemaLinker) -> None:
    """A tuned expert shown the whole schema wrote ``state_name`` for rivers (the river table has
    ``traverse``): the query cannot bind, and the one river column holding 'texas' is what it meant."""
    tables = linker.db.tables()  # every geo table shown: city, state... also have state_name
    bare = rewrites("SELECT river_name FROM geo.river WHERE state_name = 'texas'", tables, linker.values)
    assert "SELECT river_name FROM geo.river WHERE traverse = 'texas'" in [r.sql for r in bare]
    named = rewrites("SELECT river.river_name FROM geo.river WHERE river.state_name = 'texas'", tables, linker.values)
    assert "SELECT river.river_name FROM geo.river WHERE river.traverse = 'texas'" in [r.sql for r in named]
    rows = linker.db.execute("SELECT river_name FROM geo.river WHERE traverse = 'texas'", timeout_s=5, row_limit=9).rows
    assert rows
    # A column the query's table has is left alone, though other shown tables hold the value elsewhere.
    kept = rewrites("SELECT city_name FROM geo.city WHERE state_name = 'texas'", tables, linker.values)
    assert not any("traverse" in r.sql for r in kept)


def test_a_value_inside_a_span_that_names_its_table(linker: SchemaLinker) -> None:
    """'rio grande river': the river table's row 'rio grande', though the span is no value itself."""
    matches = linker.values.match("how long is the rio grande river?")
    assert ("geo.river", "river_name", "rio grande") in {w for m in matches for w in m.where}
    fixed = rewrites("SELECT river.length FROM geo.river WHERE river.river_name = 'Rio Grande River'",
                     linker.db.tables(), linker.values)  # fmt: skip
    assert fixed[0].sql == "SELECT river.length FROM geo.river WHERE river.river_name = 'rio grande'"
    assert linker.db.execute(fixed[0].sql, timeout_s=5, row_limit=5).rows == (("3,057 km",),)


def test_a_column_on_the_wrong_alias_is_read_from_the_table_that_has_it(linker: SchemaLinker) -> None:
    wrong = (
        "SELECT T2.city_name FROM geo.city AS T1 JOIN geo.state AS T2 ON T1.state_name = T2.state_name "
        "WHERE T1.state_name = 'texas'"
    )
    expert = Scripted(wrong)
    draft = SqlWriter(expert, linker, db=linker.db).write("what is the capital of the state the city austin is in?")
    assert draft.sql is not None
    assert draft.sql.startswith("SELECT T1.city_name FROM geo.city AS T1")
    assert len(expert.chats) == 1  # a variant ran: no repair turn
    assert [c.origin for c in draft.candidates] == [
        "draft 1",
        "draft 1, each column read from the table that has it",
        "draft 1, unused joins dropped",  # state is read by nothing now; one state per city: the same rows
    ]


def test_a_repair_that_repeats_the_draft_ends_the_turns(linker: SchemaLinker) -> None:
    expert = Scripted("SELECT state.state_name FROM geo.state WHERE state.area > 'big'")
    draft = SqlWriter(expert, linker, db=linker.db).write("which states are big?")
    assert draft.sql is None
    assert len(expert.chats) == 2  # greedy decoding repeats itself: no third turn


def _result(*rows: tuple[Any, ...]) -> QueryResult:
    return QueryResult(("x",), tuple(rows), False, 0.0)


def test_choose_prefers_valid_then_rows_with_values_then_agreement_then_order() -> None:
    failed = Candidate("SELECT nope", "draft 1", error="Binder Error")
    empty = Candidate("SELECT 1 WHERE false", "draft 1", result=_result())
    zero = Candidate("SELECT 0", "draft 1", result=_result((0,)))
    a1, a2, b = (Candidate(f"q{i}", "draft", result=_result((v,))) for i, v in ((1, 5), (2, 5), (3, 7)))
    assert choose([failed]) is None
    assert choose([failed, empty, zero]) is zero
    assert choose([empty, b, a1, a2]) is a1  # two candidates agree on 5
    assert choose([b, a1]) is b  # no agreement: the earlier one
    once = Candidate("SELECT DISTINCT", "draft, each row once", result=_result((5,)))
    twice = [Candidate(f"t{i}", "draft", result=_result((5,), (5,))) for i in range(2)]
    assert choose([once, *twice, b]) is once  # the same answer, repeated or not: one vote, the first wins


def test_writer_repairs_with_the_binder_hint_and_keeps_the_data_spelling(linker: SchemaLinker) -> None:
    ambiguous = (
        "SELECT city_name FROM geo.city JOIN geo.state ON city.state_name = state.state_name WHERE state_name = 'Texas'"
    )
    fixed = (
        "SELECT city.city_name FROM geo.city JOIN geo.state ON city.state_name = state.state_name "
        "WHERE state.state_name = 'Texas'"
    )
    expert = Scripted(ambiguous, fixed)
    links = [link for link in linker.link("which cities are in texas?") if link.table.name in ("city", "state")]
    draft = SqlWriter(expert, linker, db=linker.db).write("which cities are in texas?", links)
    assert draft.attempts == 2
    repair = expert.chats[1][-1].content
    assert "Ambiguous reference" in repair
    assert "city.state_name" in repair
    prompt = expert.chats[0][-1].content
    assert "- 'texas': " in prompt
    assert "city.state_name" in prompt
    assert draft.sql == fixed.replace("'Texas'", "'texas'")
    assert [(c.origin, c.error is None) for c in draft.candidates] == [
        ("draft 1", False),
        ("draft 1, the data's spelling", False),  # still ambiguous
        ("draft 2", True),  # ran, but no row says 'Texas'
        ("draft 2, the data's spelling", True),
    ]
    # Only city is shown: it holds both what the question names (cities, 'texas').
    assert draft.trace()["values"] == {"texas": ["city.state_name"]}
    assert draft.tables == ("geo.city",)


def test_the_fewest_tables_that_hold_what_the_question_names_are_shown(linker: SchemaLinker) -> None:
    question = "what is the area of texas?"
    links = linker.link(question)
    assert {"geo.state", "geo.city", "geo.river"} <= {link.table.qualified for link in links}  # all hold 'texas'
    assert [link.table.name for link in cover(question, links, 3)] == ["state"]
    both = "what is the capital of the state the rio grande runs through?"
    assert {link.table.name for link in cover(both, linker.link(both), 3)} == {"state", "river"}


def test_a_join_that_only_repeats_rows_is_dropped(linker: SchemaLinker) -> None:
    joined = (
        "SELECT state.area FROM geo.state JOIN geo.city ON state.state_name = city.state_name "
        "WHERE state.state_name = 'texas'"
    )
    draft = SqlWriter(Scripted(joined), linker, db=linker.db).write("what is the area of texas?")
    assert draft.sql == "SELECT state.area FROM geo.state WHERE (state.state_name = 'texas')"
    assert [(c.origin, len(c.result.rows) if c.result else None) for c in draft.candidates] == [
        ("draft 1, unused joins dropped", 1),
        ("draft 1", 2),  # texas's area once per city
    ]
    filtered = "SELECT DISTINCT state.state_name FROM geo.state JOIN geo.river ON river.traverse = state.state_name"
    draft = SqlWriter(Scripted(filtered), linker, db=linker.db).write("which states have a river?")
    assert draft.sql == filtered  # the join filters (new york, texas, california all have one): kept


def test_writer_asks_again_when_no_candidate_returns_rows(linker: SchemaLinker) -> None:
    expert = Scripted(
        "SELECT state.capital FROM geo.state WHERE state.state_name = 'tx'",
        "SELECT state.capital FROM geo.state WHERE state.state_name = 'texas'",
    )
    draft = SqlWriter(expert, linker, db=linker.db).write("what is the capital of texas?")
    assert draft.attempts == 2
    assert "returns no rows" in expert.chats[1][-1].content
    assert draft.sql is not None
    assert draft.sql.endswith("'texas'")


def test_qualified_grammar_reads_each_column_from_its_own_table(linker: SchemaLinker) -> None:
    tables = [t for t in linker.db.tables() if t.name in ("city", "state")]
    grammar = sql_grammar(tables, qualified=True)
    ok = "SELECT city.city_name FROM geo.city JOIN geo.state ON city.state_name = state.state_name WHERE state.area > 5"
    assert accepts(grammar, ok)
    assert not accepts(grammar, "SELECT city.area FROM geo.city")  # area is state's
    assert not accepts(grammar, "SELECT city_name FROM geo.city")  # unqualified over two tables
    assert accepts(sql_grammar(tables[:1], qualified=True), "SELECT city_name FROM geo.city")


def test_worked_examples_are_template_queries_over_the_shown_tables(linker: SchemaLinker) -> None:
    """No person writes them: queries made from the shown tables' own columns and values, each
    runs and returns rows, written as the prompt asks (columns qualified, strings of the grammar)."""
    question = "how many people live in austin?"
    for names in (("city",), ("city", "state")):
        tables = [t for t in linker.db.tables() if t.name in names]
        picked = linker.examples.pick(question, tables, k=4)
        assert len(picked) == 4
        assert picked == linker.examples.pick(question, tables, k=4)  # deterministic
        assert max(Counter(ex.template for ex in picked).values()) <= 2  # a few shapes
        grammar = sql_grammar(tables, qualified=True)
        for ex in picked:
            assert set(ex.tables) <= {t.qualified for t in tables}
            assert accepts(grammar, ex.sql), ex.sql
            assert linker.db.execute(ex.sql, timeout_s=5, row_limit=50).rows
        # The closest to the question sits last, next to it.
        sims = [
            float(v @ linker.embedder.embed_query(question))
            for v in linker.embedder.embed([e.question for e in picked])
        ]
        assert sims[-1] == pytest.approx(max(sims), abs=1e-5)
    joined = [ex for ex in linker.examples.examples(tables)[0] if len(ex.tables) == 2]
    assert joined
    assert all(" JOIN geo.state ON city.state_name = state.state_name" in ex.sql for ex in joined)
    assert qualify("SELECT count(*) FROM geo.city WHERE state_name = 'state_name'", tables[0]) == (
        "SELECT count(*) FROM geo.city WHERE city.state_name = 'state_name'"
    )


def test_the_zero_shot_prompt_shows_worked_examples_before_the_question(linker: SchemaLinker) -> None:
    expert = Scripted("SELECT city.population FROM geo.city WHERE city.city_name = 'austin'")
    draft = SqlWriter(expert, linker, db=linker.db, examples=3).write("what is the population of austin?")
    assert draft.sql == "SELECT city.population FROM geo.city WHERE city.city_name = 'austin'"
    prompt = expert.chats[0][-1].content
    tables = [t for t in linker.db.tables() if t.qualified in draft.tables]
    matches = linker.values.match("what is the population of austin?", tables=set(draft.tables))
    shown = linker.examples.pick("what is the population of austin?", tables, k=3, matches=matches)
    assert len(shown) == 3
    # The question's own value, not one a template drew: an example remade on 'austin' that returns rows.
    assert shown[-1].sql == "SELECT city.population FROM geo.city WHERE city.city_name = 'austin'"
    assert shown[-1].question == "What is the population of austin?"
    block = "".join(f"Question: {ex.question}\nSQL: {ex.sql}\n\n" for ex in shown)
    assert f"Examples over these tables:\n{block}" in prompt
    assert prompt.index("Examples over") < prompt.index("Values in the question") < prompt.index("Question: what")
    bare = Scripted("SELECT 1")
    SqlWriter(bare, linker, db=linker.db).write("what is the population of austin?")  # off by default
    assert "Examples over" not in bare.chats[0][-1].content


def test_a_count_of_one_row_of_an_amount_becomes_the_amount(linker: SchemaLinker) -> None:
    """'how many people live in austin' written as COUNT(city.population): the population is meant."""
    counted = "SELECT COUNT(city.population) FROM geo.city WHERE city.city_name = 'austin'"
    draft = SqlWriter(Scripted(counted), linker, db=linker.db).write("how many people live in austin?")
    assert draft.sql == "SELECT city.population FROM geo.city WHERE city.city_name = 'austin'"
    assert [c.origin for c in draft.candidates][:2] == ["draft 1, the amount instead of a count of one row", "draft 1"]
    assert linker.db.execute(draft.sql, timeout_s=5, row_limit=5).rows == ((790390,),)
    several = "SELECT COUNT(city.population) FROM geo.city WHERE city.state_name = 'texas'"
    assert SqlWriter(Scripted(several), linker, db=linker.db).write("how many cities are in texas?").sql == several
    tables = linker.db.tables()
    assert measure_for_count("SELECT COUNT(*) FROM geo.city", tables) is None
    assert measure_for_count("SELECT COUNT(c.city_name) FROM geo.city AS c", tables) is None  # text: a real count
    assert measure_for_count("SELECT count(DISTINCT r.length) FROM geo.river AS r", tables, linker.values) == (
        "SELECT r.length FROM geo.river AS r"  # text of numbers ('3,057 km') is an amount too
    )


def test_no_scalar_function_is_spelt_as_a_column(linker: SchemaLinker) -> None:
    """river has a column ``length``: the grammar offers the column, not the LENGTH function."""
    river = [t for t in linker.db.tables() if t.name == "river"]
    grammar = sql_grammar(river, qualified=True)
    assert accepts(grammar, "SELECT river.length FROM geo.river WHERE river.river_name = 'colorado'")
    assert not accepts(grammar, "SELECT LENGTH(river.river_name) FROM geo.river")
    assert accepts(grammar, "SELECT LOWER(river.river_name) FROM geo.river")
    city = [t for t in linker.db.tables() if t.name == "city"]
    assert accepts(sql_grammar(city), "SELECT LENGTH(city_name) FROM geo.city")


def test_a_query_that_returns_only_the_questions_value_asks_again(linker: SchemaLinker) -> None:
    """'where is austin' answered with 'austin' is no answer: the model is asked again."""
    echo = "SELECT city.city_name FROM geo.city WHERE city.city_name = 'austin'"
    answer = "SELECT city.state_name FROM geo.city WHERE city.city_name = 'austin'"
    expert = Scripted(echo, answer)
    draft = SqlWriter(expert, linker, db=linker.db).write("where is austin?")
    assert draft.sql == answer
    assert "only returns the value the question already names" in expert.chats[1][-1].content
    ran = [c for c in draft.candidates if c.result is not None]
    assert [echoes(c) for c in ran] == [True, False]
    both = Candidate("SELECT c.city_name FROM geo.city AS c WHERE c.city_name IN ('austin', 'houston')", "draft 1",
                     result=_result(("houston",)))  # fmt: skip
    assert not echoes(both)  # "which is larger, austin or houston": one of the two is the answer


def test_an_echo_compares_the_value_with_the_other_column_that_holds_it(linker: SchemaLinker) -> None:
    """'new york' is a city and a state: a filter on one column that returns the value back is also
    tried on the other (the question may name the row there)."""
    echo = "SELECT city.state_name FROM geo.city WHERE city.state_name = 'new york'"
    assert [r.sql for r in swapped(echo, linker.db.tables(), linker.values)] == [
        "SELECT city.state_name FROM geo.city WHERE city.city_name = 'new york'"
    ]
    # Only the column compared holds 'austin' in city: nothing to swap.
    assert swapped("SELECT city.city_name FROM geo.city WHERE city.city_name = 'austin'", linker.db.tables(),
                   linker.values) == []  # fmt: skip


def test_a_selected_column_the_filter_fixes_to_the_questions_value_is_dropped(linker: SchemaLinker) -> None:
    """'texas' is the question's own value: the answer is the capital alone."""
    both = "SELECT state.state_name, state.capital FROM geo.state WHERE state.state_name = 'texas'"
    draft = SqlWriter(Scripted(both), linker, db=linker.db).write("what is the capital of texas?")
    assert draft.sql == "SELECT state.capital FROM geo.state WHERE state.state_name = 'texas'"
    assert draft.candidates[0].origin == "draft 1, the question's value not selected"
    # Two values compared (OR, IN) fix no column; one selected column is never dropped.
    assert unechoed("SELECT s.state_name, s.area FROM geo.state AS s WHERE s.state_name = 'texas' OR "
                    "s.state_name = 'new york'") is None  # fmt: skip
    assert unechoed("SELECT state.state_name FROM geo.state WHERE state.state_name = 'texas'") is None


def test_a_count_of_the_one_row_a_key_names_asks_for_the_amount(linker: SchemaLinker) -> None:
    """'how big is texas' counted as the one state row named 'texas' (1) is no answer: asked again."""
    count = "SELECT COUNT(*) FROM geo.state WHERE state.state_name = 'texas'"
    answer = "SELECT state.area FROM geo.state WHERE state.state_name = 'texas'"
    expert = Scripted(count, answer)
    draft = SqlWriter(expert, linker, db=linker.db).write("how big is texas?")
    assert draft.sql == answer
    assert "counts the one row the question names" in expert.chats[1][-1].content
    # A count over a column that is no whole key may rightly be 1 ("how many cities are named austin").
    one = SqlWriter(Scripted("SELECT COUNT(*) FROM geo.city WHERE city.city_name = 'austin'"), linker, db=linker.db)
    assert one.write("how many cities are named austin?").attempts == 1


def test_a_row_returned_more_than_once_is_returned_once(linker: SchemaLinker) -> None:
    """Both rivers of texas are in the usa: the answer is 'usa', once."""
    repeated = "SELECT river.country_name FROM geo.river WHERE river.traverse = 'texas'"
    draft = SqlWriter(Scripted(repeated), linker, db=linker.db).write("in which country are the rivers of texas?")
    assert draft.sql == "SELECT DISTINCT river.country_name FROM geo.river WHERE river.traverse = 'texas'"
    assert draft.candidates[0].origin == "draft 1, each row once"
    assert linker.db.execute(draft.sql, timeout_s=5, row_limit=10).rows == (("usa",),)


def test_a_join_on_columns_that_share_no_values_is_made_on_those_that_do(linker: SchemaLinker) -> None:
    """river.river_name and state.state_name share no value; river.traverse holds three states."""
    wrong = (
        "SELECT state.capital FROM geo.river JOIN geo.state ON river.river_name = state.state_name "
        "WHERE river.river_name = 'rio grande'"
    )
    right = wrong.replace("river.river_name = state.state_name", "river.traverse = state.state_name")
    assert rekeyed(wrong, linker.db.tables(), linker.values) == right
    assert rekeyed(right, linker.db.tables(), linker.values) is None  # already on the best pair
    assert linker.values.shared(("geo.river", "traverse"), ("geo.state", "state_name")) == 3
    draft = SqlWriter(Scripted(wrong), linker, db=linker.db).write(
        "what is the capital of the state of the rio grande?"
    )
    assert draft.sql == right
    assert draft.candidates[0].origin == "draft 1, joined on the columns that share values"
    assert linker.db.execute(draft.sql, timeout_s=5, row_limit=5).rows == (("austin",),)


def test_a_join_on_a_column_its_table_lacks_is_made_on_the_columns_that_share_values(linker: SchemaLinker) -> None:
    """river has no state_name: the wrong-alias fix must not make it city.state_name = city.state_name
    (true on every row); the data says river.traverse holds the states."""
    wrong = (
        "SELECT r.river_name FROM geo.river AS r JOIN geo.city AS c ON r.state_name = c.state_name "
        "WHERE c.city_name = 'austin'"
    )
    tables = linker.db.tables()
    assert all(v.sql.count("c.state_name = c.state_name") == 0 for v in rewrites(wrong, tables, linker.values))
    right = wrong.replace("r.state_name = c.state_name", "r.traverse = c.state_name")
    assert rekeyed(wrong, tables, linker.values) == right
    draft = SqlWriter(Scripted(wrong), linker, db=linker.db).write("which rivers run through the state of austin?")
    assert draft.sql == right
    assert sorted(linker.db.execute(draft.sql, timeout_s=5, row_limit=5).rows) == [("red",), ("rio grande",)]


def test_a_join_of_a_column_with_itself_is_made_on_the_columns_that_share_values(linker: SchemaLinker) -> None:
    """``ON T2.state_name = T2.state_name`` holds on every row: a cross join of river and state."""
    crossed = (
        "SELECT T1.river_name FROM geo.river AS T1 JOIN geo.state AS T2 ON T2.state_name = T2.state_name "
        "WHERE T2.capital = 'austin'"
    )
    right = crossed.replace("T2.state_name = T2.state_name", "T1.traverse = T2.state_name")
    assert rekeyed(crossed, linker.db.tables(), linker.values) == right
    assert sorted(linker.db.execute(right, timeout_s=5, row_limit=5).rows) == [("red",), ("rio grande",)]
    assert len(linker.db.execute(crossed, timeout_s=5, row_limit=10).rows) == 4  # every river


def test_a_value_with_a_bracketed_note_is_found_by_its_words() -> None:
    """WikiTableQuestions stores 'Ukraine (UKR)'; the question says ukraine."""
    index = ValueIndex()
    index.add("Ukraine (UKR)", ("wtq.t", "nation", "Ukraine (UKR)"))
    index.add("Spain", ("wtq.t", "nation", "Spain"))
    assert index.spelling("Ukraine", ("wtq.t", "nation")) == "Ukraine (UKR)"
    assert [m.where for m in index.match("silver medals won by ukraine")] == [(("wtq.t", "nation", "Ukraine (UKR)"),)]
    assert index.spelling("Spain", ("wtq.t", "nation")) is None


def test_routing_tries_the_tables(linker: SchemaLinker) -> None:
    router = Router(linker.embedder)
    question = "tell me about san francisco"
    links = linker.link(question)
    assert router.route(question, links).route == "structured"  # names a value the city table holds
    vague = "where does the hudson go"
    assert router.route(vague, linker.link(vague), passages=False).route == "structured"
    assert router.route("hello", linker.link("hello"), passages=False).route == "not_fact_seeking"


def test_a_question_through_v1_query_is_answered_from_its_own_database(geo_kb_path: Path) -> None:
    """End to end on a real server: a table-only knowledge base, a model that capitalises the city
    (as models do), and the rows of the data's spelling as cited evidence with their SQL."""
    import httpx

    import grounded
    from grounded.api.app import create_app
    from tests.api.attacker import Attacker, attacker_server, expert_settings
    from tests.api.serving import serving

    attacker = Attacker(sql="SELECT city.population FROM geo.city WHERE city.city_name = 'San Francisco'")
    with attacker_server(attacker) as url:
        experts = expert_settings(url, sql=True, tool_call=False)
        kb = grounded.open(geo_kb_path, create=False, experts=experts, answer={"cache": False})
        assert kb.stats()["sources"] == 1  # a table-only source counts
        with serving(create_app(kb)) as base, httpx.Client(base_url=base, timeout=60) as client:
            body = client.post("/v1/query", json={"query": "How many people live in San Francisco?"}).json()
    assert body["route"] == "structured", body["trace"]
    sql_citations = [c for c in body["citations"] if c.get("tool") == "sql" or "query" in str(c)]
    assert sql_citations, body["citations"]
    assert "805235" in str(sql_citations)
    assert "'san francisco'" in str(sql_citations)
    draft = body["trace"]["sql_drafts"][0]
    assert draft["values"] == {"san francisco": ["city.city_name"]}
    assert [c["origin"] for c in draft["candidates"]] == ["draft 1", "draft 1, the data's spelling"]
    assert "- 'san francisco': city.city_name" in attacker.prompts[0]


def test_a_table_only_sync_loads_no_embedding_model(tmp_path: Path) -> None:
    """Issue 25, item 4: nothing is embedded, so the model stays on disk; the manifest still has its dimension."""
    import grounded
    from connectors.registry import build_connector
    from grounded.experts.embedding import SentenceEmbedder

    db = make_geo(tmp_path / "geo.sqlite")
    kb = grounded.open(tmp_path / "kb")
    kb.store.embedder = SentenceEmbedder()  # a fresh instance: not loaded by another test
    params = {"path": str(db), "tables": [{"name": "city"}, {"name": "state"}]}
    stats = kb.sync("geo", build_connector("sqlite", params, source="geo"))
    assert stats.rows_upserted == len(CITIES) + len(STATES)
    assert kb.store.embedder._model is None
    assert kb.snapshot().version.manifest["dim"] == 384
    assert kb.stats()["sources"] == 1
    again = kb.sync("geo", build_connector("sqlite", params, source="geo"))  # the key diff runs from now on
    assert (again.rows_upserted, again.rows_deleted) == (0, 0)
    assert kb.store.embedder._model is None


def test_a_superlative_keeps_every_row_at_the_extreme(linker: SchemaLinker) -> None:
    """California and Texas both have the most cities (two each): ``LIMIT 1`` would keep one of them."""
    limited = "SELECT city.state_name FROM geo.city GROUP BY city.state_name ORDER BY COUNT(*) DESC LIMIT 1"
    draft = SqlWriter(Scripted(limited), linker, db=linker.db).write("which state has the most cities?")
    assert draft.sql is not None
    assert "HAVING COUNT(*) = (SELECT MAX(ties.v)" in draft.sql
    rows = linker.db.execute(draft.sql, timeout_s=5, row_limit=10).rows
    assert sorted(rows) == [("california",), ("texas",)]
    assert all("LIMIT 1" in c.sql for c in draft.candidates if "extreme" not in c.origin)


def test_a_superlative_without_a_tie_keeps_the_draft(linker: SchemaLinker) -> None:
    """One largest state: both readings return it and agree, and the draft as written is chosen."""
    limited = "SELECT state.state_name FROM geo.state ORDER BY state.area DESC LIMIT 1"
    draft = SqlWriter(Scripted(limited), linker, db=linker.db).write("which state has the largest area?")
    assert draft.sql == limited
    tied = next(c for c in draft.candidates if "extreme" in c.origin)
    assert tied.sql == (
        "SELECT state.state_name FROM geo.state WHERE state.area = (SELECT MAX(state.area) FROM geo.state)"
    )
    assert tied.answer == frozenset({("texas",)})


def test_all_ties_reads_subqueries_and_leaves_what_it_cannot_read() -> None:
    from grounded.sql.ties import all_ties

    nested = (
        "SELECT river.river_name FROM geo.river WHERE river.traverse = "
        "(SELECT state.state_name FROM geo.state ORDER BY state.area DESC LIMIT 1)"
    )
    assert all_ties(nested) == (
        "SELECT river.river_name FROM geo.river WHERE river.traverse IN "
        "(SELECT state.state_name FROM geo.state WHERE state.area = (SELECT MAX(state.area) FROM geo.state))"
    )
    assert all_ties("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1 LIMIT 1") is None
    assert all_ties("SELECT a FROM t ORDER BY a, b LIMIT 1") is None
    assert all_ties("SELECT COUNT(*) FROM t ORDER BY 1 LIMIT 1") is None
    assert all_ties("SELECT a FROM t ORDER BY a DESC LIMIT 2") is None
