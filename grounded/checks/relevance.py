"""The one-sentence relevance threshold, chosen on whole questions together with the gate.

After the gate lets a question through, the answer path keeps an answer only when one of its
sentences *alone* answers the question (``answer.relevance = answer``, :mod:`grounded.answering.trust`):
a drafted sentence, or the evidence sentence that best answers it among the few closest to the
question (:func:`~grounded.answering.trust.best_answering_quote`). The gate's own threshold was
chosen for *windows* of several sentences, which score higher than one sentence; reused for single
sentences it turned two of three answerable ClapNQ questions into abstentions (benchmarks/RESULTS.md,
2026-11-30). So the threshold is chosen here for what it decides: on the dev questions, each scored
as the answer path scores it (the best relevance among its ``candidates`` quotable sentences closest
to the question), the threshold that makes *gate and relevance together* decide best (balanced
accuracy on real questions when there are both kinds, else on every case). Figures on test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from grounded.checks.data import GateCase
from grounded.checks.lexical import Combination, fit_combination, logit
from grounded.checks.model import CrossEncoder
from grounded.checks.text import split_sentences

if TYPE_CHECKING:
    from grounded.experts.embedding import SentenceEmbedder

__all__ = [
    "CANDIDATES",
    "DECISION_FEATURES",
    "best_relevance",
    "candidate_similarity",
    "choose_answer_floor",
    "choose_relevance_threshold",
    "decision_features",
    "decision_scores",
    "fit_decision",
    "joint_figures",
]

CANDIDATES = 5
"""Quotable sentences closest to the question that are scored (as the answer path's fallback quote does)."""


def candidate_similarity(embedder: SentenceEmbedder, question: str, sentences: Sequence[str]) -> float:
    """The evidence similarity the answer decision reads: the highest cosine of ``question`` (as a query) to
    ``sentences`` embedded as they are written (no title prefix), 0.0 for none. The same function at
    calibration and in the answer path (:func:`~grounded.answering.trust.decision_evidence`), so the
    decision's weights meet the feature they were fitted on."""
    if not sentences:
        return 0.0
    return float(np.max(embedder.embed(list(sentences)) @ embedder.embed_query(question)))


def decision_features(
    model: CrossEncoder, cases: Sequence[GateCase], *, candidates: int = CANDIDATES
) -> list[tuple[float, float]]:
    """Per case, ``(best relevance, evidence similarity)``: the highest one-sentence relevance among its
    ``candidates`` quotable sentences closest to the question by the default embedder, and their
    :func:`candidate_similarity` (``(0.0, 0.0)`` when its passages have none)."""
    from grounded.checks.checker import gate_score, looks_cut_off, looks_like_prose
    from grounded.experts.embedding import SentenceEmbedder

    embedder = SentenceEmbedder.shared()
    out: list[tuple[float, float]] = []
    for case in cases:
        sentences = [
            s
            for passage in case.passages
            for s in split_sentences(passage)
            if looks_like_prose(s, min_words=5) and not looks_cut_off(s)
        ]
        if not sentences:
            out.append((0.0, 0.0))
            continue
        similarity = embedder.embed(sentences) @ embedder.embed_query(case.question)
        order = [int(i) for i in np.argsort(-similarity, kind="stable")[:candidates]]
        best = max(gate_score(model, case.question, [sentences[i]])[0] for i in order)
        out.append((best, float(similarity[order[0]])))
    return out


def best_relevance(model: CrossEncoder, cases: Sequence[GateCase], *, candidates: int = CANDIDATES) -> list[float]:
    """Per case, the highest one-sentence relevance among its ``candidates`` quotable sentences
    closest to the question by the default embedder (0.0 when its passages have none)."""
    return [r for r, _ in decision_features(model, cases, candidates=candidates)]


DECISION_FEATURES = ("gate_logit", "relevance_logit", "evidence_similarity")
"""What the answer decision combines: the gate's probability (with its lexical features), the best one-sentence
relevance among the candidates, and their evidence similarity (:func:`candidate_similarity`)."""


def fit_decision(
    labels: Sequence[int], gate: Sequence[float], relevance: Sequence[float], similarity: Sequence[float]
) -> tuple[Combination, float, float]:
    """``(combination, threshold, balanced accuracy)`` of the answer decision: a logistic combination of
    :data:`DECISION_FEATURES` fitted on ``labels`` (real dev questions), its threshold the one that
    decides them best. One score instead of two thresholds in a row: a question the gate doubts but whose
    best sentence plainly answers it (or the other way round) is weighed, not cut by whichever rule
    comes first; and the evidence similarity, which alone separates ClapNQ's answerable questions from
    its unanswerable ones better than either (benchmarks/RESULTS.md, 2026-11-30), has its say."""
    from grounded.checks.metrics import best_threshold

    features = [(logit(r), float(s)) for r, s in zip(relevance, similarity, strict=True)]
    combination = fit_combination(list(gate), features, list(labels))
    scores = [combination.probability(g, f) for g, f in zip(gate, features, strict=True)]
    threshold, ba = best_threshold(list(labels), scores)
    return combination, threshold, ba


def decision_scores(
    combination: Combination, gate: Sequence[float], relevance: Sequence[float], similarity: Sequence[float]
) -> list[float]:
    """The answer decision's probability for each question."""
    return [
        combination.probability(g, (logit(r), float(s))) for g, r, s in zip(gate, relevance, similarity, strict=True)
    ]


def choose_answer_floor(
    labels: Sequence[int], passed: Sequence[int], relevance: Sequence[float]
) -> tuple[float, float]:
    """``(floor, balanced accuracy)``: the least one-sentence relevance the best candidate must reach for a
    question the answer decision passed (``passed``) to be answered, the one that decides ``labels`` best
    together with the decision. The decision weighs relevance with the evidence similarity, so a question
    on which retrieval found close sentences passes even when none of them answers it (the demo's "What is
    the precedence of not compared to and?" was answered by "Any ordered comparison of a number to a
    not-a-number value is false."); the floor says the quoted sentence must answer, whatever the evidence.
    Candidates are 0 and the midpoints between 0 and the passed questions' distinct scores; where several decide
    equally well, the middle of their range (as :func:`choose_relevance_threshold`): neither a rule switched
    off nor one at the edge of what the dev questions allow."""
    from grounded.checks.metrics import balanced_accuracy

    ok = np.asarray(passed, dtype=np.int64) == 1
    r = np.asarray(relevance, dtype=np.float64)
    values = np.unique(np.concatenate([[0.0], r[ok]]))
    candidates = np.concatenate([[0.0], (values[1:] + values[:-1]) / 2])
    scores = [balanced_accuracy(labels, (ok & (r >= t)).astype(np.int64)) for t in candidates]
    top = max(scores)
    tied = [float(t) for t, ba in zip(candidates, scores, strict=True) if ba >= top - 1e-12]
    return (min(tied) + max(tied)) / 2, top


def _decide(gate: Sequence[float], relevance: Sequence[float], gate_threshold: float, threshold: float) -> np.ndarray:
    g = np.asarray(gate, dtype=np.float64) >= gate_threshold
    return (g & (np.asarray(relevance, dtype=np.float64) >= threshold)).astype(np.int64)


def choose_relevance_threshold(
    labels: Sequence[int], gate: Sequence[float], relevance: Sequence[float], gate_threshold: float
) -> tuple[float, float]:
    """``(threshold, balanced accuracy)`` of "gate ≥ ``gate_threshold`` and relevance ≥ threshold"
    that decides ``labels`` best; candidates are midpoints between distinct relevance scores. Where
    several decide equally well (the gate alone decides the dev cases, so any threshold below the
    answerable ones' relevance does), the middle of their range: neither a rule switched off nor one
    at the edge of what the dev cases allow."""
    from grounded.checks.metrics import balanced_accuracy

    values = np.unique(np.asarray(relevance, dtype=np.float64))
    if not len(values):
        return 0.0, float("nan")
    candidates = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2])
    scores = [balanced_accuracy(labels, _decide(gate, relevance, gate_threshold, float(t))) for t in candidates]
    top = max(scores)
    tied = [float(t) for t, ba in zip(candidates, scores, strict=True) if ba >= top - 1e-12]
    return (min(tied) + max(tied)) / 2, top


def joint_figures(
    labels: Sequence[int], gate: Sequence[float], relevance: Sequence[float], gate_threshold: float, threshold: float
) -> dict[str, Any]:
    """Answer rate on answerable cases, abstention on the others and balanced accuracy, of the gate
    alone and of gate and relevance together."""
    from grounded.checks.metrics import auc, balanced_accuracy, recall

    out: dict[str, Any] = {"questions": len(labels), "relevance_auc": round(auc(labels, relevance), 4)}
    for name, predicted in (
        ("gate", (np.asarray(gate, dtype=np.float64) >= gate_threshold).astype(np.int64)),
        ("gate_and_relevance", _decide(gate, relevance, gate_threshold, threshold)),
    ):
        out[name] = {
            "answered": round(recall(labels, predicted, 1), 4),
            "abstained": round(recall(labels, predicted, 0), 4),
            "balanced_accuracy": round(balanced_accuracy(labels, predicted), 4),
        }
    return out
