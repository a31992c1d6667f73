"""Value linking: the words of a question found among the mirrored tables' cell values.

A question says ``san francisco`` or ``Texas``; the data may spell it ``'san francisco'`` or
``'TX'``-free ``'texas'`` and keep it in ``city.city_name``, ``state.state_name`` and
``river.traverse`` at once. :class:`ValueIndex` holds, per version, the distinct short text
values of every text column (normalised: lower case, punctuation and accents dropped), so that

* :meth:`ValueIndex.match` finds the spans of a question that are cell values (longest first),
  with every column that holds them and the data's own spelling, which the SQL prompt shows
  (``city.city_name = 'san francisco'``) and schema linking scores;
* :meth:`ValueIndex.spelling` turns a literal a model wrote (``'San Francisco'``) into the
  spelling the column uses, so ``WHERE`` filters match rows;
* :attr:`ValueIndex.numeric_text` lists the text columns that hold numbers (``'1,234'``,
  ``'12 km'``), whose comparisons and aggregates :mod:`grounded.sql.candidates` makes numeric.

Example::

    index = ValueIndex.build(db)                       # once per version, a few ms per column
    [m.where for m in index.match("how many people live in San Francisco?")]
    # [(('geo.city', 'city_name', 'san francisco'),)]
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from grounded.sql.database import ReadOnlyDatabase, TableInfo, quote_ident
from grounded.text import STOPWORDS

__all__ = ["MAX_VALUES_PER_COLUMN", "ValueIndex", "ValueMatch", "normalise_value"]

MAX_VALUES_PER_COLUMN = 5_000
"""Distinct values read per text column; a column with more (free text, ids) is indexed partly."""
MAX_VALUE_CHARS = 60
MAX_SPAN_WORDS = 5
_TOKEN = re.compile(r"[a-z0-9]+(?:['.][a-z0-9]+)*")
_NUMBER_TEXT = re.compile(r"^\s*[$€£]?\s*-?[0-9][0-9,]*(\.[0-9]+)?\s*(%|[a-z]{1,6}\.?)?\s*$", re.I)


_NOTE = re.compile(r"^(.*?\S)\s*[(\[][^()\[\]]*[)\]]$")


def normalise_value(text: str) -> str:
    """Lower case, accents and punctuation dropped, spaces collapsed: how values are compared."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return " ".join(_TOKEN.findall(plain.replace("_", " ")))


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


@dataclass(frozen=True, slots=True)
class ValueMatch:
    """A span of the question that is a cell value: the words, and every (table, column, spelling) holding it."""

    span: str
    where: tuple[tuple[str, str, str], ...]
    """``(schema.table, column, value as stored)``, sorted."""

    def in_tables(self, tables: Collection[str]) -> tuple[tuple[str, str, str], ...]:
        return tuple(w for w in self.where if w[0] in tables)


@dataclass(slots=True)
class ValueIndex:
    """Distinct text values of every text column of a version, by normalised form (see the module docstring)."""

    values: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    numeric_text: frozenset[tuple[str, str]] = frozenset()
    """``(schema.table, column)`` of text columns whose values are numbers, possibly with a unit."""
    max_words: int = 1
    _shared: dict[tuple[tuple[str, str], tuple[str, str]], int] | None = field(default=None, repr=False)

    def shared(self, a: tuple[str, str], b: tuple[str, str]) -> int:
        """How many distinct values the text columns ``a`` and ``b`` (``(schema.table, column)``) both hold."""
        if self._shared is None:
            counts: dict[tuple[tuple[str, str], tuple[str, str]], int] = {}
            for where in self.values.values():
                columns = sorted({(t, c) for t, c, _ in where})
                for i, x in enumerate(columns):
                    for y in columns[i + 1 :]:
                        counts[(x, y)] = counts.get((x, y), 0) + 1
            self._shared = counts
        x, y = sorted((a, b))
        return self._shared.get((x, y), 0)

    @classmethod
    def build(cls, db: ReadOnlyDatabase, tables: Iterable[TableInfo] | None = None) -> ValueIndex:
        index = cls()
        numeric: set[tuple[str, str]] = set()
        cur = db.cursor()
        try:
            for table in tables if tables is not None else db.tables():
                for column, type_ in table.columns:
                    if not type_.upper().startswith("VARCHAR"):
                        continue
                    col = quote_ident(column)
                    rows = cur.execute(
                        # The most frequent values first, so a capped column keeps its common ones (deterministic).
                        f"SELECT {col} FROM {table.quoted} WHERE {col} IS NOT NULL "
                        f"AND length({col}) BETWEEN 1 AND {MAX_VALUE_CHARS} GROUP BY {col} "
                        f"ORDER BY count(*) DESC, {col} LIMIT {MAX_VALUES_PER_COLUMN}"
                    ).fetchall()
                    texts = [str(r[0]) for r in rows]
                    numbers = sum(bool(_NUMBER_TEXT.match(t)) for t in texts)
                    if texts and numbers >= 0.8 * len(texts):
                        numeric.add((table.qualified, column))
                        continue  # numbers are compared, not linked by spelling
                    for text in texts:
                        index.add(text, (table.qualified, column, text))
        finally:
            cur.close()
        index.numeric_text = frozenset(numeric)
        return index

    def add(self, text: str, where: tuple[str, str, str]) -> None:
        """Index a stored value; one ending in a bracketed note (``'Ukraine (UKR)'``, ``'Smith [1]'``)
        is also found by the words before it ("ukraine"), and respelt to the whole value."""
        self._add(text, where)
        head = _NOTE.match(text)
        if head is not None:
            self._add(head.group(1), where)

    def _add(self, text: str, where: tuple[str, str, str]) -> None:
        key = normalise_value(text)
        if not key or key in STOPWORDS or key.isdigit() or len(key) < 2:
            return
        self.values.setdefault(key, []).append(where)
        self.max_words = min(MAX_SPAN_WORDS, max(self.max_words, key.count(" ") + 1))

    def lookup(self, text: str) -> list[tuple[str, str, str]]:
        """Where the value ``text`` is stored (any spelling that normalises the same; plural or singular)."""
        key = normalise_value(text)
        found = self.values.get(key)
        if found is None and key:
            words = key.split(" ")
            found = self.values.get(" ".join([*words[:-1], _singular(words[-1])]))
        return sorted(set(found or ()))

    def match(self, question: str, *, tables: Collection[str] | None = None) -> list[ValueMatch]:
        """Spans of ``question`` that are cell values, longest first, not overlapping, in question order.

        ``tables`` (qualified names) keeps only values of those tables (a caller's tables).
        """
        words = normalise_value(question).split()
        taken = [False] * len(words)
        found: list[tuple[int, ValueMatch]] = []
        for size in range(min(self.max_words, len(words)), 0, -1):
            for start in range(len(words) - size + 1):
                if any(taken[start : start + size]):
                    continue
                span = " ".join(words[start : start + size])
                if size == 1 and (span in STOPWORDS or span.isdigit() or len(span) < 2):
                    continue
                where = self.lookup(span)
                if tables is not None:
                    where = [w for w in where if w[0] in tables]
                if where:
                    found.append((start, ValueMatch(span, tuple(where))))
                    taken[start : start + size] = [True] * size
        found.extend(self._named_by_table(found, tables))
        return [m for _, m in sorted(found, key=lambda f: f[0])]

    def _named_by_table(
        self, found: list[tuple[int, ValueMatch]], tables: Collection[str] | None
    ) -> list[tuple[int, ValueMatch]]:
        """The value inside a longer span that names its table: "the colorado river" is the row
        ``'colorado'`` of ``river`` (though ``'colorado river'`` is a value elsewhere), "lake
        michigan" the row ``'michigan'`` of ``lake``."""
        out: list[tuple[int, ValueMatch]] = []
        for start, match in found:
            words = match.span.split(" ")
            if len(words) < 2:
                continue
            for rest, named, at in ((words[1:], words[0], start + 1), (words[:-1], words[-1], start)):
                table_word = _singular(named)
                where = [
                    w
                    for w in self.lookup(" ".join(rest))
                    if _singular(w[0].rsplit(".", 1)[-1].lower()) == table_word and (tables is None or w[0] in tables)
                ]
                if where:
                    out.append((at, ValueMatch(" ".join(rest), tuple(where))))
        return out

    def spelling(self, literal: str, column: tuple[str, str] | None = None) -> str | None:
        """The data's spelling of ``literal`` (in ``column`` = (table, column) when given), if it differs.

        ``None`` when the literal is stored as written, or is no value at all.
        """
        where = self.lookup(literal)
        if column is not None:
            where = [w for w in where if (w[0], w[1]) == column]
        stored = {w[2] for w in where}
        if not stored or literal in stored:
            return None
        return sorted(stored)[0] if len(stored) == 1 else None
