"""The prompts tuned experts are trained with, and served with.

A tuned expert has learnt one source's conventions, so its prompt can be short: every table of
the source on one line each (``geo.city(city_name, population, ...)``) and the question. The
system message (instruction + schema) is the same for every question of a source, which lets
training and evaluation compute it once per batch. The card records :data:`PROMPT_FORMAT`, and
:class:`~grounded.text2sql.SqlWriter` builds exactly these messages for a tuned expert.

A tuned answer expert (``grounded tune answer``) has absorbed the answer writer's rules (cite
``[n]``, one to three sentences, the abstention sentence): its system message is a few words
instead of :data:`grounded.answer.SYSTEM_PROMPT`, and the passages and question follow as
usual. The engine builds :func:`tuned_answer_messages` for it; the card records
:data:`ANSWER_PROMPT_FORMAT`.
"""

from __future__ import annotations

from collections.abc import Iterable

from grounded.experts.base import Message
from grounded.tools.sql import TableInfo

__all__ = [
    "ANSWER_PROMPT_FORMAT",
    "ANSWER_SCOPE",
    "PROMPT_FORMAT",
    "PROMPT_FORMATS",
    "compact_schema",
    "source_tables",
    "tuned_answer_messages",
    "tuned_sql_messages",
]

PROMPT_FORMAT = "sql-compact-v1"
ANSWER_PROMPT_FORMAT = "answer-short-v1"
PROMPT_FORMATS = {"sql": PROMPT_FORMAT, "answer": ANSWER_PROMPT_FORMAT}
"""The prompt format this grounded serves each tuned task with (a card naming another is refused)."""
ANSWER_SCOPE = "kb"
"""The ``source`` of a tuned answer expert: one serves the whole knowledge base."""

_INSTRUCTION = "Write one DuckDB SQL SELECT query that answers the question. Tables:"
_ANSWER_INSTRUCTION = "Answer from the sources, citing [n]."


def compact_schema(tables: Iterable[TableInfo]) -> str:
    """One line per table, ``schema.table(col, col, ...)``, sorted by name."""
    return "\n".join(
        f"{t.qualified}({', '.join(c for c, _ in t.columns)})" for t in sorted(tables, key=lambda t: t.qualified)
    )


def source_tables(tables: Iterable[TableInfo], source: str) -> list[TableInfo]:
    """The mirrored tables of one source, sorted."""
    return sorted((t for t in tables if t.schema == source), key=lambda t: t.qualified)


def tuned_sql_messages(question: str, tables: Iterable[TableInfo]) -> list[Message]:
    """The chat a tuned SQL expert answers: schema in the system message, question as the user's."""
    return [Message("system", f"{_INSTRUCTION}\n{compact_schema(tables)}"), Message("user", question)]


def tuned_answer_messages(question: str, passages: str) -> list[Message]:
    """The chat a tuned answer expert answers: a short rule, the numbered passages, the question.

    ``passages`` is :func:`grounded.answer.format_passages` of the evidence, as in the long prompt.
    """
    return [Message("system", _ANSWER_INSTRUCTION), Message("user", f"{passages}\n\nQuestion: {question}")]
