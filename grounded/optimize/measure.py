"""One configuration on one question (:class:`Outcome`), and the metrics of many (:class:`Measured`).

A question is asked through :meth:`GroundingEngine.answer` — the engine ``/v1/query`` serves
with, in process, answer cache off — and timed end to end. Quality, per configuration:

* ``answer_rate``: answerable questions answered (not abstained);
* ``abstention``: unanswerable questions abstained on;
* ``gold_cited``: answered questions with ``doc_ids`` that cite one of them;
* ``recall``: answer-word recall against the reference answer (answered questions that have one);
* ``entailment``: the trained checker's mean support of the kept sentences (only with ``answer.checks``
  on the model).

A metric with no question to measure it on is ``None`` and left out of comparisons. Latency:
p50 and p95 of the seconds per question, and the mean tokens the writer read and wrote (the
same on every run: decoding is greedy).
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from grounded.answering.engine import GroundingEngine
from grounded.optimize.workload import Question

__all__ = ["QUALITY_METRICS", "Measured", "Outcome", "ask", "measure"]

QUALITY_METRICS = ("answer_rate", "abstention", "gold_cited", "recall", "entailment")
"""Higher is better for each; the quality score is their mean (over those measured)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one configuration did with one question."""

    qid: str
    abstained: bool
    cited_docs: tuple[str, ...]
    text: str
    seconds: float
    tokens: int
    entailment: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        return cls(**{**data, "cited_docs": tuple(data["cited_docs"])})


def ask(engine: GroundingEngine, question: Question) -> Outcome:
    """``question`` answered by ``engine`` without the answer cache, timed end to end."""
    started = time.perf_counter()
    answer = engine.answer(question.question, use_cache=False)
    seconds = time.perf_counter() - started
    by_id = {c.id: c.doc_id for c in answer.citations}
    cited = sorted({by_id[i] for s in answer.sentences for i in s.citations if i in by_id})
    checks = answer.trace.get("checks", {}) if isinstance(answer.trace, Mapping) else {}
    entailment: float | None = None
    if checks.get("mode") == "model" and not answer.abstained:
        scores = [f["support"] for f in checks.get("sentences", []) if f.get("support") is not None]
        entailment = round(statistics.fmean(scores), 6) if scores else None
    tokens = int(answer.timings.get("prompt_tokens", 0) + answer.timings.get("completion_tokens", 0))
    return Outcome(question.qid, answer.abstained, tuple(cited), answer.text, round(seconds, 6), tokens, entailment)


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def word_recall(prediction: str, reference: str) -> float:
    """Share of the reference's words (with multiplicity) that the prediction holds."""
    p, r = _tokens(prediction), _tokens(reference)
    return sum((Counter(p) & Counter(r)).values()) / len(r) if r else 0.0


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    at = (len(ordered) - 1) * q
    low, high = int(at), min(int(at) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


@dataclass(frozen=True, slots=True)
class Measured:
    """The metrics of one configuration on a set of questions."""

    questions: int
    answer_rate: float | None
    abstention: float | None
    gold_cited: float | None
    recall: float | None
    entailment: float | None
    p50: float
    p95: float
    tokens: float

    def quality(self) -> dict[str, float]:
        """The quality metrics that were measured."""
        return {m: v for m in QUALITY_METRICS if (v := getattr(self, m)) is not None}

    @property
    def score(self) -> float:
        """The mean of the measured quality metrics (0 to 1)."""
        values = list(self.quality().values())
        return round(statistics.fmean(values), 6) if values else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "score": self.score}


def _share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 6) if flags else None


def measure(
    questions: Sequence[Question], outcomes: Mapping[str, Outcome], gold_docs: Mapping[str, frozenset[str]]
) -> Measured:
    """The metrics of ``outcomes`` (by question id) on ``questions``; ``gold_docs`` maps a question id
    to the knowledge base's ids of its ``doc_ids``."""
    got = [(q, outcomes[q.qid]) for q in questions]
    answerable = [o for q, o in got if q.answerable]
    unanswerable = [o for q, o in got if not q.answerable]
    with_gold = [o for q, o in got if q.answerable and not o.abstained and gold_docs.get(q.qid)]
    cited = [bool(set(o.cited_docs) & gold_docs[o.qid]) for o in with_gold]
    recalls = [word_recall(o.text, q.answer) for q, o in got if q.answerable and q.answer and not o.abstained]
    entailment = [o.entailment for o in answerable if o.entailment is not None]
    seconds = [o.seconds for _, o in got]
    return Measured(
        questions=len(got),
        answer_rate=_share([not o.abstained for o in answerable]),
        abstention=_share([o.abstained for o in unanswerable]),
        gold_cited=_share(cited),
        recall=round(statistics.fmean(recalls), 6) if recalls else None,
        entailment=round(statistics.fmean(entailment), 6) if entailment else None,
        p50=round(_percentile(seconds, 0.5), 4),
        p95=round(_percentile(seconds, 0.95), 4),
        tokens=round(statistics.fmean(o.tokens for _, o in got), 2) if got else 0.0,
    )
