"""Text-to-SQL: a question and its linked tables in, one checked read-only SELECT out.

The prompt shows only the tables schema linking chose (``CREATE TABLE`` with sample rows), so a
small model sees a short, relevant schema. The SQL it writes is taken from a code block (or the
first ``SELECT``/``WITH``), checked by the SQL guard, then bound against the real schema by
running it with a row limit of one; a guard refusal or a binder error goes back to the model
once, with the error, for a repair. What cannot be repaired is reported, never run unchecked.

Drafts are checked and bound **as the caller**: on ``db``, the caller's own connection
(:func:`grounded.sql.database.caller_database`), which holds only the tables the caller may
read. A draft's error (``SqlDraft.error``, shown in the answer's trace) therefore names only
tables the caller may see and quotes only cells the caller may read.

When the expert can decode under a grammar (local backends), it writes under the SQL grammar of
the shown tables (:mod:`grounded.sql.grammar`): only their tables and columns, one read-only
statement and nothing after it. A tuned expert writes as it was trained, without the grammar.

Example::

    writer = SqlWriter(expert, linker, db=caller_database(view))
    draft = writer.write("how many states border texas?")
    draft.sql, draft.error        # ("SELECT count(*) FROM geo.border_info WHERE ...", None)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from grounded.experts.base import Generation, GrammarGenerator, Message, TextGenerator
from grounded.experts.tuned import TunedExperts
from grounded.sql.database import ReadOnlyDatabase
from grounded.sql.grammar import sql_grammar
from grounded.sql.guard import SqlRefused, check_sql
from grounded.sql.prompts import source_tables, tuned_sql_messages
from grounded.sql.schema_link import Link, SchemaLinker

__all__ = ["SqlDraft", "SqlWriter", "extract_sql"]

SYSTEM = (
    "You write one DuckDB SQL SELECT query that answers the question from the given tables. "
    "Use only the tables and columns shown, qualified as schema.table. Reply with the SQL only."
)

_BLOCK = re.compile(r"```(?:sql)?\s*(.*?)```", re.S | re.I)
_START = re.compile(r"\b(WITH|SELECT)\b", re.I)


def extract_sql(text: str) -> str:
    """The SQL in a model's reply: a fenced block, else from the first SELECT/WITH; one statement."""
    block = _BLOCK.search(text)
    body = block.group(1) if block else text
    start = _START.search(body)
    if start is None:
        return body.strip()
    # Trailing semicolons go; anything after a statement stays, so the guard sees (and refuses) it.
    return body[start.start() :].strip().rstrip(";").strip()


@dataclass(frozen=True, slots=True)
class SqlDraft:
    """The SQL written for a question, the tables shown, and what went wrong if it is unusable."""

    sql: str | None
    tables: tuple[str, ...]
    attempts: int
    error: str | None = None
    constrained: bool = False
    """Whether the SQL was decoded under the grammar of the shown tables."""


class SqlWriter:
    """Writes checked SQL for questions with a text-generation expert."""

    def __init__(
        self,
        expert: TextGenerator | None,
        linker: SchemaLinker,
        *,
        db: ReadOnlyDatabase,
        max_tables: int = 3,
        max_tokens: int = 160,
        tuned: TunedExperts | None = None,
        grammar: bool = True,
    ) -> None:
        self.expert = expert
        self.linker = linker
        self.db = db
        """The caller's database: drafts are checked and bound here, so errors name only what it may see."""
        self.tuned = tuned
        """Experts tuned for one source (``grounded tune sql``): preferred, with the prompt they learnt."""
        self.grammar = grammar
        """Decode the configured expert's SQL under the shown tables' grammar when it can."""
        self.max_tables = max_tables
        self.max_tokens = max_tokens

    def messages(self, question: str, links: Sequence[Link]) -> list[Message]:
        schema = "\n\n".join(self.linker.describe(link.table) for link in links)
        return [Message("system", SYSTEM), Message("user", f"Tables:\n{schema}\n\nQuestion: {question}\nSQL:")]

    def write(self, question: str, links: Sequence[Link] | None = None) -> SqlDraft:
        links = list(links if links is not None else self.linker.link(question))[: self.max_tables]
        names = tuple(link.table.qualified for link in links)
        if not links:
            return SqlDraft(None, names, 0, "no mirrored table matches the question")
        source = links[0].table.schema
        tuned = self.tuned.get("sql", source) if self.tuned is not None else None
        grammar: str | None = None
        if tuned is not None:
            # A tuned expert learnt its source's whole (compact) schema; it is shown all of it.
            expert: TextGenerator = tuned.generator
            shown = source_tables(self.db.tables(), source)
            names = tuple(t.qualified for t in shown)
            messages = tuned_sql_messages(question, shown)
        elif self.expert is not None:
            expert, messages = self.expert, self.messages(question, links)
            if self.grammar and isinstance(expert, GrammarGenerator):
                grammar = sql_grammar([link.table for link in links])
        else:
            return SqlDraft(None, names, 0, f"no sql expert is configured or tuned for source {source!r}")
        error = "the model wrote no SQL"
        for attempt in (1, 2):
            sql = extract_sql(self._generate(expert, messages, grammar).text)
            problem = self._problem(sql)
            if problem is None:
                return SqlDraft(sql, names, attempt, constrained=grammar is not None)
            error = problem
            messages = [
                *messages,
                Message("assistant", sql),
                Message("user", f"That query fails: {error}\nWrite a corrected query. SQL:"),
            ]
        return SqlDraft(None, names, 2, error, constrained=grammar is not None)

    def _generate(self, expert: TextGenerator, messages: list[Message], grammar: str | None) -> Generation:
        if grammar is not None and isinstance(expert, GrammarGenerator):
            return expert.generate_grammar(messages, grammar, max_tokens=self.max_tokens)
        return expert.generate(messages, max_tokens=self.max_tokens)

    def _problem(self, sql: str) -> str | None:
        """Why ``sql`` cannot run (guard refusal or binder error), or ``None`` when it can."""
        try:
            guard = check_sql(sql, self.db.tables())
        except SqlRefused as exc:
            return str(exc)
        try:
            self.db.execute(guard.sql, timeout_s=5.0, row_limit=1)
        except (duckdb.Error, TimeoutError) as exc:
            return str(exc).splitlines()[0]
        return None
