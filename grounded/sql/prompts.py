"""The prompt tuned SQL experts are trained with, and served with.

A tuned expert has learnt one source's conventions, so its prompt can be short: every table of
the source on one line each (``geo.city(city_name, population, ...)``) and the question. The
system message (instruction + schema) is the same for every question of a source, which lets
training and evaluation compute it once per batch. The card records
:data:`~grounded.experts.tuned.SQL_PROMPT_FORMAT`, and :class:`~grounded.sql.writer.SqlWriter`
builds exactly these messages for a tuned expert.
"""

from __future__ import annotations

from collections.abc import Iterable

from grounded.experts.base import Message
from grounded.sql.database import TableInfo, quote_identifier

__all__ = ["compact_schema", "source_tables", "tuned_sql_messages"]

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


def tuned_sql_messages(question: str, tables: Iterable[TableInfo]) -> list[Message]:
    """The chat a tuned SQL expert answers: schema in the system message, question as the user's."""
    return [Message("system", f"{_INSTRUCTION}\n{compact_schema(tables)}"), Message("user", question)]
