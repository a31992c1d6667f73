"""Self-tuning for text-to-SQL: (question, SQL) pairs made from a source's own mirrored tables.

``grounded tune sql --synthesize N`` needs no hand-written example:

1. **SQL** from templates over the real tables and values (:mod:`grounded.sql.templates`),
   each run through the SQL guard on the mirror and kept only when it returns rows;
2. **a question** for each query, written by a text expert from the query and its tables'
   columns (few-shot, greedy, :func:`question_messages`); with ``questions="template"``, or when
   the model's reply is not one plausible question, the template's own question is used;
3. **a round-trip check** on each written question: ``check="execution"`` runs the zero-shot SQL
   path that ``/v1/query`` runs (schema linking, the configured expert, candidates, the guard;
   :class:`~grounded.sql.writer.SqlWriter`, without tuned experts) on the question, and keeps it
   only when the SQL it chooses returns the template query's rows; ``check="mention"`` keeps it
   when it names every value of the query and a word of each column the query is about (cheap:
   no SQL is written). A written question that fails is replaced by the template question
   (``fallback=True``, the default) or dropped. Template questions are exact by construction
   and are not checked.

The pairs are the same for the same seed, data and experts (greedy decoding), so a run can be
repeated, and written as JSONL (:func:`write_pairs`) to be read, edited and passed back with
``--examples``.

Example::

    pairs, stats = synthesize_pairs(db, "geo", 200, writer=kb.engine.expert, round_trip=round_trip)
    stats.keep_rate, [p.example for p in pairs]
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from grounded.errors import ExpertError, InvalidRequest
from grounded.experts.base import GrammarGenerator, Message, TextGenerator
from grounded.optimize.questions import clean_question
from grounded.sql.database import ReadOnlyDatabase, TableInfo
from grounded.sql.guard import shared_parser
from grounded.sql.prompts import compact_schema, source_tables
from grounded.sql.schema_link import SchemaLinker
from grounded.sql.templates import TEMPLATES, TemplateSql, template_queries
from grounded.sql.values import normalise_value
from grounded.sql.writer import SqlWriter
from grounded.tune.data import SqlExample
from grounded.tune.evaluate import ExecutionJudge

if TYPE_CHECKING:
    from grounded.kb import KnowledgeBase

__all__ = [
    "CHECKS",
    "QUESTIONS",
    "RoundTrip",
    "SynthPair",
    "SynthStats",
    "mention_check",
    "question_messages",
    "synthesize_for_kb",
    "synthesize_pairs",
    "write_pairs",
]

Check = Literal["execution", "mention"]
CHECKS: tuple[Check, ...] = ("execution", "mention")
Questions = Literal["model", "template"]
QUESTIONS: tuple[Questions, ...] = ("model", "template")
QUESTION_TOKENS = 48

_SYSTEM = (
    "You turn a SQL query into the one question it answers, as a person would ask it in plain English. "
    "Name the values exactly as the query writes them. Reply with the question only."
)
_SHOTS = (
    (
        "library.books(title, author, year, pages)",
        "SELECT title FROM library.books WHERE author = 'Jane Austen'",
        "Which books did Jane Austen write?",
    ),
    (
        "library.books(title, author, year, pages)",
        "SELECT count(*) FROM library.books WHERE year > 1900",
        "How many books are from after 1900?",
    ),
    (
        "library.books(title, author, year, pages)",
        "SELECT title FROM library.books ORDER BY pages DESC LIMIT 1",
        "What is the longest book?",
    ),
)


def question_messages(sql: str, schema: str) -> list[Message]:
    """The few-shot chat asking for the question ``sql`` answers (``schema``: its tables, one per line)."""
    messages = [Message("system", _SYSTEM)]
    for tables, shot_sql, question in _SHOTS:
        messages += [Message("user", f"Tables: {tables}\nSQL: {shot_sql}"), Message("assistant", question)]
    return [*messages, Message("user", f"Tables: {schema}\nSQL: {sql}")]


@dataclass(frozen=True, slots=True)
class SynthPair:
    """A kept pair: the question, the template SQL, and where the question came from."""

    question: str
    sql: str
    template: str
    origin: Literal["model", "template"]
    """``model``: written by the expert and passed the check; ``template``: the template's own question."""

    @property
    def example(self) -> SqlExample:
        return SqlExample(self.question, self.sql)


@dataclass
class SynthStats:
    """What synthesis made and kept (printed by the command, kept in the model card)."""

    queries: int = 0
    """Template queries that ran and returned rows (each one is offered a question)."""
    written: int = 0
    """Questions the model wrote that were one plausible question."""
    passed: int = 0
    """Written questions that passed the round-trip check (kept as written)."""
    fallback: int = 0
    """Pairs kept with the template question instead."""
    dropped: int = 0
    check: str = "execution"
    questions: str = "model"
    seconds: float = 0.0
    templates: dict[str, int] = field(default_factory=dict)
    """Kept pairs per template."""

    @property
    def kept(self) -> int:
        return self.passed + self.fallback

    @property
    def keep_rate(self) -> float:
        """The share of the model's questions that passed the round-trip check (of the queries offered)."""
        return self.passed / self.queries if self.queries else 0.0

    def as_card(self) -> dict[str, object]:
        return {"synthesized": {**asdict(self), "kept": self.kept, "keep_rate": round(self.keep_rate, 4)}}

    def summary(self) -> str:
        per = ", ".join(f"{k} {v}" for k, v in sorted(self.templates.items()))
        if self.questions == "template":
            head = f"{self.kept} pairs from {self.queries} template queries, template questions"
        else:
            head = (
                f"{self.kept} pairs from {self.queries} template queries: {self.written} questions written, "
                f"{self.passed} passed the {self.check} check (keep rate {self.keep_rate:.0%}), "
                f"{self.fallback} template questions, {self.dropped} dropped"
            )
        return f"{head}; in {self.seconds:.0f} s ({per})"


_HOW_MANY = ("how many", "number of", "count")
_MORE = ("highest", "largest", "most", "biggest", "greatest", "longest", "maximum", "top", "tallest", "max")
_LESS = ("lowest", "smallest", "least", "fewest", "shortest", "minimum", "min")
_CUES: dict[str, tuple[tuple[str, ...], ...]] = {
    "count": (_HOW_MANY,),
    "join_count": (_HOW_MANY,),
    "group_count": (_HOW_MANY, ("each", "per", "every", "by")),
    "max": (_MORE,),
    "min": (_LESS,),
    "avg": (("average", "mean"),),
    "sum": (("total", "sum", "combined", "altogether", "all together"),),
    "DESC": (_MORE,),
    "ASC": (_LESS,),
    ">": (("greater", "more", "over", "above", "larger", "higher", "exceed", "bigger", "at least"),),
    "<": (("less", "fewer", "under", "below", "smaller", "lower", "at most"),),
}


def _cues(made: TemplateSql) -> tuple[tuple[str, ...], ...]:
    """Word groups the question must use one of each: what the query does (counts, the largest, below)."""
    if made.template in _CUES:
        return _CUES[made.template]
    key = {
        "aggregate": lambda: re.match(r"SELECT (\w+)\(", made.sql),
        "superlative": lambda: re.search(r"\b(DESC|ASC) LIMIT 1$", made.sql),
        "compare": lambda: re.search(r" ([<>]) [^<>]*$", made.sql),
    }.get(made.template, lambda: None)()
    return _CUES.get(key.group(1), ()) if key else ()


def mention_check(question: str, made: TemplateSql) -> bool:
    """Whether ``question`` names every value of the query, a word of each column it is about, and
    what it does (a count, the largest, below: :data:`_CUES`)."""
    words = f" {normalise_value(question)} "
    for group in _cues(made):
        if not any(f" {cue} " in words for cue in group):
            return False
    for value in made.values:
        wanted = normalise_value(value.strip("'"))
        if wanted and f" {wanted} " not in words:
            return False
    stems = {w[:-1] if w.endswith("s") else w for w in words.split()}
    for column in made.columns:
        names = {w[:-1] if w.endswith("s") else w for w in normalise_value(column).split() if len(w) > 2}
        if names and not names & stems:
            return False
    return True


class RoundTrip:
    """``check="execution"``: the zero-shot path's SQL for a question returns the template query's rows."""

    def __init__(self, sql_writer: SqlWriter, db: ReadOnlyDatabase) -> None:
        self.writer = sql_writer
        self.judge = ExecutionJudge(db)

    def __call__(self, question: str, made: TemplateSql) -> bool:
        try:
            draft = self.writer.write(question)
        except ExpertError:
            return False
        if draft.sql is None:
            return False
        gold = self.judge.gold(made.sql)
        return gold is not None and self.judge.judge(draft.sql, made.sql).correct


def synthesize_pairs(
    db: ReadOnlyDatabase,
    source: str,
    n: int,
    *,
    writer: TextGenerator | None = None,
    check: Check = "execution",
    round_trip: Callable[[str, TemplateSql], bool] | None = None,
    fallback: bool = True,
    seed: int = 0,
    templates: Sequence[str] | None = None,
    progress: Callable[[SynthStats], None] | None = None,
    max_queries: int | None = None,
    varied: bool = True,
) -> tuple[list[SynthPair], SynthStats]:
    """Up to ``n`` pairs for ``source`` and how they were made (see the module docstring).

    ``writer`` writes the questions (``None``: template questions only, no check). For
    ``check="execution"``, ``round_trip`` decides whether a written question's zero-shot SQL
    agrees (:class:`RoundTrip`). At most ``max_queries`` template queries are offered (default
    ``4 n + 20``: a low keep rate without fallback must not run forever). ``varied``: template
    questions in their templates' several phrasings (:func:`~grounded.sql.templates.template_queries`).
    """
    if n < 1:
        raise InvalidRequest(f"--synthesize must be at least 1 (pairs to make); got {n}")
    if check not in CHECKS:
        raise InvalidRequest(f"--check must be one of {', '.join(CHECKS)}; got {check!r}")
    if writer is not None and check == "execution" and round_trip is None:
        raise ValueError("check='execution' needs round_trip (the zero-shot SQL path to compare with)")
    stats = SynthStats(check=check, questions="model" if writer is not None else "template")
    started = time.perf_counter()
    tables = {t.qualified: t for t in source_tables(db.tables(), source)}
    limit = max_queries if max_queries is not None else 4 * n + 20
    pairs: list[SynthPair] = []
    made_sql = template_queries(
        db, source, seed=seed, templates=tuple(templates) if templates else TEMPLATES, varied=varied
    )
    # Every template query and every round-trip candidate is guarded: one parser connection for
    # the run, not one per check (opening it was ~80% of a template-question run).
    with shared_parser():
        for made in made_sql:
            if len(pairs) >= n or stats.queries >= limit:
                break
            stats.queries += 1
            pair = _pair(made, writer, check, round_trip, fallback, tables, stats)
            if pair is None:
                stats.dropped += 1
            else:
                pairs.append(pair)
                stats.templates[made.template] = stats.templates.get(made.template, 0) + 1
            stats.seconds = round(time.perf_counter() - started, 1)
            if progress is not None:
                progress(stats)
    stats.seconds = round(time.perf_counter() - started, 1)
    return pairs, stats


def _pair(
    made: TemplateSql,
    writer: TextGenerator | None,
    check: Check,
    round_trip: Callable[[str, TemplateSql], bool] | None,
    fallback: bool,
    tables: dict[str, TableInfo],
    stats: SynthStats,
) -> SynthPair | None:
    template_pair = SynthPair(made.question, made.sql, made.template, "template")
    if writer is None:
        stats.fallback += 1
        return template_pair
    schema = compact_schema(t for name, t in tables.items() if name in made.tables)
    try:
        reply = writer.generate(question_messages(made.sql, schema), max_tokens=QUESTION_TOKENS).text
    except ExpertError:
        reply = ""
    question = clean_question(reply)
    if question is not None:
        stats.written += 1
        ok = mention_check(question, made) if check == "mention" else bool(round_trip and round_trip(question, made))
        if ok:
            stats.passed += 1
            return SynthPair(question, made.sql, made.template, "model")
    if not fallback:
        return None
    stats.fallback += 1
    return template_pair


def synthesize_for_kb(
    kb: KnowledgeBase,
    db: ReadOnlyDatabase,
    source: str,
    n: int,
    *,
    questions: str = "model",
    check: str = "execution",
    fallback: bool = True,
    seed: int = 0,
    progress: Callable[[SynthStats], None] | None = None,
) -> tuple[list[SynthPair], SynthStats]:
    """:func:`synthesize_pairs` with the knowledge base's own experts, as ``grounded tune sql`` runs it.

    The configured ``sql`` expert writes the questions and the round-trip SQL (the answer expert
    when none is configured: the same small model serves both by default), under the SQL grammar
    when the backend has one and ``experts.sql.grammar`` allows it, as ``/v1/query`` decodes.
    """
    if questions not in QUESTIONS:
        raise InvalidRequest(f"--questions must be one of {', '.join(QUESTIONS)}; got {questions!r}")
    if check not in CHECKS:
        raise InvalidRequest(f"--check must be one of {', '.join(CHECKS)}; got {check!r}")
    writer: TextGenerator | None = None
    round_trip: RoundTrip | None = None
    if questions == "model":
        writer = kb.engine.sql_expert or kb.engine.expert
        if check == "execution":
            spec = kb.settings.experts.sql
            grammar = (spec.grammar if spec is not None else True) and isinstance(writer, GrammarGenerator)
            linker = SchemaLinker.for_version(db, kb.embedder)
            round_trip = RoundTrip(SqlWriter(writer, linker, db=db, grammar=grammar), db)
    return synthesize_pairs(
        db,
        source,
        n,
        writer=writer,
        check=check,
        round_trip=round_trip,
        fallback=fallback,
        seed=seed,
        progress=progress,
    )


def write_pairs(path: Path, pairs: Sequence[SynthPair]) -> None:
    """The pairs as JSONL (``question``, ``sql``, ``template``, ``origin``): ``--examples`` reads it back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for pair in pairs:
            fh.write(json.dumps(asdict(pair), ensure_ascii=False) + "\n")
