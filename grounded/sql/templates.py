"""Template SQL over a source's own mirrored tables: the SQL half of ``tune sql --synthesize``, and
the worked examples of the zero-shot prompt (:mod:`grounded.sql.examples`).

Each table of the source is profiled once, its columns sorted by what a question can do with them:

- the **label**: the text column that names a row (a text primary key, else a column called
  ``name``/``*_name``/``title``, else the first text column);
- **attributes**: the other text columns with at least two values (**categories** among them:
  those whose values repeat, so counting and grouping by them says something);
- **measures**: numbers, or text holding numbers (``'6,194'``, read with
  :func:`grounded.sql.candidates.numeric` as the zero-shot path reads them), but not id-like
  columns (``id``, ``*_id``, a numeric primary key), whose sums and maxima mean nothing;
- **joins**: a column of one table that is another table's one-column primary key, by the same
  name (``city.state_name`` -> ``state.state_name``) or as ``<table>_<key>``
  (``products.supplier_id`` -> ``suppliers.id``).

The templates (:data:`TEMPLATES`): a row's attribute (``lookup``), rows with a value
(``filter``), ``count`` with a filter, ``group_count`` (GROUP BY), an ``aggregate``
(max/min/avg/sum, with or without a filter), a ``superlative`` (ORDER BY ... LIMIT 1), a numeric
``compare`` against a value from the column, and ``join`` / ``join_count`` along a key. Values
are real: drawn from the column's own distinct values by a generator seeded with ``seed``, so
the same seed over the same data gives the same queries. Each query is checked by the SQL guard
and run read-only on the mirror, and kept only when it returns 1 to ``max_rows`` rows holding a
value (not only NULL or 0). Every query comes with its template question ("How many cities have
state name texas?"), exact by construction, and the columns and values a written question
should name.

Example::

    for made in template_queries(db, "geo", seed=0):
        made.template, made.sql, made.question
        # ('count', "SELECT count(*) FROM geo.city WHERE state_name = 'texas'", 'How many cities have state name texas?')
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from grounded.errors import NotFound
from grounded.sql.candidates import numeric, substance
from grounded.sql.database import QueryResult, ReadOnlyDatabase, TableInfo, quote_ident, quote_identifier
from grounded.sql.guard import SqlRefused, check_sql
from grounded.sql.prompts import source_tables
from grounded.sql.values import ValueIndex

__all__ = ["TEMPLATES", "TemplateSql", "template_queries"]

TEMPLATES = (
    "lookup",
    "filter",
    "count",
    "group_count",
    "aggregate",
    "superlative",
    "compare",
    "join",
    "join_count",
)
"""Every template, in the order they take turns (see the module docstring)."""
MAX_VALUES = 200
"""Distinct values read per column to sample from (the first by value, so the choice is stable)."""
MAX_VALUE_CHARS = 40
_NUMBER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UBIGINT", "UINTEGER", "DOUBLE", "FLOAT")
_AGGREGATES = {"max": "largest", "min": "smallest", "avg": "average", "sum": "total"}


@dataclass(frozen=True, slots=True)
class TemplateSql:
    """One synthesized query that ran and returned rows, with its template question."""

    template: str
    sql: str
    question: str
    """The template's own question, exact by construction (the fallback when no written one is kept)."""
    tables: tuple[str, ...]
    columns: tuple[str, ...]
    """The columns a question must name (what it asks about and filters on)."""
    values: tuple[str, ...]
    """The literal values in the query, as written in it."""
    rows: int


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    ref: str
    """The column as SQL reads it: quoted when needed, and as a number when it is numeric text."""
    values: tuple[Any, ...]
    repeats: bool


@dataclass(frozen=True, slots=True)
class _Profile:
    table: TableInfo
    label: _Column | None
    attributes: tuple[_Column, ...]
    measures: tuple[_Column, ...]

    @property
    def categories(self) -> tuple[_Column, ...]:
        return tuple(c for c in self.attributes if c.repeats)


@dataclass(frozen=True, slots=True)
class _Join:
    """``child.column = parent.key``, where ``key`` is the parent's one-column primary key."""

    child: _Profile
    column: str
    parent: _Profile
    key: str


def ident(name: str) -> str:
    """A column or table name as SQL: bare when it is a plain lower-case name and not a keyword, else
    double-quoted (a column named ``select`` or ``group`` written bare made every query over it fail)."""
    return quote_identifier(name)


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _words(name: str) -> str:
    return name.replace("_", " ").strip().lower()


def _plural(name: str) -> str:
    words = _words(name)
    if words.endswith("s"):
        return words
    if re.search(r"[^aeiou]y$", words):
        return words[:-1] + "ies"
    return words + ("es" if re.search(r"(x|ch|sh)$", words) else "s")


def _singular(name: str) -> str:
    words = _words(name)
    if words.endswith("ies") and len(words) > 4:
        return words[:-3] + "y"
    if words.endswith("s") and not words.endswith("ss") and len(words) > 3:
        return words[:-1]
    return words


def _id_like(name: str, table: TableInfo) -> bool:
    low = name.lower()
    return low == "id" or low.endswith("_id") or (low in {c.lower() for c in table.primary_key})


def _profile(db: ReadOnlyDatabase, table: TableInfo, numeric_text: frozenset[tuple[str, str]]) -> _Profile:
    cur = db.cursor()
    try:
        total = int(cur.execute(f"SELECT count(*) FROM {table.quoted}").fetchone()[0])  # type: ignore[index]
        texts: list[_Column] = []
        measures: list[_Column] = []
        for name, type_ in table.columns:
            col = quote_ident(name)
            is_text = type_.upper().startswith("VARCHAR")
            as_number = is_text and (table.qualified, name) in numeric_text
            if not is_text and not type_.upper().startswith(_NUMBER_TYPES) and not type_.upper().startswith("DECIMAL"):
                continue  # dates, booleans, blobs: no template reads them yet
            expr = numeric(col) if as_number else col
            keep = f"length({col}) BETWEEN 1 AND {MAX_VALUE_CHARS}" if is_text and not as_number else "true"
            rows = cur.execute(
                f"SELECT DISTINCT {expr} AS v FROM {table.quoted} WHERE {col} IS NOT NULL AND {keep} "
                f"AND v IS NOT NULL ORDER BY v LIMIT {MAX_VALUES}"
            ).fetchall()
            values = tuple(r[0] for r in rows)
            if len(values) < 2:
                continue  # a constant column says nothing a question could ask about
            distinct = int(cur.execute(f"SELECT count(DISTINCT {col}) FROM {table.quoted}").fetchone()[0])  # type: ignore[index]
            column = _Column(name, numeric(ident(name)) if as_number else ident(name), values, distinct < total)
            if is_text and not as_number:
                texts.append(column)
            elif not _id_like(name, table):
                measures.append(column)
    finally:
        cur.close()
    label = _label(table, texts)
    return _Profile(table, label, tuple(c for c in texts if c is not label), tuple(measures))


def _label(table: TableInfo, texts: list[_Column]) -> _Column | None:
    keys = {c.lower() for c in table.primary_key}
    rules: tuple[Callable[[_Column], bool], ...] = (
        lambda c: c.name.lower() in keys and not c.repeats,
        lambda c: (c.name.lower() in {"name", "title"} or c.name.lower().endswith("_name")) and not c.repeats,
        lambda c: not c.repeats,
    )
    for wanted in rules:
        found = [c for c in texts if wanted(c)]
        if found:
            return found[0]
    return texts[0] if texts else None


def _joins(profiles: list[_Profile]) -> list[_Join]:
    out: list[_Join] = []
    for parent in profiles:
        if len(parent.table.primary_key) != 1:
            continue
        key = parent.table.primary_key[0]
        names = {key.lower(), f"{_singular(parent.table.name).replace(' ', '_')}_{key.lower()}"}
        for child in profiles:
            if child is parent:
                continue
            for column, _ in child.table.columns:
                # Many rows of the child to one of the parent: a column that is the child's own whole
                # key too (two tables keyed by state) joins one row to one, which no question needs.
                if column.lower() in names and [c.lower() for c in child.table.primary_key] != [column.lower()]:
                    out.append(_Join(child, column, parent, key))
    return out


class _Maker:
    """Draws one query of a template with ``rng``; ``None`` when the source has nothing it needs."""

    def __init__(
        self, profiles: list[_Profile], joins: list[_Join], rng: random.Random, *, varied: bool = False
    ) -> None:
        self.profiles = profiles
        self.joins = joins
        self.rng = rng
        self.varied = varied

    def _say(self, sql: str, *phrasings: str) -> str:
        """The first phrasing, or with ``varied`` one of them picked by the SQL itself: the same
        query always reads the same, and the values drawn do not depend on the phrasing."""
        if not self.varied:
            return phrasings[0]
        return random.Random(sql).choice(phrasings)

    def make(self, template: str) -> TemplateSql | None:
        build: Callable[[], TemplateSql | None] = getattr(self, f"_{template}")
        return build()

    def _pick(self, need: Callable[[_Profile], bool]) -> _Profile | None:
        found = [p for p in self.profiles if need(p)]
        return self.rng.choice(found) if found else None

    def _value(self, column: _Column) -> Any:
        return self.rng.choice(column.values)

    @staticmethod
    def _made(
        template: str, sql: str, question: str, p: _Profile, columns: list[_Column], values: list[Any]
    ) -> TemplateSql:
        return TemplateSql(
            template, sql, question, (p.table.qualified,), tuple(c.name for c in columns), tuple(map(str, values)), 0
        )

    def _lookup(self) -> TemplateSql | None:
        p = self._pick(lambda p: p.label is not None and bool(p.attributes or p.measures))
        if p is None or p.label is None:
            return None
        target = self.rng.choice([*p.attributes, *p.measures])
        v = self._value(p.label)
        sql = f"SELECT {target.ref} FROM {p.table.sql_name} WHERE {p.label.ref} = {_literal(v)}"
        c = _words(target.name)
        question = self._say(sql, f"What is the {c} of {v}?", f"What {c} does {v} have?", f"Give the {c} of {v}.")
        return self._made("lookup", sql, question, p, [target], [v])

    def _filter(self) -> TemplateSql | None:
        p = self._pick(lambda p: p.label is not None and bool(p.attributes))
        if p is None or p.label is None:
            return None
        by = self.rng.choice(p.attributes)
        v = self._value(by)
        sql = f"SELECT {p.label.ref} FROM {p.table.sql_name} WHERE {by.ref} = {_literal(v)}"
        t, b = _plural(p.table.name), _words(by.name)
        question = self._say(
            sql, f"Which {t} have {b} {v}?", f"List the {t} whose {b} is {v}.", f"Name all {t} with {b} {v}."
        )
        return self._made("filter", sql, question, p, [by], [v])

    def _count(self) -> TemplateSql | None:
        p = self._pick(lambda p: bool(p.categories))
        if p is None:
            return None
        by = self.rng.choice(p.categories)
        v = self._value(by)
        sql = f"SELECT count(*) FROM {p.table.sql_name} WHERE {by.ref} = {_literal(v)}"
        t, b = _plural(p.table.name), _words(by.name)
        question = self._say(
            sql,
            f"How many {t} have {b} {v}?",
            f"What is the number of {t} whose {b} is {v}?",
            f"Count the {t} with {b} {v}.",
        )
        return self._made("count", sql, question, p, [by], [v])

    def _group_count(self) -> TemplateSql | None:
        p = self._pick(lambda p: bool(p.categories))
        if p is None:
            return None
        by = self.rng.choice(p.categories)
        sql = f"SELECT {by.ref}, count(*) FROM {p.table.sql_name} GROUP BY {by.ref}"
        t, b = _plural(p.table.name), _words(by.name)
        question = self._say(sql, f"How many {t} are there for each {b}?", f"Give the number of {t} per {b}.")
        return self._made("group_count", sql, question, p, [by], [])

    def _aggregate(self) -> TemplateSql | None:
        p = self._pick(lambda p: bool(p.measures))
        if p is None:
            return None
        of = self.rng.choice(p.measures)
        fn = self.rng.choice(sorted(_AGGREGATES))
        sql = f"SELECT {fn}({of.ref}) FROM {p.table.sql_name}"
        a, o, t = _AGGREGATES[fn], _words(of.name), _plural(p.table.name)
        if p.categories and self.rng.random() < 0.5:
            by = self.rng.choice(p.categories)
            v = self._value(by)
            sql += f" WHERE {by.ref} = {_literal(v)}"
            b = _words(by.name)
            question = self._say(
                sql, f"What is the {a} {o} of {t} with {b} {v}?", f"Among {t} whose {b} is {v}, what is the {a} {o}?"
            )
            return self._made("aggregate", sql, question, p, [of, by], [v])
        question = self._say(sql, f"What is the {a} {o} of all {t}?", f"Give the {a} {o} among {t}.")
        return self._made("aggregate", sql, question, p, [of], [])

    def _superlative(self) -> TemplateSql | None:
        p = self._pick(lambda p: p.label is not None and bool(p.measures))
        if p is None or p.label is None:
            return None
        of = self.rng.choice(p.measures)
        high = self.rng.random() < 0.5
        where, question_where, columns, values = "", "", [of], []
        if p.categories and self.rng.random() < 0.4:
            by = self.rng.choice(p.categories)
            v = self._value(by)
            where = f" WHERE {by.ref} = {_literal(v)}"
            question_where = f" with {_words(by.name)} {v}"
            columns, values = [of, by], [v]
        # DuckDB sorts NULLs last either way: a missing number is never the largest or the smallest.
        sql = (
            f"SELECT {p.label.ref} FROM {p.table.sql_name}{where} ORDER BY {of.ref} {'DESC' if high else 'ASC'} LIMIT 1"
        )
        one, o = _singular(p.table.name), _words(of.name)
        question = self._say(
            sql,
            f"Which {one}{question_where} has the {'highest' if high else 'lowest'} {o}?",
            f"What is the {one}{question_where} with the {'largest' if high else 'smallest'} {o}?",
            f"Name the {one}{question_where} whose {o} is the {'greatest' if high else 'least'}.",
        )
        return self._made("superlative", sql, question, p, columns, values)

    def _compare(self) -> TemplateSql | None:
        p = self._pick(lambda p: p.label is not None and bool(p.measures))
        if p is None or p.label is None:
            return None
        of = self.rng.choice(p.measures)
        # A threshold from the column's middle half, so both sides of it hold rows.
        n = len(of.values)
        x = of.values[self.rng.randrange(n // 4, max(n // 4 + 1, 3 * n // 4))]
        above = self.rng.random() < 0.5
        sql = f"SELECT {p.label.ref} FROM {p.table.sql_name} WHERE {of.ref} {'>' if above else '<'} {_literal(x)}"
        article = "an" if _words(of.name)[:1] in set("aeiou") else "a"
        t, o = _plural(p.table.name), _words(of.name)
        question = self._say(
            sql,
            f"Which {t} have {article} {o} {'greater' if above else 'less'} than {_literal(x)}?",
            f"List the {t} whose {o} is {'above' if above else 'below'} {_literal(x)}.",
        )
        return self._made("compare", sql, question, p, [of], [_literal(x)])

    def _join_parts(self) -> tuple[_Join, _Column, Any] | None:
        usable = [j for j in self.joins if j.child.label is not None and j.parent.attributes]
        if not usable:
            return None
        join = self.rng.choice(usable)
        by = self.rng.choice(join.parent.attributes)
        return join, by, self._value(by)

    def _join_from(self, join: _Join) -> str:
        c, p = join.child.table, join.parent.table
        return f"{c.sql_name} JOIN {p.sql_name} ON {ident(c.name)}.{ident(join.column)} = {ident(p.name)}.{ident(join.key)}"

    def _join(self) -> TemplateSql | None:
        parts = self._join_parts()
        if parts is None:
            return None
        join, by, v = parts
        child, parent = join.child.table, join.parent.table
        label = join.child.label
        assert label is not None  # _join_parts keeps only children with a label
        sql = (
            f"SELECT {ident(child.name)}.{label.ref} FROM {self._join_from(join)} "
            f"WHERE {ident(parent.name)}.{by.ref} = {_literal(v)}"
        )
        ct, ps, b = _plural(child.name), _singular(parent.name), _words(by.name)
        question = self._say(
            sql, f"Which {ct} are in the {ps} whose {b} is {v}?", f"List the {ct} of the {ps} with {b} {v}."
        )
        made = self._made("join", sql, question, join.child, [by], [v])
        return _with_tables(made, (child.qualified, parent.qualified))

    def _join_count(self) -> TemplateSql | None:
        parts = self._join_parts()
        if parts is None:
            return None
        join, by, v = parts
        child, parent = join.child.table, join.parent.table
        sql = f"SELECT count(*) FROM {self._join_from(join)} WHERE {ident(parent.name)}.{by.ref} = {_literal(v)}"
        ct, ps, b = _plural(child.name), _singular(parent.name), _words(by.name)
        question = self._say(
            sql, f"How many {ct} are in the {ps} whose {b} is {v}?", f"Count the {ct} of the {ps} with {b} {v}."
        )
        made = self._made("join_count", sql, question, join.child, [by], [v])
        return _with_tables(made, (child.qualified, parent.qualified))


def _with_tables(made: TemplateSql, tables: tuple[str, ...]) -> TemplateSql:
    return TemplateSql(made.template, made.sql, made.question, tables, made.columns, made.values, made.rows)


def _run(db: ReadOnlyDatabase, tables: tuple[TableInfo, ...], sql: str, max_rows: int) -> QueryResult | None:
    try:
        guard = check_sql(sql, tables)
        return db.execute(guard.sql, timeout_s=5.0, row_limit=max_rows)
    except (SqlRefused, duckdb.Error, TimeoutError):
        return None


def template_queries(
    db: ReadOnlyDatabase,
    source: str,
    *,
    seed: int = 0,
    max_rows: int = 30,
    templates: tuple[str, ...] = TEMPLATES,
    max_tries: int = 100_000,
    tables: Sequence[TableInfo] | None = None,
    varied: bool = False,
) -> Iterator[TemplateSql]:
    """Queries over ``source``'s mirrored tables that run and return rows, templates taking turns.

    Endless until every template has failed many times in a row (the data has no new query to
    give) or after ``max_tries`` drawn; the caller takes as many as it wants. Each SQL is given
    once. ``tables`` narrows the source to some of its tables (those a prompt shows).
    ``varied``: each question in one of its template's phrasings (two or three, picked by the
    query), not always the first: training pairs that teach the query, not one sentence shape.
    """
    tables = tuple(source_tables(tables if tables is not None else db.tables(), source))
    if not tables:
        known = sorted({t.schema for t in db.tables()})
        raise NotFound(
            f"source {source!r} has no mirrored tables; sync it first (grounded sync {source}); "
            f"sources with tables: {', '.join(known) or 'none'}"
        )
    unknown = sorted(set(templates) - set(TEMPLATES))
    if unknown:
        raise ValueError(f"unknown SQL templates {unknown}; known: {', '.join(TEMPLATES)}")
    numeric_text = ValueIndex.build(db, tables).numeric_text
    profiles = [_profile(db, t, numeric_text) for t in tables]
    maker = _Maker(profiles, _joins(profiles), random.Random(seed), varied=varied)
    seen: set[str] = set()
    misses = dict.fromkeys(templates, 0)
    for tries in range(max_tries):
        live = [t for t in templates if misses[t] < 50]
        if not live:
            return
        template = live[tries % len(live)]
        made = maker.make(template)
        if made is None or made.sql in seen:
            misses[template] += 1
            continue
        seen.add(made.sql)
        result = _run(db, tables, made.sql, max_rows)
        if result is None or result.truncated or substance(result) < 2:
            misses[template] += 1
            continue
        misses[template] = 0
        yield TemplateSql(
            made.template, made.sql, made.question, made.tables, made.columns, made.values, len(result.rows)
        )
