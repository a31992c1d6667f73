"""Candidate queries for one question, and the choice among them by what they return.

A model's draft is rarely wrong everywhere; it is often wrong in a way the data can show. So each
draft becomes a few deterministic candidates, all run (read-only, row limit, timeout) on the
caller's connection, and the one whose result is most credible is kept:

* **the data's spelling**: a literal the column does not hold as written (``'San Francisco'``,
  ``'texas '``) is replaced by the column's own spelling (``'san francisco'``), found through
  :class:`~grounded.sql.values.ValueIndex`;
* **the column that holds the value**: ``river.country_name = 'texas'`` where only
  ``river.traverse`` holds ``'texas'`` gives a second candidate on ``river.traverse``;
* **typed comparisons**: a text column of numbers (``'1,234'``, ``'12 km'``) compared with a
  number, summed, ranked or ordered is read as the number it starts with;
* **the amount, not a count of it**: ``SELECT COUNT(city.population) ... WHERE city.city_name =
  'detroit'`` ("how many people live in detroit") counts the rows that hold a population; the
  variant selects the population itself (:func:`measure_for_count`, run by the writer when the
  count is 1: "how many" answered by counting one row asked for the amount).

:func:`choose` ranks executed candidates by validity (it ran), substance (it returned rows that
are not all ``NULL``/``0``, nor only the one value the query itself names: :func:`echoes`), agreement (how many candidates returned the same rows) and order
(earlier drafts first): execution-guided selection, deterministic for the same drafts and data.

Example::

    rewrites(\"SELECT * FROM geo.river WHERE river.country_name = 'Texas'\", tables, index)
    # [Rewrite(sql="... river.country_name = 'texas'", why="the data's spelling"),
    #  Rewrite(sql="... river.traverse = 'texas'", why="river.traverse holds 'texas'")]
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from grounded.sql.database import QueryResult, TableInfo, quote_identifier
from grounded.sql.values import ValueIndex, normalise_value

__all__ = [
    "Candidate",
    "Rewrite",
    "choose",
    "counts_a_keyed_row",
    "credit",
    "echoes",
    "measure_for_count",
    "numeric",
    "outside_literals",
    "rewrites",
    "substance",
    "swapped",
    "unechoed",
]

_LITERAL = re.compile(r"'(?:[^']|'')*'")


def outside_literals(sql: str, rewrite: Callable[[str], str]) -> str:
    """``sql`` with ``rewrite`` applied to the code between its string literals (the literals kept as written)."""
    parts: list[str] = []
    last = 0
    for m in _LITERAL.finditer(sql):
        parts.append(rewrite(sql[last : m.start()]))
        parts.append(m.group(0))
        last = m.end()
    parts.append(rewrite(sql[last:]))
    return "".join(parts)


_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")+")'
_COLREF = rf"(?:(?P<q>{_IDENT})\.)?(?P<c>{_IDENT})"
_BEFORE_LITERAL = re.compile(rf"{_COLREF}\s*(?P<op>=|<>|!=|(?:NOT\s+)?(?:I?LIKE))\s*$", re.I)
_BEFORE_IN = re.compile(rf"{_COLREF}\s+(?:NOT\s+)?IN\s*\((?:\s*'(?:[^']|'')*'\s*,)*\s*$", re.I)
_SOURCE = re.compile(rf"(?:FROM|JOIN|,)\s+(?P<t>{_IDENT}(?:\.{_IDENT})?)(?:\s+(?:AS\s+)?(?P<a>{_IDENT}))?", re.I)
_NOT_ALIAS = frozenset({"on", "where", "join", "inner", "left", "right", "group", "order", "limit", "union", "as"})


def numeric(expr: str) -> str:
    """SQL reading the first number of a text value (commas dropped): ``'1,234 km'`` -> 1234.0."""
    return f"TRY_CAST(regexp_extract(replace({expr}, ',', ''), '-?[0-9]+(\\.[0-9]+)?') AS DOUBLE)"


@dataclass(frozen=True, slots=True)
class Rewrite:
    """A deterministic variant of a draft, and why it was made."""

    sql: str
    why: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """A query that was run (``result``) or failed (``error``), with where it came from."""

    sql: str
    origin: str
    result: QueryResult | None = None
    error: str | None = None

    @property
    def signature(self) -> tuple[tuple[object, ...], ...] | None:
        """The result's rows as a sorted, order-free signature (what agreement compares)."""
        if self.result is None:
            return None
        return tuple(sorted(tuple(map(str, r)) for r in self.result.rows))

    @property
    def answer(self) -> frozenset[tuple[str, ...]] | None:
        """The distinct rows: what candidates agree on (the same rows, repeated or not, are one answer)."""
        if self.result is None:
            return None
        return frozenset(tuple(map(str, r)) for r in self.result.rows)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _aliases(sql: str, tables: Sequence[TableInfo]) -> dict[str, TableInfo]:
    """``{name or alias (lower case): table}`` for the tables a query reads."""
    known = {t.qualified.lower(): t for t in tables} | {t.name.lower(): t for t in tables}
    out: dict[str, TableInfo] = {t.name.lower(): t for t in tables}
    for m in _SOURCE.finditer(_LITERAL.sub("''", sql)):
        name = ".".join(_unquote(p) for p in re.findall(_IDENT, m.group("t"))).lower()
        table = known.get(name)
        alias = m.group("a")
        if table is not None and alias and _unquote(alias).lower() not in _NOT_ALIAS:
            out[_unquote(alias).lower()] = table
    return out


def _resolve(qualifier: str | None, column: str, aliases: dict[str, TableInfo]) -> list[TableInfo]:
    """The tables a column reference may mean (one when qualified by a known name or alias)."""
    column = _unquote(column)
    if qualifier is not None and _unquote(qualifier).lower() in aliases:
        table = aliases[_unquote(qualifier).lower()]
        return [table] if any(c == column for c, _ in table.columns) else []
    seen = {t.qualified: t for t in aliases.values()}
    return [t for t in seen.values() if any(c == column for c, _ in t.columns)]


def _read(sql: str, aliases: dict[str, TableInfo]) -> list[TableInfo]:
    """The tables the query's ``FROM`` and ``JOIN`` clauses name, in order."""
    known = {t.qualified.lower(): t for t in aliases.values()} | {t.name.lower(): t for t in aliases.values()}
    out: dict[str, TableInfo] = {}
    for m in _SOURCE.finditer(_LITERAL.sub("''", sql)):
        table = known.get(".".join(_unquote(p) for p in re.findall(_IDENT, m.group("t"))).lower())
        if table is not None:
            out.setdefault(table.qualified, table)
    return list(out.values())


def _compared(sql: str, qualifier: str | None, column: str, aliases: dict[str, TableInfo]) -> list[TableInfo]:
    """The tables a column compared with a literal belongs to, for moving the comparison.

    As :func:`_resolve`, but a bare name means the tables the query reads that have it (not every
    table the prompt showed); and a column that the table it names, or every table the query
    reads, lacks (``river.state_name``, or ``state_name`` in a query on ``geo.river`` alone) means
    those tables: the query fails to bind, and the column of theirs that holds the literal
    (``river.traverse`` holds 'texas') is what it meant.
    """
    found = _resolve(qualifier, column, aliases)
    if qualifier is not None:
        return found or _named(qualifier, aliases)
    read = _read(sql, aliases)
    mine = [t for t in found if any(t.qualified == r.qualified for r in read)]
    if mine:
        return mine
    name = _unquote(column)
    if read and not any(c == name for t in read for c, _ in t.columns):
        return read
    return found


def _named(qualifier: str | None, aliases: dict[str, TableInfo]) -> list[TableInfo]:
    """The table a qualifier names, whatever the column after it."""
    table = aliases.get(_unquote(qualifier).lower()) if qualifier is not None else None
    return [table] if table is not None else []


def _joined_pair(
    before: str, aliases: dict[str, TableInfo]
) -> tuple[tuple[str, TableInfo], tuple[str, TableInfo]] | None:
    """The last two tables declared in ``before`` (the text up to an ``ON``), as the query names them:
    the two that ``ON`` joins. ``None`` unless they are two different known tables."""
    found: list[tuple[str, TableInfo]] = []
    for m in _SOURCE.finditer(_LITERAL.sub("''", before)):
        alias = m.group("a")
        spelt = alias if alias and _unquote(alias).lower() not in _NOT_ALIAS else m.group("t").split(".")[-1]
        table = aliases.get(_unquote(spelt).lower())
        if table is not None:
            found.append((spelt, table))
    if len(found) < 2 or found[-1][1] == found[-2][1]:
        return None
    return found[-2], found[-1]


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def rewrites(sql: str, tables: Sequence[TableInfo], index: ValueIndex | None) -> list[Rewrite]:
    """The variants of ``sql`` worth running beside it (see the module docstring), best guess first.

    The first is ``sql`` with literals in the data's spelling and numbers-as-text compared as
    numbers, when that changes anything; then one variant per literal another column holds.
    """
    if index is None:
        return []
    aliases = _aliases(sql, tables)
    fixed, respelt = _respell(sql, aliases, index)
    typed = _typed(fixed, aliases, index)
    out: list[Rewrite] = []
    if typed != sql:
        why = [w for w, done in (("the data's spelling", respelt), ("numbers stored as text compared as numbers",
                                                                      typed != fixed)) if done]  # fmt: skip
        out.append(Rewrite(typed, "; ".join(why)))
    out.extend(_moved(typed, aliases, index))
    requalified = _requalified(typed, aliases)
    if requalified != typed:
        out.append(Rewrite(requalified, "each column read from the table that has it"))
    return out


def _requalified(sql: str, aliases: dict[str, TableInfo]) -> str:
    """``T2.city_name`` -> ``T1.city_name`` when ``T2``'s table has no ``city_name`` and exactly one
    other table of the query has: which alias holds which column is what a grammar cannot check,
    and what a small model gets wrong (and repeats when told)."""
    # The names the query's FROM clause gives its tables, as it spells them (an alias, else the table).
    declared: dict[str, TableInfo] = {}
    for m in _SOURCE.finditer(_LITERAL.sub("''", sql)):
        name = ".".join(_unquote(p) for p in re.findall(_IDENT, m.group("t"))).lower()
        alias = m.group("a")
        spelt = alias if alias and _unquote(alias).lower() not in _NOT_ALIAS else m.group("t").split(".")[-1]
        table = aliases.get(_unquote(spelt).lower())
        if table is not None and table.qualified.lower().endswith(name.split(".")[-1]):
            declared[spelt] = table

    def fix(m: re.Match[str]) -> str:
        qualifier, column = _unquote(m.group("q")).lower(), _unquote(m.group("c"))
        table = aliases.get(qualifier)
        if table is None or any(c == column for c, _ in table.columns):
            return m.group(0)
        holders = {a for a, t in declared.items() if any(c == column for c, _ in t.columns)}
        if len(holders) != 1:
            return m.group(0)
        return f"{next(iter(holders))}.{m.group('c')}"

    pattern = re.compile(rf"(?<![\w.\"])(?P<q>{_IDENT})\.(?P<c>{_IDENT})(?![\w.\"(])")
    out = outside_literals(sql, lambda code: pattern.sub(fix, code))
    # ``T1.state_name = T2.state_name`` with T1 lacking the column would become T2's column equal to
    # itself: true on every row, a cross join. The join is re-keyed on the data instead (rekeyed).
    same = re.compile(rf"(?<![\w.\"])(?P<x>{_IDENT}\.{_IDENT})\s*=\s*(?P=x)(?![\w.\"(])")
    if len(same.findall(_LITERAL.sub("''", out))) > len(same.findall(_LITERAL.sub("''", sql))):
        return sql
    return out


def _column_before(prefix: str) -> tuple[str | None, str, str] | None:
    m = _BEFORE_LITERAL.search(prefix) or _BEFORE_IN.search(prefix)
    if m is None:
        return None
    op = m.groupdict().get("op") or "IN"
    return m.group("q"), m.group("c"), op


def _respell(sql: str, aliases: dict[str, TableInfo], index: ValueIndex) -> tuple[str, bool]:
    parts: list[str] = []
    last = 0
    changed = False
    for m in _LITERAL.finditer(sql):
        parts.append(sql[last : m.start()])
        last = m.end()
        literal = m.group(0)[1:-1].replace("''", "'")
        target = _column_before(sql[: m.start()])
        new = None
        if target is not None and "LIKE" not in target[2].upper():
            for table in _resolve(target[0], target[1], aliases):
                column = (table.qualified, _unquote(target[1]))
                new = index.spelling(literal, column) or _without_table_word(literal, table, column, index)
                if new is not None:
                    break
        parts.append(_literal(new) if new is not None else m.group(0))
        changed |= new is not None
    parts.append(sql[last:])
    return "".join(parts), changed


def _without_table_word(literal: str, table: TableInfo, column: tuple[str, str], index: ValueIndex) -> str | None:
    """``'colorado'`` for ``river.river_name = 'colorado river'``: the literal without the word naming
    its table, when the column stores that and not the literal."""
    if any((w[0], w[1]) == column for w in index.lookup(literal)):
        return None
    words = normalise_value(literal).split(" ")
    name = normalise_value(table.name).rstrip("s")
    if len(words) < 2:
        return None
    for rest, named in ((words[1:], words[0]), (words[:-1], words[-1])):
        if named.rstrip("s") == name:
            stored = sorted({w[2] for w in index.lookup(" ".join(rest)) if (w[0], w[1]) == column})
            if len(stored) == 1:
                return stored[0]
    return None


def _moved(sql: str, aliases: dict[str, TableInfo], index: ValueIndex, *, held: bool = False) -> list[Rewrite]:
    """Variants comparing a literal with the one column of the same table that holds it; with
    ``held``, with each *other* column of the same table that holds it, although the column the query
    compares holds it too (see :func:`swapped`)."""
    out: list[Rewrite] = []
    for m in _LITERAL.finditer(sql):
        target = _column_before(sql[: m.start()])
        if target is None or "LIKE" in target[2].upper():
            continue
        qualifier, column, _ = target
        literal = m.group(0)[1:-1].replace("''", "'")
        where = index.lookup(literal)
        for table in _compared(sql, qualifier, column, aliases):
            holds = any(w[0] == table.qualified and w[1] == _unquote(column) for w in where)
            if holds != held:
                continue  # without ``held``, a column that holds it has nothing to move; with it, only such
            holders = sorted({w[1] for w in where if w[0] == table.qualified and w[1] != _unquote(column)})
            if not holders or (len(holders) > 1 and not held):
                continue
            ref = re.compile(
                rf"(?:(?P<q>{_IDENT})\.)?{re.escape(column)}(?P<rest>\s*(?:=|<>|!=|(?:NOT\s+)?IN)\s*\(?\s*)$"
            )
            head = sql[: m.start()]
            found = ref.search(head)
            if found is None:
                continue
            qual = f"{found.group('q')}." if found.group("q") else ""
            for holder in holders:
                new_head = head[: found.start()] + qual + _ident(holder) + found.group("rest")
                value = index.spelling(literal, (table.qualified, holder)) or literal
                out.append(
                    Rewrite(new_head + _literal(value) + sql[m.end() :], f"{table.name}.{holder} holds {value!r}")
                )
    return out


def swapped(sql: str, tables: Sequence[TableInfo], index: ValueIndex | None) -> list[Rewrite]:
    """For a query that only echoes its own value (:func:`echoes`): the literal compared with each
    other column of the same table that holds it. "what is the capital of washington" written
    ``SELECT state.capital ... WHERE state.capital = 'washington'`` returns 'washington' back; the
    state named 'washington' is the other column that holds the value
    (``WHERE state.state_name = 'washington'``)."""
    if index is None:
        return []
    return _moved(sql, _aliases(sql, tables), index, held=True)


def _ident(name: str) -> str:
    return quote_identifier(name)  # a column named ``select`` is written quoted too


def _typed(sql: str, aliases: dict[str, TableInfo], index: ValueIndex) -> str:
    """``sql`` with every text-of-numbers column read as a number where it is compared, aggregated or ordered."""
    if not index.numeric_text:
        return sql

    def is_numeric_text(q: str | None, c: str) -> bool:
        tables = _resolve(q, c, aliases)
        return bool(tables) and all((t.qualified, _unquote(c)) in index.numeric_text for t in tables)

    def typed_code(code: str) -> str:
        def compare(m: re.Match[str]) -> str:
            if not is_numeric_text(m.group("q"), m.group("c")):
                return m.group(0)
            return f"{m.group('pre')}{numeric(m.group('ref'))}{m.group('op')}"

        def aggregate(m: re.Match[str]) -> str:
            if not is_numeric_text(m.group("q"), m.group("c")):
                return m.group(0)
            return f"{m.group('fn')}({m.group('d') or ''}{numeric(m.group('ref'))})"

        def order(m: re.Match[str]) -> str:
            if not is_numeric_text(m.group("q"), m.group("c")):
                return m.group(0)
            return f"{m.group('pre')}{numeric(m.group('ref'))}"

        ref = rf"(?P<ref>{_COLREF})"
        code = re.sub(rf"(?P<pre>^|[\s(,]){ref}(?P<op>\s*(?:<=|>=|<>|!=|=|<|>)\s*-?[0-9])", compare, code)
        code = re.sub(rf"(?P<fn>\b(?:SUM|AVG|MIN|MAX))\(\s*(?P<d>DISTINCT\s+)?{ref}\s*\)", aggregate, code, flags=re.I)
        return re.sub(rf"(?P<pre>\bORDER\s+BY\s+|,\s*){ref}(?=\s+(?:ASC|DESC)\b|\s*(?:LIMIT\b|$))", order, code,
                      flags=re.I)  # fmt: skip

    return outside_literals(sql, typed_code)


_NUMBER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC")
_COUNT_OF = re.compile(
    rf"^(?P<head>\s*SELECT\s+)COUNT\(\s*(?:DISTINCT\s+)?(?P<ref>{_COLREF})\s*\)(?P<tail>\s+FROM\b)", re.I
)


def measure_for_count(sql: str, tables: Sequence[TableInfo], index: ValueIndex | None = None) -> str | None:
    """``SELECT COUNT(t.m) FROM ...`` -> ``SELECT t.m FROM ...`` when ``m`` is an amount: a number
    column (or text of numbers) that is not an id or key. ``None`` when the query is not such a count."""
    m = _COUNT_OF.match(sql)
    if m is None:
        return None
    tables_read = _resolve(m.group("q"), m.group("c"), _aliases(sql, tables))
    if len(tables_read) != 1:
        return None
    table, column = tables_read[0], _unquote(m.group("c"))
    type_ = dict(table.columns).get(column, "").upper()
    low = column.lower()
    if low == "id" or low.endswith("_id") or column in table.primary_key:
        return None
    numeric_text = index is not None and (table.qualified, column) in index.numeric_text
    if not (type_.startswith(_NUMBER_TYPES) or numeric_text):
        return None
    return f"{m.group('head')}{m.group('ref')}{m.group('tail')}{sql[m.end() :]}"


_ON = re.compile(
    rf"\bON\s+(?:(?P<q1>{_IDENT})\.)?(?P<c1>{_IDENT})\s*=\s*(?:(?P<q2>{_IDENT})\.)?(?P<c2>{_IDENT})(?![\w.(])", re.I
)
MIN_SHARED = 3
"""A join key is replaced only by a pair of columns sharing at least this many values, and twice as
many as the model's pair."""


def rekeyed(sql: str, tables: Sequence[TableInfo], index: ValueIndex | None) -> str | None:
    """``sql`` with each join on two text columns that share few values (``river.river_name =
    state.state_name``: 'mississippi', 'colorado'...) made on the pair of columns of the same two
    tables that share the most (``river.traverse = state.state_name``), when that pair shares at
    least :data:`MIN_SHARED` values and twice as many. ``None`` when no join changes.

    A small model joins on the first two names that look alike; the data knows which columns hold
    the same things. Column pairs are read from the value index (text values, as value linking
    stores them), so numbers and ids are never re-keyed.
    """
    if index is None:
        return None
    aliases = _aliases(sql, tables)
    parts: list[str] = []
    last = 0
    for m in _ON.finditer(sql):
        # A column its table lacks (``river.state_name``) fails to bind: its table still says which
        # two tables the join meant, and the data which of their columns hold the same values.
        left = _resolve(m.group("q1"), m.group("c1"), aliases) or _named(m.group("q1"), aliases)
        right = _resolve(m.group("q2"), m.group("c2"), aliases) or _named(m.group("q2"), aliases)
        q1, q2 = m.group("q1"), m.group("q2")
        if q1 and q2 and _unquote(q1).lower() == _unquote(q2).lower() and m.group("c1") == m.group("c2"):
            # ``ON T2.x = T2.x`` holds on every row (a cross join): join the two tables this ON joins
            # on the columns that share values.
            pair = _joined_pair(sql[: m.start()], aliases)
            if pair is None:
                continue
            (q1, a), (q2, b) = pair
            now = 0
        elif len(left) != 1 or len(right) != 1 or left[0] == right[0] or not (q1 and q2):
            continue
        else:
            a, b = left[0], right[0]
            now = index.shared((a.qualified, _unquote(m.group("c1"))), (b.qualified, _unquote(m.group("c2"))))
        pairs = [
            (index.shared((a.qualified, x), (b.qualified, y)), x, y)
            for x, tx in a.columns
            for y, ty in b.columns
            if tx.upper().startswith("VARCHAR") and ty.upper().startswith("VARCHAR")
        ]
        best = max(pairs, key=lambda p: p[0], default=None)  # the first of equals, in column order
        if best is None or best[0] < max(MIN_SHARED, 2 * now):
            continue
        parts.append(sql[last : m.start()])
        parts.append(f"ON {q1}.{_ident(best[1])} = {q2}.{_ident(best[2])}")
        last = m.end()
    if not parts:
        return None
    parts.append(sql[last:])
    return "".join(parts)


def substance(result: QueryResult | None) -> int:
    """2: rows with a value; 1: rows of only ``NULL``/0/empty (an empty aggregate); 0: no rows or failed."""
    if result is None or not result.rows:
        return 0
    if all(v in (None, 0, "", 0.0) for row in result.rows for v in row):
        return 1
    return 2


def echoes(candidate: Candidate) -> bool:
    """Whether ``candidate`` returns only the one text value its own SQL names, as in
    ``SELECT city.city_name ... WHERE city.city_name = 'dallas'`` for "where is dallas": the
    question's own word back, no answer. (A query naming two values, ``IN ('a', 'b')`` for "which is
    larger, a or b", may rightly return one of them.)"""
    if candidate.result is None or not candidate.result.rows:
        return False
    literals = {normalise_value(x[1:-1].replace("''", "'")) for x in _LITERAL.findall(candidate.sql)}
    if len(literals) != 1:
        return False
    return all(isinstance(v, str) and normalise_value(v) in literals for row in candidate.result.rows for v in row)


def credit(candidate: Candidate) -> int:
    """:func:`substance`, with a result that only echoes the query's value counted as empty-ish (1)."""
    found = substance(candidate.result)
    return 1 if found == 2 and echoes(candidate) else found


def choose(candidates: Sequence[Candidate]) -> Candidate | None:
    """The most credible executed candidate (validity, substance, agreement, order); ``None`` if none ran."""
    ran = [c for c in candidates if c.result is not None]
    if not ran:
        return None
    # Votes go to answers, not row counts: ``SELECT DISTINCT`` placed first (each row once) agrees
    # with the queries that repeat its rows, and is not outvoted by them.
    votes = Counter(c.answer for c in ran if substance(c.result) > 0)
    ranked = sorted(enumerate(ran), key=lambda ic: (-credit(ic[1]), -votes.get(ic[1].answer, 0), ic[0]))
    return ranked[0][1]


_SELECT_LIST = re.compile(r"^(?P<head>\s*SELECT\s+(?:DISTINCT\s+)?)(?P<items>[^()]*?)(?P<tail>\s+FROM\s)", re.I | re.S)
_EQUALS_LITERAL = re.compile(rf"(?<![\w.\"]){_COLREF}\s*=\s*'(?:[^']|'')*'", re.I)


def unechoed(sql: str) -> str | None:
    """``sql`` without the selected columns that its ``WHERE`` fixes to a literal, when other columns
    remain: ``SELECT state.state_name, state.population ... WHERE state.state_name = 'texas'`` ->
    ``SELECT state.population ...``. The question's own value adds nothing to its answer (a column
    that repeats it is no more an answer than :func:`echoes` is). ``None`` when nothing is dropped."""
    m = _SELECT_LIST.match(sql)
    if m is None or re.search(r"\bOR\b", _LITERAL.sub("''", sql), re.I):
        return None  # ``x = 'a' OR x = 'b'`` ("which is larger, a or b") does not fix x
    items = [i.strip() for i in m.group("items").split(",")]
    if len(items) < 2:
        return None
    fixed: set[tuple[str | None, str]] = set()
    for eq in _EQUALS_LITERAL.finditer(sql[m.end() :]):
        fixed.add((_unquote(eq.group("q")).lower() if eq.group("q") else None, _unquote(eq.group("c")).lower()))
    kept = []
    for item in items:
        ref = re.fullmatch(_COLREF, item)
        if ref is not None:
            q, c = (_unquote(ref.group("q")).lower() if ref.group("q") else None), _unquote(ref.group("c")).lower()
            if (q, c) in fixed or (q is None and any(fc == c for _, fc in fixed)) or (None, c) in fixed:
                continue
        kept.append(item)
    if not kept or len(kept) == len(items):
        return None
    return f"{m.group('head')}{', '.join(kept)}{m.group('tail')}{sql[m.end() :]}"


_COUNT_ROWS = re.compile(r"^\s*SELECT\s+COUNT\(\s*\*\s*\)\s+FROM\s", re.I)


def counts_a_keyed_row(candidate: Candidate, tables: Sequence[TableInfo]) -> bool:
    """Whether ``candidate`` is ``SELECT COUNT(*)`` of the one row its ``WHERE`` names by the whole
    primary key (``... FROM geo.state WHERE state.state_name = 'california'`` for "how many people
    live in california"): at most one row can match, so its count (1) says nothing the question
    did not; it asked for an amount the row holds."""
    if candidate.result is None or [list(r) for r in candidate.result.rows] != [[1]]:
        return False
    if not _COUNT_ROWS.match(candidate.sql) or re.search(
        r"\b(?:JOIN|GROUP|OR)\b|,", _LITERAL.sub("''", candidate.sql), re.I
    ):
        return False  # one table, no grouping, no alternatives
    aliases = _aliases(candidate.sql, tables)
    fixed: set[tuple[str, str]] = set()
    for eq in _EQUALS_LITERAL.finditer(candidate.sql):
        for table in _resolve(eq.group("q"), eq.group("c"), aliases):
            fixed.add((table.qualified, _unquote(eq.group("c"))))
    read = {t.qualified: t for t in aliases.values()}
    return len(read) == 1 and all(
        t.primary_key and all((t.qualified, k) in fixed for k in t.primary_key) for t in read.values()
    )
