"""The trained answerability model: three logistic heads over :class:`TurnFeatures`.

The rules of :mod:`grounded.answering.answerability` see one signal each (an unresolved
demonstrative; a name or number missing from the evidence) and miss most real cases: on
MTRAG-UN they found 0% of the partial turns and 20% of the underspecified ones. This model reads
every signal of the turn, its shape and its evidence (:mod:`grounded.answering.turn_features`)
and decides three questions, all before anything is written:

* ``underspecified``: does the turn point at something it never pins down ("the park", "this
  library", "her")? Then the engine asks one clarifying question.
* ``unanswerable``: do the passages retrieved for it hold none of what it asks (a question about
  the collection's topic that no passage answers)? Then the engine abstains without writing.
* ``partial``: do the passages hold only part of what it asks? Then the engine writes what they
  hold even where the answerability gate, which asks whether they hold *the* answer, would
  refuse, and the answer says what the sources lack.

Models trained before the ``unanswerable`` head (recipe ``answerability-v1``) load without it.

Each head is a logistic regression on standardised features, fitted with balanced class weights
(``grounded tune answerability``, :mod:`grounded.tune.answerability`); the thresholds were chosen
together on out-of-fold probabilities of the training conversations, never on the conversations it
reports. The model is a few numbers in
``answerability.json`` in the model cache, ``$GROUNDED_MODEL_CACHE/answerability/<fingerprint>/``,
with ``answerability/ACTIVE`` naming the one the engine uses (``answer.answerability``). Scoring
is a float64 dot product, the same in every process.

    model = AnswerabilityModel.active()       # None: none trained on this machine (the rules decide)
    model.decide("partial", features)         # HeadDecision(yes=..., probability=..., threshold=...)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grounded.answering.turn_features import TurnFeatures
from grounded.checks.store import checks_cache, write_pointer
from grounded.errors import ConfigError
from grounded.tools.gate import fit_logistic

__all__ = [
    "FEATURE_NAMES",
    "MODEL_FILE",
    "AnswerabilityModel",
    "Head",
    "HeadDecision",
    "HeadName",
    "active_model_dir",
    "answerability_cache",
]

MODEL_FILE = "answerability.json"
HeadName = Literal["underspecified", "partial", "unanswerable"]
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TurnFeatures))


@dataclass(frozen=True, slots=True)
class HeadDecision:
    """One head's verdict: ``yes`` when ``probability`` reaches ``threshold``."""

    head: str
    yes: bool
    probability: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {"head": self.head, "yes": self.yes, "probability": round(self.probability, 4),
                "threshold": round(self.threshold, 4)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Head:
    """A fitted logistic head: standardisation, weights and bias over named features, a threshold."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float = 0.5

    @classmethod
    def fit(cls, rows: Sequence[TurnFeatures], labels: Sequence[bool], features: Sequence[str], *, l2: float) -> Head:
        """Fit on ``rows`` with balanced class weights (so 0.5 is the balanced cut until a threshold is chosen)."""
        unknown = [n for n in features if n not in FEATURE_NAMES]
        if unknown:
            raise ConfigError(f"unknown answerability features {unknown}; known: {list(FEATURE_NAMES)}")
        x = _matrix(rows, features)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        weights, bias = fit_logistic((x - mean) / scale, np.array(labels, dtype=bool), l2=l2)
        return cls(
            tuple(features),
            tuple(round(float(v), 8) for v in mean),
            tuple(round(float(v), 8) for v in scale),
            tuple(round(float(v), 8) for v in weights),
            round(bias, 8),
        )

    def probabilities(self, rows: Sequence[TurnFeatures]) -> np.ndarray:
        x = (_matrix(rows, self.features) - np.array(self.mean)) / np.array(self.scale)
        return np.asarray(1.0 / (1.0 + np.exp(-(x @ np.array(self.weights) + self.bias))), dtype=np.float64)

    def with_threshold(self, threshold: float) -> Head:
        return Head(self.features, self.mean, self.scale, self.weights, self.bias, round(float(threshold), 6))


def _matrix(rows: Sequence[TurnFeatures], names: Sequence[str]) -> np.ndarray:
    return np.array([[float(getattr(r, n)) for n in names] for r in rows], dtype=np.float64).reshape(
        len(rows), len(names)
    )


@dataclass(frozen=True, slots=True)
class AnswerabilityModel:
    """The heads, the model's fingerprint (recipe + training data) and its training figures."""

    underspecified: Head
    partial: Head
    fingerprint: str
    meta: dict[str, Any]
    unanswerable: Head | None = None
    """``None`` in a model of the first recipe (two heads): the gate alone decides abstention."""

    @property
    def name(self) -> str:
        return f"answerability {self.fingerprint}"

    def has(self, head: HeadName) -> bool:
        """Whether this model has ``head`` (a first-recipe model has no ``unanswerable`` head)."""
        return getattr(self, head) is not None

    def decide(self, head: HeadName, features: TurnFeatures) -> HeadDecision:
        """Whether ``features`` is ``head`` by that head's threshold (a :class:`ConfigError` if the model lacks it)."""
        fitted: Head | None = getattr(self, head)
        if fitted is None:
            raise ConfigError(f"answerability model {self.fingerprint} has no {head!r} head; retrain it")
        p = float(fitted.probabilities([features])[0])
        return HeadDecision(head, p >= fitted.threshold, p, fitted.threshold)

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "heads": {
                "underspecified": asdict(self.underspecified),
                "partial": asdict(self.partial),
                **({"unanswerable": asdict(self.unanswerable)} if self.unanswerable is not None else {}),
            },
            "meta": self.meta,
        }

    def save(self, *, activate: bool = True) -> Path:
        """Write ``answerability.json`` into the model cache under the fingerprint (and make it active)."""
        path = answerability_cache() / self.fingerprint
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f"{MODEL_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path / MODEL_FILE)
        if activate:
            write_pointer(answerability_cache(), self.fingerprint)
        return path

    @classmethod
    def load(cls, directory: Path) -> AnswerabilityModel:
        """The model saved in ``directory`` (a :class:`ConfigError` naming the file if it is not one)."""
        path = Path(directory) / MODEL_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            heads = {k: _head(v) for k, v in data["heads"].items()}
            return cls(
                heads["underspecified"], heads["partial"], str(data["fingerprint"]), dict(data.get("meta", {})),
                heads.get("unanswerable"),
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path} is not a trained answerability model ({exc}); train one with "
                "`grounded tune answerability --data DIR`"
            ) from exc

    @classmethod
    def active(cls) -> AnswerabilityModel | None:
        """The model ``answerability/ACTIVE`` names, or ``None`` when none is trained on this machine."""
        directory = active_model_dir()
        return cls.load(directory) if directory is not None else None


def _head(data: dict[str, Any]) -> Head:
    return Head(
        tuple(data["features"]), tuple(data["mean"]), tuple(data["scale"]), tuple(data["weights"]),
        float(data["bias"]), float(data["threshold"]),
    )  # fmt: skip


def answerability_cache() -> Path:
    """``$GROUNDED_MODEL_CACHE/answerability`` (default ``~/.cache/grounded/models/answerability``)."""
    return checks_cache().parent / "answerability"


def active_model_dir() -> Path | None:
    """The active model's directory, or ``None`` when none is trained on this machine."""
    pointer = answerability_cache() / "ACTIVE"
    fingerprint = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    path = answerability_cache() / fingerprint if fingerprint else None
    return path if path is not None and (path / MODEL_FILE).is_file() else None
