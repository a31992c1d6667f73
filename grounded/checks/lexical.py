"""Cheap lexical evidence about a claim, used beside the cross-encoder's probability.

The model reads a short window and is small; word overlap with *all* the cited passages
carries signal it misses (on MT-RAG human judgments the lexical verifier's margin ranks
unfaithful answers better than the 4-layer model alone). These features are what the
checker's combination (:class:`Combination`, weights fitted on the model's dev split when it
is trained, never on a test file) adds to the model's logit:

* ``word_share``: the share of the claim's content words found in the passages;
* ``missing_numbers``: numbers of the claim that no passage contains (a swapped figure);
* ``missing_names``: capitalised words inside the claim that no passage contains.

The gate has its own combination (:func:`question_features`): a question whose words, names and
numbers the top passages do not hold at all ("Who won the 1998 FIFA World Cup?" asked of the
Python reference) is unanswerable there whatever a small model reads into the window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grounded.checks.text import STOPWORDS, content_words, words

__all__ = [
    "FEATURES",
    "GATE_FEATURES",
    "Combination",
    "claim_features",
    "fit_combination",
    "logit",
    "question_features",
]

FEATURES = ("logit", "word_share", "missing_numbers", "missing_names")
GATE_FEATURES = ("logit", "question_word_share", "missing_terms")
_QUESTION_WORDS = frozenset(
    [
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "does",
        "do",
        "did",
        "is",
        "are",
        "was",
        "were",
        "can",
    ]
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def logit(p: float) -> float:
    """log(p / (1 - p)), clipped so 0 and 1 stay finite."""
    q = min(max(float(p), 1e-6), 1 - 1e-6)
    return math.log(q / (1 - q))


def _numbers(text: str) -> set[str]:
    return {m.replace(",", "") for m in _NUMBER.findall(text)}


def claim_features(claim: str, passages: Sequence[str]) -> tuple[float, float, float]:
    """``(word_share, missing_numbers, missing_names)`` of ``claim`` against all of ``passages``."""
    joined = " ".join(passages)
    have = content_words(joined)
    wanted = content_words(claim)
    share = len(wanted & have) / len(wanted) if wanted else 1.0
    missing_numbers = len(_numbers(claim) - _numbers(joined))
    lower = {w.lower() for w in words(joined)}
    tokens = words(claim)
    names = {w for w in tokens[1:] if w[:1].isupper() and w.lower() not in STOPWORDS}
    missing_names = sum(1 for w in names if w.lower() not in lower)
    return share, float(min(missing_numbers, 3)), float(min(missing_names, 3))


def question_features(question: str, passages: Sequence[str]) -> tuple[float, float]:
    """``(word_share, missing_terms)`` of ``question`` against all of ``passages``: the share of its
    content words they hold, and how many of its names and numbers (capitalised words after the first,
    digits) none of them holds (at most 3)."""
    joined = " ".join(passages)
    have = content_words(joined)
    wanted = {w for w in content_words(question) if w not in _QUESTION_WORDS}
    share = len(wanted & have) / len(wanted) if wanted else 1.0
    lower = {w.lower() for w in words(joined)} | _numbers(joined)
    tokens = words(question)
    terms = {w for w in tokens[1:] if w[:1].isupper() and w.lower() not in STOPWORDS} | _numbers(question)
    missing = sum(1 for w in terms if w.lower() not in lower)
    return share, float(min(missing, 3))


@dataclass(frozen=True, slots=True)
class Combination:
    """A logistic combination of the model's logit and the lexical features (one weight each, and a bias)."""

    weights: tuple[float, ...]
    bias: float

    def probability(self, p_model: float, features: Sequence[float]) -> float:
        z = self.bias + self.weights[0] * logit(p_model)
        z += sum(w * f for w, f in zip(self.weights[1:], features, strict=True))
        return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))

    def to_json(self, names: Sequence[str] = FEATURES) -> dict[str, object]:
        return {"features": list(names), "weights": [round(w, 6) for w in self.weights], "bias": round(self.bias, 6)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Combination:
        weights = data["weights"]
        assert isinstance(weights, list)
        return cls(tuple(float(w) for w in weights), float(data["bias"]))  # type: ignore[arg-type]


def fit_combination(
    p_model: Sequence[float], features: Sequence[Sequence[float]], labels: Sequence[int], *, l2: float = 1.0
) -> Combination:
    """Logistic regression (L2, Newton steps, deterministic) of ``labels`` on the model's logit
    and the lexical features, classes weighted equally."""
    x = np.array([[logit(p), *f] for p, f in zip(p_model, features, strict=True)], dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    x = np.hstack([x, np.ones((len(x), 1))])
    pos = max(1.0, float(y.sum()))
    neg = max(1.0, float(len(y) - y.sum()))
    sample = np.where(y == 1, len(y) / (2 * pos), len(y) / (2 * neg))
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -60, 60)))
        grad = x.T @ (sample * (p - y)) + penalty * w
        hess = (x * (sample * p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return Combination(tuple(float(v) for v in w[:-1]), float(w[-1]))
