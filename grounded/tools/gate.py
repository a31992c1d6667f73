"""The tool gate: a trained check that says "no tool fits this question" (then: no call).

Tool retrieval always returns its best ``k`` tools, fitting or not; calling one for a question
no tool answers is worse than calling none (the answer then comes from plain retrieval, or is an
honest abstention). A cosine threshold on the best tool (``[tools] min_relevance``) separates the
two only so far: on BFCL's 982 pooled tools it says "no call" to 73% of the irrelevant
questions while keeping 63-85% of the answerable ones. The gate reads more of what retrieval
already computed (:class:`RelevanceFeatures`: the two best cosines, the two best BM25 scores,
whether BM25 and the embedder agree on the best tool, how many of the question's words the
tools' vocabulary knows) and combines them with a logistic regression fitted on labelled
questions (:mod:`grounded.tune.toolgate`, ``grounded tune toolgate``).

The model is a few numbers in ``toolgate.json``, kept like the checks' models in the model
cache: ``$GROUNDED_MODEL_CACHE/toolgate/<fingerprint>/``, with ``toolgate/ACTIVE`` naming the
one the tool index uses. Scoring is a float64 dot product of fixed features: the same question
on the same tool index and model gives the same probability in every process.

    gate = ToolGate.active()                      # None: no gate trained on this machine
    decision = gate.decide(found.features)        # .relevant, .probability, .threshold
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounded.checks.store import checks_cache, write_pointer
from grounded.errors import ConfigError

__all__ = [
    "FEATURES",
    "GATE_FILE",
    "NO_GATE",
    "GateDecision",
    "RelevanceFeatures",
    "ToolGate",
    "activate_gate",
    "active_gate_dir",
    "fit_logistic",
    "gate_cache",
]

GATE_FILE = "toolgate.json"
NO_GATE = (
    "no tool gate trained on this machine: [tools] min_relevance decides 'no call' (tools.gate = 'auto'); "
    "train one with `grounded tune toolgate --data DIR`"
)


@dataclass(frozen=True, slots=True)
class RelevanceFeatures:
    """What retrieval knows about a question against the tools the caller may use.

    Cosines come from the dense side over the whole allowed pool (not only the fused top k);
    BM25 scores from the lexical side; ``query_terms`` counts the question's distinct stemmed
    words that some tool's text holds (stopwords never count), ``query_words`` its words."""

    similarity_1: float = -1.0
    similarity_2: float = -1.0
    bm25_1: float = 0.0
    bm25_2: float = 0.0
    agree: bool = False
    query_terms: int = 0
    query_words: int = 0
    pool: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def _bm25_share(f: RelevanceFeatures) -> float:
    """The best BM25 score's share of the two best: 1 when one tool alone matches the words."""
    total = f.bm25_1 + f.bm25_2
    return f.bm25_1 / total if total > 0 else 0.0


# The model's inputs, by name (the name list is part of a model's fingerprint: a model trained on
# other features is never read with these). Each is a plain function of RelevanceFeatures.
FEATURES: dict[str, Callable[[RelevanceFeatures], float]] = {
    "similarity": lambda f: f.similarity_1,
    "margin": lambda f: f.similarity_1 - f.similarity_2 if f.similarity_2 > -1 else 0.0,
    "bm25": lambda f: math.log1p(max(f.bm25_1, 0.0)),
    "bm25_per_term": lambda f: f.bm25_1 / f.query_terms if f.query_terms else 0.0,
    "bm25_share": _bm25_share,
    "agree": lambda f: float(f.agree),
    "known_words": lambda f: f.query_terms / f.query_words if f.query_words else 0.0,
}
# Not a feature: the question's length. On BFCL it separates well (irrelevance questions are short, parallel ones
# long) and a gate fitted with it leans on it, but that is the data set's habit, not a sign that a tool fits; without
# it the gate does as well on BFCL's report half (docs/benchmarks.md).


def feature_matrix(rows: Sequence[RelevanceFeatures], names: Sequence[str]) -> np.ndarray:
    """``len(rows) x len(names)`` float64 matrix of the named features."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown tool-gate features {unknown}; known: {sorted(FEATURES)}")
    return np.array([[FEATURES[n](r) for n in names] for r in rows], dtype=np.float64).reshape(len(rows), len(names))


def fit_logistic(
    x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, balanced: bool = True, iterations: int = 50
) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method (IRLS): ``(weights, bias)`` on standardised ``x``.

    ``balanced`` weighs each class to half the total, so the probability reads as if relevant
    and irrelevant questions were equally common (0.5 is then the balanced-accuracy cut). The
    L2 penalty (not on the bias) keeps the few weights finite on separable data. Deterministic:
    no randomness, float64 throughout."""
    n, d = x.shape
    y = y.astype(np.float64)
    positives = float(y.sum())
    if positives in (0.0, float(n)):
        raise ConfigError(f"the tool gate needs both relevant and irrelevant questions; got {int(positives)} of {n}")
    w = np.where(y > 0, n / (2 * positives), n / (2 * (n - positives))) if balanced else np.ones(n)
    design = np.hstack([x, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        gradient = design.T @ (w * (p - y)) + penalty * beta
        hessian = (design * (w * p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.abs(step).max()) < 1e-10:
            break
    return beta[:-1], float(beta[-1])


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The gate's verdict on one question: call a tool (``relevant``) or not, and why."""

    relevant: bool
    probability: float
    threshold: float
    model: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "probability": round(self.probability, 4),
            "threshold": round(self.threshold, 4),
            "relevant": self.relevant,
        }


@dataclass(frozen=True, slots=True)
class ToolGate:
    """A fitted gate: standardisation, weights and bias over :data:`FEATURES` named in ``features``.

    >>> gate = ToolGate.load(path)                                  # doctest: +SKIP
    >>> gate.decide(found.features)                                 # doctest: +SKIP
    GateDecision(relevant=False, probability=0.21, threshold=0.5, model='toolgate 3f2a...')
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    fingerprint: str
    meta: dict[str, Any]

    @classmethod
    def fit(
        cls,
        rows: Sequence[RelevanceFeatures],
        labels: Sequence[bool],
        *,
        features: Sequence[str] = tuple(FEATURES),
        l2: float = 1.0,
        meta: dict[str, Any] | None = None,
    ) -> ToolGate:
        """Fit on ``rows`` (``labels``: a tool fits); the threshold is the balanced cut, 0.5."""
        x = feature_matrix(rows, features)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        weights, bias = fit_logistic((x - mean) / scale, np.array(labels, dtype=bool), l2=l2)
        params = {
            "features": list(features),
            "mean": [round(float(v), 8) for v in mean],
            "scale": [round(float(v), 8) for v in scale],
            "weights": [round(float(v), 8) for v in weights],
            "bias": round(bias, 8),
            "threshold": 0.5,
        }
        fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
        return cls._from(params, fingerprint, dict(meta or {}))

    @classmethod
    def _from(cls, params: dict[str, Any], fingerprint: str, meta: dict[str, Any]) -> ToolGate:
        return cls(
            features=tuple(params["features"]),
            mean=tuple(params["mean"]),
            scale=tuple(params["scale"]),
            weights=tuple(params["weights"]),
            bias=float(params["bias"]),
            threshold=float(params["threshold"]),
            fingerprint=fingerprint,
            meta=meta,
        )

    @classmethod
    def load(cls, directory: Path) -> ToolGate:
        """The gate saved in ``directory`` (a :class:`ConfigError` naming the file if it is not one)."""
        path = Path(directory) / GATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls._from(data["params"], str(data["fingerprint"]), dict(data.get("meta", {})))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path} is not a trained tool gate ({exc}); train one with `grounded tune toolgate`"
            ) from exc

    @classmethod
    def active(cls) -> ToolGate | None:
        """The gate ``toolgate/ACTIVE`` names, or ``None`` when none is trained on this machine."""
        directory = active_gate_dir()
        return cls.load(directory) if directory is not None else None

    def params(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "bias": self.bias,
            "threshold": self.threshold,
        }

    def save(self, *, activate: bool = True) -> Path:
        """Write ``toolgate.json`` into the model cache under its fingerprint (and make it active)."""
        path = gate_cache() / self.fingerprint
        path.mkdir(parents=True, exist_ok=True)
        body = {"fingerprint": self.fingerprint, "params": self.params(), "meta": self.meta}
        tmp = path / f"{GATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path / GATE_FILE)
        if activate:
            write_pointer(gate_cache(), self.fingerprint)
        return path

    @property
    def name(self) -> str:
        return f"toolgate {self.fingerprint}"

    def probabilities(self, rows: Sequence[RelevanceFeatures]) -> np.ndarray:
        """The probability that some tool fits, one per row (float64)."""
        x = (feature_matrix(rows, self.features) - np.array(self.mean)) / np.array(self.scale)
        return np.asarray(1.0 / (1.0 + np.exp(-(x @ np.array(self.weights) + self.bias))), dtype=np.float64)

    def decide(self, features: RelevanceFeatures) -> GateDecision:
        """Call a tool when the probability that one fits reaches the gate's threshold."""
        p = float(self.probabilities([features])[0])
        return GateDecision(p >= self.threshold, p, self.threshold, self.name)


def gate_cache() -> Path:
    """``$GROUNDED_MODEL_CACHE/toolgate`` (default ``~/.cache/grounded/models/toolgate``)."""
    return checks_cache().parent / "toolgate"


def activate_gate(fingerprint: str) -> Path:
    """Make the gate ``fingerprint`` the one tool retrieval uses (atomic replace of ``toolgate/ACTIVE``)."""
    path = gate_cache() / fingerprint
    if not (path / GATE_FILE).is_file():
        raise ConfigError(f"no trained tool gate {fingerprint!r} in {gate_cache()}")
    write_pointer(gate_cache(), fingerprint)
    return path


def active_gate_dir() -> Path | None:
    """The active gate's directory, or ``None`` when none is trained on this machine."""
    pointer = gate_cache() / "ACTIVE"
    fingerprint = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    path = gate_cache() / fingerprint if fingerprint else None
    return path if path is not None and (path / GATE_FILE).is_file() else None
