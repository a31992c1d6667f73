"""Text-to-SQL: a question and its linked tables in, one checked read-only SELECT out.

The zero-shot path, for a database no model was tuned on:

1. **Prompt**: only the tables schema linking chose, as ``CREATE TABLE`` with a few example
   values per column, optionally (``examples=N``) worked examples over those tables made from
   their own columns and values (:mod:`grounded.sql.examples`), and the question's values *as the data spells them* with every column holding them
   (``'texas': state.state_name, river.traverse``; value linking, :mod:`grounded.sql.values`). Columns are asked for, and under the grammar written,
   qualified by their table (``city.population``), so a join never leaves a name ambiguous.
2. **Draft**: the sql expert writes a query (under the shown tables' SQL grammar when it can,
   :mod:`grounded.sql.grammar`); it is taken from a code block or the first ``SELECT``/``WITH``.
3. **Candidates**: the draft and its deterministic variants (the data's spelling of literals, the
   column that holds a literal, numbers stored as text compared as numbers;
   :mod:`grounded.sql.candidates`) are checked by the SQL guard and run, read-only with a row
   limit, **as the caller**.
4. **Repair**: when no candidate ran, the model gets its query back with the database's whole
   error, the binder's hint included (``Candidate bindings: "state.state_name"``); when every
   candidate returned nothing, it is told so and shown the question's values again. At most
   ``max_attempts`` drafts in all.
5. **Choice**: the most credible result among every candidate run (it ran, it returned values,
   other candidates agree, earlier first: :func:`~grounded.sql.candidates.choose`).

What cannot be repaired is reported, never run unchecked. Drafts are checked and run on ``db``,
the caller's own connection (:func:`grounded.sql.database.caller_database`), which holds only the
tables the caller may read: a draft's error (``SqlDraft.error``, in the answer's trace) names
only tables the caller may see and quotes only cells the caller may read.

A tuned expert (``grounded tune sql``) writes as it was trained: its own prompt (the source's
whole compact schema and, for ``sql-compact-v2``, the question's values as the data spells them),
decoded under the grammar of the source's tables when its backend can (``sql-compact-v1``
experts: no hints, no grammar, as they were measured); its drafts go through the same candidates,
repair and choice.

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

from grounded.errors import ExpertError
from grounded.experts.base import Generation, GrammarGenerator, Message, TextGenerator
from grounded.experts.tuned import TunedExperts
from grounded.sql.candidates import (
    Candidate,
    choose,
    counts_a_keyed_row,
    credit,
    echoes,
    measure_for_count,
    rekeyed,
    rewrites,
    swapped,
    unechoed,
)
from grounded.sql.database import ReadOnlyDatabase, TableInfo
from grounded.sql.grammar import sql_grammar
from grounded.sql.guard import SqlRefused, check_sql, shared_parser
from grounded.sql.joins import Column, drop_unused_joins, match_query
from grounded.sql.prompts import source_tables, tuned_sql_messages, value_hints
from grounded.sql.schema_link import Link, SchemaLinker, cover
from grounded.sql.ties import all_ties
from grounded.sql.values import ValueMatch

__all__ = ["SqlDraft", "SqlWriter", "extract_sql"]

SYSTEM = (
    "You write one DuckDB SQL SELECT query that answers the question from the given tables. "
    "Use only the tables and columns shown. Write tables as schema.table and qualify every column "
    "with its table name (table.column). Join another table only when the question needs one of its "
    "columns. When a column holds the amount asked for (a population, an area, a length), select it; "
    "COUNT counts rows. Compare text with the values exactly as the data spells them. Reply with the SQL only."
)
PLAIN_SYSTEM = (
    "You write one DuckDB SQL SELECT query that answers the question from the given tables. "
    "Use only the tables and columns shown, qualified as schema.table. Reply with the SQL only."
)
MAX_ERROR_CHARS = 600

_PLAIN_SELECT = re.compile(r"^\s*SELECT\s+(?!DISTINCT\b)", re.I)
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
    """The SQL chosen for a question, the tables shown, and what went wrong if none is usable."""

    sql: str | None
    tables: tuple[str, ...]
    attempts: int
    """Drafts the model wrote (the first and its repairs)."""
    error: str | None = None
    constrained: bool = False
    """Whether the SQL was decoded under the grammar of the shown tables."""
    candidates: tuple[Candidate, ...] = ()
    """Every query run for the question (drafts and their variants), in order; ``sql`` is one of them."""
    values: tuple[ValueMatch, ...] = ()
    """The question's words found among the shown tables' values."""

    def trace(self) -> dict[str, object]:
        """What the answer's trace shows of this draft (candidates as SQL, origin and rows or error)."""
        return {
            "sql": self.sql,
            "tables": list(self.tables),
            "attempts": self.attempts,
            "error": self.error,
            "values": {m.span: [f"{t.split('.', 1)[-1]}.{c}" for t, c, _ in m.where] for m in self.values},
            "candidates": [
                {"sql": c.sql, "origin": c.origin, "rows": len(c.result.rows) if c.result else None, "error": c.error}
                for c in self.candidates
            ],
        }


class SqlWriter:
    """Writes checked SQL for questions with a text-generation expert (see the module docstring).

    ``values=False`` is the earlier, plain path (sample rows, no value linking, no variants, one
    repair turn on the error's first line): benchmarks run it beside the default to compare.
    """

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
        values: bool = True,
        max_attempts: int = 3,
        row_limit: int = 200,
        timeout_s: float = 5.0,
        examples: int = 0,
    ) -> None:
        self.expert = expert
        self.linker = linker
        self.db = db
        """The caller's database: drafts are checked and run here, so errors name only what it may see."""
        self.tuned = tuned
        """Experts tuned for one source (``grounded tune sql``): preferred, with the prompt they learnt."""
        self.grammar = grammar
        """Decode the configured expert's SQL under the shown tables' grammar when it can."""
        self.values = values
        self.max_tables = max_tables
        self.max_tokens = max_tokens
        self.max_attempts = max_attempts if values else 2
        self.examples = examples if values else 0
        """Worked examples in the zero-shot prompt: template queries over the shown tables
        (:mod:`grounded.sql.examples`), the ones most like the question. Off by default: with three,
        Qwen2.5-Coder-0.5B was no more accurate on GeoQuery test and slower (benchmarks/RESULTS.md,
        2026-12-01 05:00)."""
        self.row_limit = row_limit
        self.timeout_s = timeout_s
        self._matches: dict[tuple[Column, Column], bool] = {}
        """Whether every row of a column's table has a match in another's (:meth:`_covers`), per pair."""

    def messages(self, question: str, links: Sequence[Link], matches: Sequence[ValueMatch] = ()) -> list[Message]:
        """The zero-shot chat: shown tables, the question's values as stored, the question."""
        if not self.values:
            schema = "\n\n".join(self.linker.describe(link.table) for link in links)
            return [
                Message("system", PLAIN_SYSTEM),
                Message("user", f"Tables:\n{schema}\n\nQuestion: {question}\nSQL:"),
            ]
        schema = "\n\n".join(self.linker.describe_columns(link.table) for link in links)
        shown = [link.table for link in links]
        hints = value_hints(matches, order=[t.qualified for t in shown], tables=shown)
        worked = self.linker.examples.pick(question, shown, self.examples, matches) if self.examples else []
        shots = "".join(f"Question: {ex.question}\nSQL: {ex.sql}\n\n" for ex in worked)
        if shots:
            shots = f"\nExamples over these tables:\n{shots}"
        return [
            Message("system", SYSTEM),
            Message("user", f"Tables:\n{schema}\n{shots}{hints}\nQuestion: {question}\nSQL:"),
        ]

    def write(self, question: str, links: Sequence[Link] | None = None) -> SqlDraft:
        links = list(links if links is not None else self.linker.link(question, tables=self.db.tables()))
        # The plain path shows the best tables; the zero-shot path the fewest that hold what the
        # question names (a small model joins every table it is shown).
        links = cover(question, links, self.max_tables) if self.values else links[: self.max_tables]
        names = tuple(link.table.qualified for link in links)
        if not links:
            return SqlDraft(None, names, 0, "no mirrored table matches the question")
        source = links[0].table.schema
        tuned = self.tuned.get("sql", source) if self.tuned is not None else None
        grammar: str | None = None
        shown: list[TableInfo] = [link.table for link in links]
        matches: list[ValueMatch] = []
        if tuned is not None:
            # A tuned expert learnt its source's whole (compact) schema; it is shown all of it.
            expert: TextGenerator = tuned.generator
            shown = source_tables(self.db.tables(), source)
            names = tuple(t.qualified for t in shown)
            hints = ""
            if tuned.card.get("prompt_format") != "sql-compact-v1":
                matches = self.linker.values.match(question, tables=set(names))
                hints = value_hints(matches, order=names, tables=shown)
                if self.grammar and isinstance(expert, GrammarGenerator):
                    # Qualified, as it was tuned (tune.sql qualifies its targets): shown the whole
                    # source, a model that may write bare names reads columns from the wrong table.
                    grammar = sql_grammar(shown, qualified=True)
            messages = tuned_sql_messages(question, shown, hints)
        elif self.expert is not None:
            expert = self.expert
            if self.values:
                matches = self.linker.values.match(question, tables=set(names))
            messages = self.messages(question, links, matches)
            if self.grammar and isinstance(expert, GrammarGenerator):
                grammar = sql_grammar(shown, qualified=self.values)
        else:
            return SqlDraft(None, names, 0, f"no sql expert is configured or tuned for source {source!r}")
        candidates: list[Candidate] = []
        drafts: list[str] = []
        error = "the model wrote no SQL"
        attempts = 0
        while attempts < self.max_attempts:
            attempts += 1
            try:
                sql = extract_sql(self._generate(expert, messages, grammar).text)
            except ExpertError:
                if not candidates:
                    raise
                attempts -= 1  # a repair that failed (a timeout): keep what ran
                break
            if sql in drafts:
                break  # greedy decoding wrote the same query again: another turn would too
            drafts.append(sql)
            tried = self._candidates(sql, f"draft {attempts}", shown)
            candidates.extend(tried)
            best = choose(candidates)
            if best is not None and (not self.values or (credit(best) == 2 and not counts_a_keyed_row(best, shown))):
                break
            if tried[0].error is not None:
                error = tried[0].error
                feedback = f"That query fails: {error}\nWrite a corrected query. SQL:"
            elif best is not None and credit(best) == 2 and counts_a_keyed_row(best, shown):
                error = "every query written counted the one row the question names"
                feedback = (
                    "That query counts the one row the question names (1). Select the column that holds the "
                    "amount the question asks for.\nWrite a corrected query. SQL:"
                )
            elif best is not None and echoes(best):
                error = "every query written returned only the value the question names"
                feedback = (
                    "That query only returns the value the question already names. Select the column that "
                    "holds what the question asks for.\nWrite a corrected query. SQL:"
                )
            else:
                error = "every query written returned no rows"
                hints = value_hints(matches, lead=" ", order=names, tables=shown)
                feedback = (
                    "That query returns no rows (or only NULL or 0). Check the columns and the values "
                    f"as the data spells them.{hints}\nWrite a corrected query. SQL:"
                )
            messages = [*messages, Message("assistant", sql), Message("user", feedback)]
        best = choose(candidates)
        if best is not None and self.values and counts_a_keyed_row(best, shown):
            # The repair's answer, when it has one, over a count of the one row named.
            other = choose([c for c in candidates if not counts_a_keyed_row(c, shown)])
            best = other if other is not None and credit(other) == 2 else best
        if best is None:
            return SqlDraft(None, names, attempts, error, grammar is not None, tuple(candidates), tuple(matches))
        return SqlDraft(best.sql, names, attempts, None, grammar is not None, tuple(candidates), tuple(matches))

    def _generate(self, expert: TextGenerator, messages: list[Message], grammar: str | None) -> Generation:
        if grammar is not None and isinstance(expert, GrammarGenerator):
            return expert.generate_grammar(messages, grammar, max_tokens=self.max_tokens)
        return expert.generate(messages, max_tokens=self.max_tokens)

    def _candidates(self, sql: str, origin: str, shown: Sequence[TableInfo]) -> list[Candidate]:
        """``sql`` and its variants; a superlative (``ORDER BY ... LIMIT 1``) also read as every row at
        the extreme (:func:`~grounded.sql.ties.all_ties`).

        When that reading returns more rows than the draft's, and all of the draft's among them (the
        shortest river crosses four states; two states border the fewest), the draft's one row is a
        truncated answer: it goes, so its repeats cannot outvote the whole one. Otherwise both stay,
        the draft's first (they agree when nothing ties).
        """
        ties = all_ties(sql) if self.values else None
        plain = self._candidates_of(sql, origin, shown)
        if ties is None:
            return plain
        tied = self._candidates_of(ties, f"{origin}, every row at the extreme", shown)
        whole, cut = choose(tied), choose(plain)
        if (
            whole is not None and cut is not None and whole.answer is not None and cut.answer is not None
            and credit(whole) == 2 and len(whole.answer) > len(cut.answer) and cut.answer <= whole.answer
        ):  # fmt: skip
            whole_rows = whole.answer
            kept = [c for c in plain if not (c.answer and c.answer < whole_rows)]
            return _unique(tied, kept)
        return _unique(plain, tied)

    def _candidates_of(self, sql: str, origin: str, shown: Sequence[TableInfo]) -> list[Candidate]:
        """``sql`` and its variants, each run (or refused) on the caller's database.

        When the likeliest of them returns a row more than once (``river.length`` of 'colorado',
        once per state it crosses), the same query with ``SELECT DISTINCT`` comes first: a
        repeated row adds nothing to an answer, and a count would have been written as one.
        """
        lean = unechoed(sql) if self.values else None
        found = self._variants(lean or sql, f"{origin}, the question's value not selected" if lean else origin, shown)
        if lean is not None and choose(found) is None:
            found += self._variants(sql, origin, shown)
        best = choose(found)
        if not self.values or best is None or best.result is None:
            return found
        rows = [tuple(map(str, r)) for r in best.result.rows]
        if len(set(rows)) == len(rows) or not _PLAIN_SELECT.match(best.sql):
            return found
        once = self._run(_PLAIN_SELECT.sub("SELECT DISTINCT ", best.sql, count=1), f"{best.origin}, each row once")
        return [once, *found] if once.result is not None else found

    def _variants(self, sql: str, origin: str, shown: Sequence[TableInfo]) -> list[Candidate]:
        rekey = rekeyed(sql, shown, self.linker.values) if self.values else None
        if rekey is None:
            return self._variants_of(sql, origin, shown)
        # Joined on the columns that share values first: a join on two names that only look alike
        # often still returns rows ('mississippi' is a river and a state).
        first = self._variants_of(rekey, f"{origin}, joined on the columns that share values", shown)
        return first + [c for c in self._variants_of(sql, origin, shown) if all(c.sql != f.sql for f in first)]

    def _variants_of(self, sql: str, origin: str, shown: Sequence[TableInfo]) -> list[Candidate]:
        with shared_parser():  # each variant is guarded: one parser connection for all of them
            out = [self._run(sql, origin)]
            if not self.values:
                return out
            amount = measure_for_count(sql, shown, self.linker.values)
            if amount is not None and out[0].result is not None and [list(r) for r in out[0].result.rows] == [[1]]:
                # "how many people live in detroit" answered by counting the one row that holds the number.
                out.insert(0, self._run(amount, f"{origin}, the amount instead of a count of one row"))
                sql = amount
            index = self.linker.values
            for variant in rewrites(sql, shown, index):
                if all(c.sql != variant.sql for c in out):
                    out.append(self._run(variant.sql, f"{origin}, {variant.why}"))
            echo = next((c for c in out if echoes(c)), None)
            if echo is not None:
                # The question's own value back: the value may name the row in another column.
                for variant in swapped(echo.sql, shown, index):
                    if all(c.sql != variant.sql for c in out):
                        out.append(self._run(variant.sql, f"{echo.origin}, {variant.why}"))
            # The draft's joins, or a variant's (a column moved to its own table may leave a join unread).
            pruned = next((p for c in out if (p := drop_unused_joins(c.sql, shown, self._covers)) is not None), None)
            if pruned is None:
                return out
            lean = [self._run(pruned, f"{origin}, unused joins dropped")]
            for variant in rewrites(pruned, shown, index):
                if all(c.sql != variant.sql for c in out + lean):
                    lean.append(self._run(variant.sql, f"{origin}, unused joins dropped, {variant.why}"))
            lean = [c for c in lean if all(c.sql != o.sql for o in out)]
        # The joins nothing reads only repeated the rows (the same rows, more of them): the lean
        # query first. When they filtered rows, the model may have meant them as a filter.
        return [*lean, *out] if _repeats(choose(out), choose(lean)) else [*out, *lean]

    def _covers(self, kept: Column, dropped: Column) -> bool:
        """Whether joining ``dropped`` on ``kept = dropped`` keeps every row of ``kept``'s table, on
        the caller's data (an inner join that filters no row may be dropped; :mod:`grounded.sql.joins`)."""
        key = (kept, dropped)
        if key not in self._matches:
            try:
                result = self.db.execute(match_query(kept, dropped), timeout_s=self.timeout_s, row_limit=1)
            except (duckdb.Error, TimeoutError):
                self._matches[key] = False
            else:
                self._matches[key] = bool(result.rows and result.rows[0][0] is True)
        return self._matches[key]

    def _run(self, sql: str, origin: str) -> Candidate:
        try:
            guard = check_sql(sql, self.db.tables())
        except SqlRefused as exc:
            return Candidate(sql, origin, error=str(exc))
        limit = self.row_limit if self.values else 1
        try:
            result = self.db.execute(guard.sql, timeout_s=self.timeout_s, row_limit=limit)
        except (duckdb.Error, TimeoutError) as exc:
            text = str(exc) if self.values else str(exc).splitlines()[0]
            return Candidate(guard.sql, origin, error=_clip(text))
        return Candidate(guard.sql, origin, result=result)


def _repeats(draft: Candidate | None, lean: Candidate | None) -> bool:
    """Whether ``draft`` returned ``lean``'s rows, some of them more than once."""
    if draft is None or lean is None or draft.result is None or lean.result is None:
        return False
    rows, fewer = draft.result.rows, lean.result.rows
    return len(rows) > len(fewer) and {tuple(map(str, r)) for r in rows} == {tuple(map(str, r)) for r in fewer}


_HINTS = {
    "WHERE clause cannot contain aggregates": (
        "filter on an aggregate with HAVING after GROUP BY, or compare with a subquery such as "
        "(SELECT MAX(t.x) FROM schema.t AS t)"
    ),
    "must appear in the GROUP BY clause": "add the column to GROUP BY, or wrap it in an aggregate",
}


def _clip(text: str) -> str:
    """The database's error as the model should see it: the message, the binder's candidates and the
    position, without DuckDB's long lists of function signatures."""
    lines = text.strip().splitlines()
    kept = [lines[0]] if lines else []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith(("Candidate bindings", "Candidate tables", "Did you mean", "LINE ")) or (
            stripped == "^" or (stripped.endswith("^") and not stripped.strip("^ "))
        ):
            kept.append(line.rstrip())
    kept.extend(hint for key, hint in _HINTS.items() if key in text)
    message = "\n".join(kept)
    return message if len(message) <= MAX_ERROR_CHARS else message[:MAX_ERROR_CHARS] + "…"


def _unique(first: Sequence[Candidate], then: Sequence[Candidate]) -> list[Candidate]:
    """``first``, then the candidates of ``then`` whose SQL none of ``first`` already runs."""
    seen = {c.sql for c in first}
    return [*first, *(c for c in then if c.sql not in seen)]
