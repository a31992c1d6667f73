"""Scores of a binary decision: balanced accuracy, ROC AUC, and the threshold that maximises the former
(or a weighted form of it, where one kind of error costs more)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["auc", "balanced_accuracy", "best_threshold", "recall"]


def _arrays(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"{y.shape[0]} labels but {s.shape[0]} scores")
    return y, s


def recall(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, positive: int = 1) -> float:
    """Share of items labelled ``positive`` that were predicted ``positive`` (nan when there are none)."""
    y, p = _arrays(labels, predicted)
    mask = y == positive
    return float((p[mask] == positive).mean()) if mask.any() else float("nan")


def balanced_accuracy(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> float:
    """Mean of the recall of each class (0.5 for a constant guess, whatever the class balance)."""
    return (recall(labels, predicted, 1) + recall(labels, predicted, 0)) / 2


def auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    y, s = _arrays(labels, scores)
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    pos_ranks = ranks[np.argsort(order, kind="mergesort")[: len(pos)]]
    return float((pos_ranks.sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def best_threshold(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, *, negative_weight: float = 1.0
) -> tuple[float, float]:
    """``(threshold, balanced accuracy)``: predicting 1 when ``score >= threshold`` does best.

    Best is the largest ``(recall of 1 + negative_weight * recall of 0) / (1 + negative_weight)``:
    balanced accuracy by default; ``negative_weight`` 2 counts a negative let through as twice as
    bad as a positive held back. The accuracy returned is the plain balanced accuracy at the
    threshold. Candidates are midpoints between consecutive distinct scores; ties keep the lowest.
    """
    if negative_weight <= 0:
        raise ValueError(f"negative_weight must be positive, not {negative_weight}")
    y, s = _arrays(labels, scores)
    values = np.unique(s)
    candidates = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2, [values[-1] + 1e-6]])
    best = (float(candidates[0]), -1.0, -1.0)
    for t in candidates:
        predicted = (s >= t).astype(np.int64)
        weighted = (recall(y, predicted, 1) + negative_weight * recall(y, predicted, 0)) / (1 + negative_weight)
        if weighted > best[2] + 1e-12:
            best = (float(t), balanced_accuracy(y, predicted), weighted)
    return best[0], best[1]
