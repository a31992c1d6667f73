"""Schema linking: which mirrored tables (and columns) a question is about.

Each mirrored table is described by its name and its columns; its text cells are in the
version's :class:`~grounded.sql.values.ValueIndex`. A question links to a table by words it
shares with table and column names, by spans that are its cell values (``san francisco``,
``texas``: value linking) and by embedding similarity (all-MiniLM-L6-v2) between the question
and the description. The router uses the best score to decide whether SQL can
answer at all; text-to-SQL shows the model only the best tables.

Example::

    linker = SchemaLinker.for_version(db, embedder)
    linker.link("how many rivers run through texas?", tables=caller_database(view).tables())[:2]
    # [Link(table=geo.river, ...), ...]: only tables the caller may read are linked
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grounded.experts.embedding import SentenceEmbedder
from grounded.sql.database import ReadOnlyDatabase, TableInfo, quote_identifier
from grounded.sql.examples import ExampleBank
from grounded.sql.values import ValueIndex
from grounded.text import STOPWORDS

__all__ = ["Link", "SchemaLinker", "cover"]

EXAMPLES_PER_COLUMN = 3
ROW_NAMED = 0.15
"""Added to a table's link score when a value of the question is in its first text column."""
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    out = set()
    for w in _WORD.findall(text.lower().replace("_", " ")):
        if w not in STOPWORDS and len(w) > 1:
            out.add(_singular(w))
    return out


def _singular(word: str) -> str:
    """``cities`` -> ``city``, ``states`` -> ``state`` (``citie`` would name no column ``city_name``)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


@dataclass(frozen=True, slots=True)
class Link:
    """How strongly a question points at one table, and which of its columns/values it names."""

    table: TableInfo
    score: float
    similarity: float
    names: tuple[str, ...]
    values: tuple[str, ...]


@dataclass(slots=True)
class _TableProfile:
    table: TableInfo
    name_words: dict[str, str]
    samples: tuple[tuple[Any, ...], ...]
    examples: dict[str, tuple[Any, ...]]
    """A few distinct non-null values per column, shown in prompts."""


class SchemaLinker:
    """Links questions to the mirrored tables of one version (profiles built once per version)."""

    _cache: dict[str, SchemaLinker] = {}  # noqa: RUF012 (a per-process memo)
    _lock = threading.Lock()

    def __init__(self, db: ReadOnlyDatabase, embedder: SentenceEmbedder) -> None:
        self.db = db
        self.embedder = embedder
        self.profiles = [self._profile(t) for t in db.tables()]
        self.values = ValueIndex.build(db)
        """The version's text values (value linking), built once with the profiles."""
        self._examples: ExampleBank | None = None
        texts = [self.describe(p.table, samples=False) for p in self.profiles]
        self.vectors = embedder.embed(texts) if texts else np.zeros((0, 1), np.float32)

    @classmethod
    def for_version(cls, db: ReadOnlyDatabase, embedder: SentenceEmbedder) -> SchemaLinker:
        with cls._lock:
            key = f"{db.path}|{db.owner}|{sorted(db.readable) if db.readable is not None else '*'}"
            found = cls._cache.get(key)
            if found is None or found.embedder is not embedder:
                found = cls(db, embedder)
                cls._cache.clear()
                cls._cache[key] = found
            return found

    @property
    def examples(self) -> ExampleBank:
        """Worked examples over the version's tables for zero-shot prompts (made when first asked for)."""
        with self._lock:
            if self._examples is None:
                self._examples = ExampleBank(self.db, self.embedder)
            return self._examples

    def _profile(self, table: TableInfo) -> _TableProfile:
        names: dict[str, str] = {}
        for w in _words(table.name):
            names[w] = table.name
        for column, _ in table.columns:
            for w in _words(column):
                names.setdefault(w, column)
        examples: dict[str, tuple[Any, ...]] = {}
        cur = self.db.cursor()
        try:
            for column, _ in table.columns:
                col = '"' + column.replace('"', '""') + '"'
                rows = cur.execute(
                    # The first values in row order: deterministic, and what a person would see first.
                    f"SELECT {col} FROM {_qualified(table)} WHERE {col} IS NOT NULL GROUP BY {col} "
                    f"ORDER BY min(rowid) LIMIT {EXAMPLES_PER_COLUMN}"
                ).fetchall()
                examples[column] = tuple(r[0] for r in rows)
            samples = tuple(tuple(r) for r in cur.execute(f"SELECT * FROM {_qualified(table)} LIMIT 3").fetchall())
        finally:
            cur.close()
        return _TableProfile(table, names, samples, examples)

    def describe(self, table: TableInfo, *, samples: bool = True) -> str:
        """``CREATE TABLE`` text for a prompt (with sample rows), or a short description to embed."""
        if not samples:
            return f"{table.name.replace('_', ' ')}: {', '.join(c.replace('_', ' ') for c, _ in table.columns)}"
        cols = ",\n".join(f"  {quote_identifier(c)} {t}" for c, t in table.columns)
        text = f"CREATE TABLE {table.sql_name} (\n{cols}\n);"
        profile = next((p for p in self.profiles if p.table == table), None)
        if profile and profile.samples:
            # Values as SQL writes them: 24.50, not Python's Decimal('24.50').
            rows = "\n".join("  " + ", ".join(_example(v) for v in r) for r in profile.samples)
            text += f"\n-- sample rows:\n{rows}"
        return text

    def describe_columns(self, table: TableInfo) -> str:
        """``CREATE TABLE`` text with a few example values of each column as comments (zero-shot prompts).

        Names are written as the query must write them (:func:`~grounded.sql.database.quote_identifier`):
        a model copies ``Order Lines`` or ``select`` from the prompt as it reads it.
        """
        profile = next((p for p in self.profiles if p.table == table), None)
        lines = []
        for i, (column, type_) in enumerate(table.columns):
            comma = "," if i < len(table.columns) - 1 else ""
            shown = [_example(v) for v in (profile.examples.get(column, ()) if profile else ())]
            note = f" -- e.g. {', '.join(shown)}" if shown else ""
            lines.append(f"  {quote_identifier(column)} {type_}{comma}{note}")
        return f"CREATE TABLE {table.sql_name} (\n" + "\n".join(lines) + "\n);"

    def link(self, question: str, *, tables: Collection[TableInfo] | None = None) -> list[Link]:
        """Every table with a positive score, best first (ties by name).

        ``tables`` (a caller's, :meth:`ReadOnlyDatabase.tables`) limits the links to those tables;
        ``None`` links every table of the version (tools for the knowledge base's owner).
        """
        if not self.profiles:
            return []
        allowed = None if tables is None else {t.qualified for t in tables}
        words = _words(question)
        found: dict[str, set[str]] = {}
        found_first: dict[str, set[str]] = {}
        first = {p.table.qualified: _first_text(p.table) for p in self.profiles}
        for match in self.values.match(question):
            for table, column, _ in match.where:
                found.setdefault(table, set()).add(match.span)
                if column == first.get(table):
                    found_first.setdefault(table, set()).add(match.span)
        qvec = self.embedder.embed_query(question)
        sims = self.vectors @ qvec
        links: list[Link] = []
        for profile, sim in zip(self.profiles, sims, strict=True):
            if allowed is not None and profile.table.qualified not in allowed:
                continue
            names = tuple(sorted({profile.name_words[w] for w in words if w in profile.name_words}))
            values = tuple(sorted(found.get(profile.table.qualified, ())))[:10]
            # A value in the table's first text column (its name, as tables put first: city_name,
            # state_name) names one of its rows; elsewhere (state.capital) it may only mention it.
            rows = bool(found_first.get(profile.table.qualified))
            score = float(sim) + 0.25 * len(names) + 0.35 * min(len(values), 2) + ROW_NAMED * rows
            links.append(Link(profile.table, round(score, 4), round(float(sim), 4), names, values))
        return sorted(links, key=lambda l: (-l.score, l.table.qualified))  # noqa: E741


def cover(question: str, links: Sequence[Link], max_tables: int) -> list[Link]:
    """The best link, then each next one that covers a word or value of the question the tables
    before it do not, up to ``max_tables``: the fewest tables that hold what the question names.

    A small model joins every table it is shown; "what is the area of texas" needs ``state``
    alone, even though ``city`` and ``border_info`` also hold ``'texas'``.
    """
    if not links:
        return []
    words = _words(question)
    chosen: list[Link] = []
    covered: set[str] = set()
    for link in links:
        if len(chosen) >= max_tables:
            break
        named = {w for name in link.names for w in _words(name) if w in words} | {f"'{v}'" for v in link.values}
        if not chosen or named - covered:
            chosen.append(link)
            covered |= named
    return chosen


def _first_text(table: TableInfo) -> str | None:
    return next((c for c, t in table.columns if t.upper().startswith("VARCHAR")), None)


def _example(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:40] + "…"
        return "'" + text.replace("'", "''") + "'"
    return str(value)


def _qualified(table: TableInfo) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in (table.schema, table.name))
