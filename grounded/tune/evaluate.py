"""Execution accuracy: a predicted query is right when it returns the gold query's rows.

Both queries run on the knowledge base's DuckDB mirror of the source (read-only, guarded, with
a timeout), and their results are compared as multisets of normalised rows (order ignored,
``3.0`` equal to ``3``, case and spacing folded), the usual GeoQuery/Spider execution metric.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from grounded.sql.database import ReadOnlyDatabase
from grounded.sql.guard import SqlRefused, check_sql
from grounded.sql.writer import extract_sql

__all__ = ["ExecutionJudge", "Verdict", "normalise_rows"]


def normalise_rows(rows: Any) -> list[tuple[str, ...]]:
    """Result rows as sorted tuples of normalised text (numbers without trailing .0)."""

    def cell(v: Any) -> str:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return re.sub(r"\s+", " ", str(v).strip().lower())

    return sorted(tuple(cell(v) for v in row) for row in rows)


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one predicted query fared: it ran (valid) and returned the gold rows (correct)."""

    sql: str
    valid: bool
    correct: bool
    error: str | None = None


class ExecutionJudge:
    """Scores SQL against gold SQL on one knowledge-base version's mirror."""

    def __init__(self, db: ReadOnlyDatabase, *, timeout_s: float = 3.0, row_limit: int = 10_000) -> None:
        self.db = db
        self.timeout_s = timeout_s
        self.row_limit = row_limit
        self._gold: dict[str, list[tuple[str, ...]] | None] = {}

    def rows(self, sql: str) -> list[tuple[str, ...]]:
        """The normalised rows of a guarded query; raises SqlRefused, duckdb.Error or TimeoutError."""
        guard = check_sql(sql, self.db.tables())
        return normalise_rows(self.db.execute(guard.sql, timeout_s=self.timeout_s, row_limit=self.row_limit).rows)

    def gold(self, sql: str) -> list[tuple[str, ...]] | None:
        """The gold query's rows (memoised), or ``None`` when the gold query itself fails here."""
        if sql not in self._gold:
            try:
                self._gold[sql] = self.rows(sql)
            except (SqlRefused, duckdb.Error, TimeoutError):
                self._gold[sql] = None
        return self._gold[sql]

    def judge(self, reply: str, gold_sql: str) -> Verdict:
        """Score a model's reply (the SQL is extracted as the serving path does)."""
        sql = extract_sql(reply)
        gold = self.gold(gold_sql)
        try:
            rows = self.rows(sql)
        except (SqlRefused, duckdb.Error, TimeoutError) as exc:
            return Verdict(sql, False, False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return Verdict(sql, True, gold is not None and rows == gold)

    @staticmethod
    def accuracy(verdicts: Sequence[Verdict]) -> float:
        """The share of verdicts that are correct (0.0 for none)."""
        return sum(v.correct for v in verdicts) / len(verdicts) if verdicts else 0.0
