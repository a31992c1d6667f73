"""The prompt tuned SQL experts are trained with, and served with.

A tuned expert has learnt one source's conventions, so its prompt can be short: every table of
the source on one line each (``geo.city(city_name, population, ...)``) and the question. The
system message (instruction + schema) is the same for every question of a source, which lets
training and evaluation compute it once per batch. The card records the format
(:data:`~grounded.experts.tuned.SQL_PROMPT_FORMAT`), and :class:`~grounded.sql.writer.SqlWriter`
builds exactly these messages for a tuned expert:

- ``sql-compact-v1``: the schema, then the question alone;
- ``sql-compact-v2`` (current): the question's values *as the data spells them*, with the
  columns holding each (:func:`value_hints`, the zero-shot prompt's hints), before the question.
  Trained on them, a model copies the stored spelling into the right column instead of
  guessing one ("rhode island" in ``city_name``, "delaware river" for the river ``delaware``).
  Its targets are qualified (``SELECT state.population FROM geo.state``) and it is served under
  the qualified SQL grammar of its source's tables (:class:`~grounded.sql.writer.SqlWriter`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from grounded.experts.base import Message
from grounded.sql.database import TableInfo, quote_identifier
from grounded.sql.values import ValueMatch

__all__ = ["compact_schema", "source_tables", "tuned_sql_messages", "value_hints"]

_INSTRUCTION = "Write one DuckDB SQL SELECT query that answers the question. Tables:"


def compact_schema(tables: Iterable[TableInfo]) -> str:
    """One line per table, ``schema.table(col, col, ...)``, sorted by name; names as SQL writes them
    (``shop."Order Lines"("Order", "select", price)``: plain names, such as all of GeoQuery's, bare)."""
    return "\n".join(
        f"{t.sql_name}({', '.join(quote_identifier(c) for c, _ in t.columns)})"
        for t in sorted(tables, key=lambda t: t.qualified)
    )


def source_tables(tables: Iterable[TableInfo], source: str) -> list[TableInfo]:
    """The mirrored tables of one source, sorted."""
    return sorted((t for t in tables if t.schema == source), key=lambda t: t.qualified)


def tuned_sql_messages(question: str, tables: Iterable[TableInfo], hints: str = "") -> list[Message]:
    """The chat a tuned SQL expert answers: schema in the system message, question as the user's.

    ``hints`` (``sql-compact-v2``): :func:`value_hints` of the question, shown before it; empty
    when no value of the question is in the data (the user message is then the question alone,
    as in ``sql-compact-v1``).
    """
    user = f"{hints.strip()}\nQuestion: {question}" if hints.strip() else question
    return [Message("system", f"{_INSTRUCTION}\n{compact_schema(tables)}"), Message("user", user)]


def value_hints(
    matches: Sequence[ValueMatch], *, lead: str = "", order: Sequence[str] = (), tables: Sequence[TableInfo] = ()
) -> str:
    """``Values in the question, as the data spells them:`` and one line per value found.

    Columns are listed in ``order`` of their tables (the best-linked table first): a small model
    tends to use the first column named, so it should be the likeliest one. Each is written
    ``table.column`` as the query must write it (``"Order Lines"."select"``); ``tables`` gives the
    table names (a source name may hold a dot).
    """
    if not matches:
        return ""
    rank = {name: i for i, name in enumerate(order)}
    names = {t.qualified: t.name for t in tables}
    lines = []
    for m in matches:
        by_value: dict[str, list[str]] = {}
        for table, column, value in sorted(m.where, key=lambda w: (rank.get(w[0], len(rank)), w)):
            name = names.get(table, table.split(".", 1)[-1])
            by_value.setdefault(value, []).append(f"{quote_identifier(name)}.{quote_identifier(column)}")
        for value, columns in by_value.items():
            lines.append(f"- '{value.replace(chr(39), chr(39) * 2)}': {', '.join(columns[:6])}")
    return (
        f"{lead}\nValues in the question, as the data spells them (value: columns holding it):\n"
        + "\n".join(lines[:12])
        + "\n"
    )
