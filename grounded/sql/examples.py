"""Worked examples for the zero-shot prompt, made from the shown tables' own columns and values.

A small model copies the shape of what it is shown far better than it follows an instruction:
given "Q: What is the population of houston? SQL: SELECT city.population FROM geo.city WHERE
city.city_name = 'houston'" it stops answering "how many people live in austin" with
``COUNT(*)``, and it sees which column names a row, how a superlative is written and which
key joins two tables. No person writes these examples, and no benchmark question is one of
them: they are the template queries of :mod:`grounded.sql.templates` over the tables a prompt
shows (real columns, real values, each query run and returning rows), with their template
questions, in the spelling the zero-shot prompt asks for (every column qualified by its table),
chosen per question by embedding similarity to the question (as DAIL-SQL chooses its examples).

:class:`ExampleBank` keeps the examples of the last table sets it was asked about (one small
batch of template queries and their question vectors per set), for one version's database.

Example::

    bank = ExampleBank(db, embedder)
    for ex in bank.pick("how many people live in austin", shown_tables, k=3):
        ex.question, ex.sql   # ('What is the population of houston?', "SELECT city.population FROM ...")
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np

from grounded.experts.embedding import SentenceEmbedder
from grounded.sql.candidates import outside_literals, substance
from grounded.sql.database import ReadOnlyDatabase, TableInfo, quote_identifier
from grounded.sql.guard import SqlRefused, check_sql, shared_parser
from grounded.sql.templates import template_queries
from grounded.sql.values import ValueMatch

__all__ = ["Example", "ExampleBank", "qualify"]

PER_TABLE_SET = 48
"""Template queries made for one set of shown tables (the templates take turns, so every kind is there)."""
MAX_PER_TEMPLATE = 2
"""At most this many examples of one template in a prompt: a few shapes, not one shape thrice."""
_CACHED_SETS = 64
_REF = r'(?:[A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")+")'
_IDENT = re.compile(r'(?<![\w."])([A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")+")(?![\w."(])')


@dataclass(frozen=True, slots=True)
class Example:
    """A template question and its query, written as the zero-shot prompt asks (columns qualified)."""

    question: str
    sql: str
    template: str
    tables: tuple[str, ...]
    values: tuple[str, ...] = ()
    """The literal values of the query, as written in it."""


def qualify(sql: str, table: TableInfo) -> str:
    """``sql`` over one table with every bare column written ``table.column`` (literals untouched).

    >>> t = TableInfo("geo", "city", (("city_name", "VARCHAR"), ("population", "BIGINT")))
    >>> qualify("SELECT population FROM geo.city WHERE city_name = 'population'", t)
    "SELECT city.population FROM geo.city WHERE city.city_name = 'population'"
    """
    columns = {quote_identifier(c) for c, _ in table.columns}
    prefix = quote_identifier(table.name)

    def one(m: re.Match[str]) -> str:
        return f"{prefix}.{m.group(1)}" if m.group(1) in columns else m.group(0)

    return outside_literals(sql, lambda code: _IDENT.sub(one, code))


class ExampleBank:
    """Template examples per set of shown tables, chosen for a question by similarity (module docstring)."""

    def __init__(self, db: ReadOnlyDatabase, embedder: SentenceEmbedder, *, per_set: int = PER_TABLE_SET) -> None:
        self.db = db
        self.embedder = embedder
        self.per_set = per_set
        self._sets: OrderedDict[tuple[str, ...], tuple[list[Example], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def examples(self, tables: Sequence[TableInfo]) -> tuple[list[Example], np.ndarray]:
        """Every example made over ``tables`` (of one source: the first table's), with question vectors."""
        key = tuple(sorted(t.qualified for t in tables))
        with self._lock:
            found = self._sets.get(key)
            if found is not None:
                self._sets.move_to_end(key)
                return found
        made = self._make(tables)
        with self._lock:
            self._sets[key] = made
            while len(self._sets) > _CACHED_SETS:
                self._sets.popitem(last=False)
        return made

    def _make(self, tables: Sequence[TableInfo]) -> tuple[list[Example], np.ndarray]:
        if not tables:
            return [], np.zeros((0, 1), np.float32)
        source = tables[0].schema
        own = [t for t in tables if t.schema == source]
        by_name = {t.qualified: t for t in own}
        out: list[Example] = []
        for made in template_queries(self.db, source, seed=0, tables=own, max_tries=20 * self.per_set):
            if "TRY_CAST" in made.sql:
                continue  # numbers stored as text: the candidates read them as numbers, the grammar cannot
            sql = made.sql if len(made.tables) > 1 else qualify(made.sql, by_name[made.tables[0]])
            out.append(Example(made.question, sql, made.template, made.tables, made.values))
            if len(out) >= self.per_set:
                break
        vectors = self.embedder.embed([e.question for e in out]) if out else np.zeros((0, 1), np.float32)
        return out, vectors

    def pick(
        self, question: str, tables: Sequence[TableInfo], k: int = 3, matches: Sequence[ValueMatch] = ()
    ) -> list[Example]:
        """The ``k`` examples most like ``question`` over ``tables``, least similar first (the closest
        sits next to the question), at most :data:`MAX_PER_TEMPLATE` of one template.

        ``matches`` (the question's values, :meth:`ValueIndex.match`) also give each example over
        a column holding one of them a twin on that value, kept when it returns rows: a model
        copies the values it is shown, so they had better be the question's own ('texas', not
        the 'montgomery' a template drew).
        """
        if k <= 0:
            return []
        examples, vectors = self.examples(tables)
        if not examples:
            return []
        twins = self._twins(examples, tables, matches)
        if twins:
            examples = [*examples, *twins]
            vectors = np.vstack([vectors, self.embedder.embed([e.question for e in twins])])
        sims = vectors @ self.embedder.embed_query(question)
        chosen: list[Example] = []
        per_template: dict[str, int] = {}
        for i in sorted(range(len(examples)), key=lambda i: (-float(sims[i]), i)):
            ex = examples[i]
            if per_template.get(ex.template, 0) >= MAX_PER_TEMPLATE:
                continue
            per_template[ex.template] = per_template.get(ex.template, 0) + 1
            chosen.append(ex)
            if len(chosen) == k:
                break
        return chosen[::-1]

    def _twins(
        self, examples: Sequence[Example], tables: Sequence[TableInfo], matches: Sequence[ValueMatch]
    ) -> list[Example]:
        """Examples comparing a column with one value, remade with the question's value of that column."""
        names = {t.qualified: quote_identifier(t.name) for t in tables}
        wanted = {(names[t], quote_identifier(c)): v for m in matches for t, c, v in m.where if t in names}
        if not wanted:
            return []
        out: list[Example] = []
        seen = {e.sql for e in examples}
        with shared_parser():
            for ex in examples:
                if len(ex.values) != 1 or ex.values[0] not in ex.question:
                    continue
                old = ex.values[0]
                found = re.search(rf"(?P<t>{_REF})\.(?P<c>{_REF}) = {re.escape(_quote(old))}", ex.sql)
                value = wanted.get((found.group("t"), found.group("c"))) if found else None
                if found is None or value is None or value == old:
                    continue
                sql = ex.sql[: found.end() - len(_quote(old))] + _quote(value) + ex.sql[found.end() :]
                if sql in seen or not self._returns_rows(sql, tables):
                    continue
                seen.add(sql)
                out.append(Example(ex.question.replace(old, value), sql, ex.template, ex.tables, (value,)))
        return out

    def _returns_rows(self, sql: str, tables: Sequence[TableInfo]) -> bool:
        try:
            result = self.db.execute(check_sql(sql, tables).sql, timeout_s=5.0, row_limit=30)
        except (SqlRefused, duckdb.Error, TimeoutError):
            return False
        return substance(result) == 2 and not result.truncated


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
