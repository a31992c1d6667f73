"""The API the verifier and the engine call: :class:`EntailmentChecker` and :class:`AnswerabilityGate`.

>>> checker = EntailmentChecker.load()                        # the active model, int8, one thread
>>> checker.check("The with statement calls __exit__.", [passage_text]).supported   # doctest: +SKIP
True
>>> AnswerabilityGate.load().decide("what does with call on exit?", [passage_text]).answerable  # doctest: +SKIP
True

Both read the evidence window that aligns with their text (:func:`~grounded.checks.text.evidence_window`)
and share one :class:`~grounded.checks.model.CrossEncoder` (``load()`` caches it per process).
Thresholds come from the model's ``checks.json``: chosen on its dev split when it was trained.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grounded.checks.lexical import Combination, claim_features
from grounded.checks.model import CrossEncoder
from grounded.checks.store import active_model_dir
from grounded.checks.text import evidence_window, passage_windows, split_sentences

__all__ = [
    "AnswerabilityGate",
    "EntailmentChecker",
    "GateDecision",
    "SupportScore",
    "gate_score",
    "is_claim",
    "looks_cut_off",
    "response_scores",
    "shared_model",
]

# A sentence ending on one of these words was cut off (by max_tokens or a bad split).
_DANGLING = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "of",
        "when",
        "which",
        "whose",
        "that",
        "is",
        "are",
        "was",
        "were",
        "than",
        "because",
        "whether",
        "if",
        "its",
        "their",
        "his",
        "our",
        "my",
        "your",
        "with",
        "by",
        "from",
        "as",
        "into",
        "such",
    ]
)


_NOT_A_CLAIM = re.compile(
    r"^(?:(?:yes|no|well|so|ok|okay|sure)[,!.]?\s+)?(?:"
    r"i(?:'m| am)? (?:very |so |really |truly )?(?:sorry|afraid)|sorry\b|i apologi[sz]e|unfortunately,? i\b|"
    r"i (?:do not|don't|cannot|can't|can not|could not|couldn't) (?:have|find|provide|help|confirm|answer|say|know)|"
    r"i have no (?:information|details|data)|"
    r"(?:the )?(?:provided |given |available )?(?:documents?|passages?|sources?|context|texts?) (?:do|does|did) not|"
    r"let me know|feel free|(?:i )?hope (?:this|that) helps|thank you|thanks\b|you're welcome|"
    r"hello\b|hi\b|is there anything else)",
    re.IGNORECASE,
)


def is_claim(sentence: str) -> bool:
    """False for sentences that state no fact about the world: questions back to the user,
    refusals ("I do not have specific information about ..."), greetings and offers of help.
    They need no evidence, so the checker does not score them."""
    text = sentence.strip()
    return bool(text) and not text.rstrip("\"')").endswith("?") and not _NOT_A_CLAIM.match(text)


def looks_cut_off(sentence: str) -> bool:
    """True for an obvious fragment: it ends on an article, a conjunction or a dangling preposition,
    or leaves a parenthesis or quotation open. (The model also scores fragments low; this is the
    cheap rule in front of it.)"""
    text = re.sub(r"\s*\[\d+(?:,\s*\d+)*\]\s*$", "", sentence.strip())  # a trailing citation "[1]"
    text = text.rstrip(" .!?;:,")
    last = text.split()[-1].lower() if text.split() else ""
    opened = text.count("(") > text.count(")") or text.count('"') % 2 == 1
    return not text or last in _DANGLING or opened


@functools.cache
def shared_model(directory: str | None = None, quantize: bool = True) -> CrossEncoder:
    """One :class:`CrossEncoder` per (directory, quantization) in this process (the active model by default)."""
    return CrossEncoder(directory or active_model_dir(), quantize=quantize)


@dataclass(frozen=True, slots=True)
class SupportScore:
    """Whether the evidence supports one sentence: its probability, the decision and what was read."""

    probability: float
    supported: bool
    evidence: str
    cut_off: bool


@dataclass(frozen=True, slots=True)
class GateDecision:
    """Whether the top evidence holds an answer to the question."""

    probability: float
    answerable: bool
    evidence: str


class EntailmentChecker:
    """Scores whether cited passages support answer sentences (the verifier's check)."""

    def __init__(self, model: CrossEncoder, *, threshold: float | None = None, combine: bool = True) -> None:
        self.model = model
        # The model's logit combined with lexical features (weights and thresholds fitted on the
        # model's dev split, stored in checks.json) when the model has a combination and
        # ``combine`` is true; the model's probability alone otherwise.
        stored = model.meta.get("combination") if combine else None
        self.combination: Combination | None = Combination.from_json(stored) if stored else None
        thresholds = stored["thresholds"] if stored else model.meta["thresholds"]
        self.threshold = float(thresholds["support"] if threshold is None else threshold)
        self.response_threshold = float(thresholds.get("response", self.threshold))

    @classmethod
    def load(cls, directory: str | Path | None = None) -> EntailmentChecker:
        """The checker of the active model (or of ``directory``), shared in this process."""
        return cls(shared_model(str(directory) if directory else None))

    @property
    def fingerprint(self) -> str:
        """Changes with the model and its quantization: part of the answer cache key."""
        return self.model.fingerprint

    def score(self, sentences: Sequence[str], passages: Sequence[Sequence[str]]) -> np.ndarray:
        """Support probability of each ``sentences[i]`` against its own cited ``passages[i]``
        (fragments score 0)."""
        if len(sentences) != len(passages):
            raise ValueError(
                f"{len(sentences)} sentences but {len(passages)} passage lists; give one list per sentence"
            )
        windows = [evidence_window(s, list(p)) for s, p in zip(sentences, passages, strict=True)]
        scores = _support(self.model, list(sentences), windows, self.combination)
        cut = np.array([looks_cut_off(s) for s in sentences], dtype=bool)
        scores[cut] = 0.0
        return scores

    def check(self, sentence: str, passages: Sequence[str]) -> SupportScore:
        """One sentence against the passages it cites."""
        window = evidence_window(sentence, list(passages))
        cut = looks_cut_off(sentence)
        p = 0.0 if cut else float(_support(self.model, [sentence], [window], self.combination)[0])
        return SupportScore(round(p, 6), p >= self.threshold, window, cut)

    def response_score(self, response: str, passages: Sequence[str]) -> float:
        """A whole response: the lowest support of its sentences (1.0 when it has none)."""
        return float(response_scores(self.model, [(response, tuple(passages))], self.combination)[0])

    def faithful(self, response: str, passages: Sequence[str]) -> bool:
        """Whether every sentence of ``response`` is supported (at the response threshold)."""
        return self.response_score(response, passages) >= self.response_threshold


def _support(
    model: CrossEncoder, sentences: list[str], windows: list[str], combination: Combination | None
) -> np.ndarray:
    """Support of each sentence against its window: the model's probability, or its combination
    with the lexical features of the same window."""
    scores = model.score(sentences, windows, "support")
    if combination is None:
        return scores
    combined = [
        combination.probability(float(p), claim_features(s, [w]))
        for p, s, w in zip(scores, sentences, windows, strict=True)
    ]
    return np.asarray(combined, dtype=np.float32)


def response_scores(
    model: CrossEncoder,
    responses: Sequence[tuple[str, Sequence[str]]],
    combination: Combination | None = None,
) -> np.ndarray:
    """Min over each response's claims (:func:`is_claim`) of their support probability (one
    model call per claim, combined with the lexical features when ``combination`` is given;
    1.0 for a response that makes no claim); a fragment scores 0."""
    out = np.ones(len(responses), dtype=np.float32)
    for i, (text, passages) in enumerate(responses):
        sentences = [s for s in split_sentences(text) if is_claim(s)]
        if not sentences:
            continue
        windows = [evidence_window(s, list(passages)) for s in sentences]
        scores = _support(model, sentences, windows, combination)
        scores[np.array([looks_cut_off(s) for s in sentences], dtype=bool)] = 0.0
        out[i] = float(scores.min())
    return out


class AnswerabilityGate:
    """Decides from a question and its top evidence whether the sources hold an answer
    (replaces the single similarity threshold ``answer.min_evidence_similarity``)."""

    def __init__(self, model: CrossEncoder, *, threshold: float | None = None) -> None:
        self.model = model
        self.threshold = float(model.meta["thresholds"]["answerable"] if threshold is None else threshold)

    @classmethod
    def load(cls, directory: str | Path | None = None) -> AnswerabilityGate:
        """The gate of the active model (or of ``directory``), sharing the checker's model."""
        return cls(shared_model(str(directory) if directory else None))

    @property
    def fingerprint(self) -> str:
        return self.model.fingerprint

    def probability(self, question: str, passages: Sequence[str]) -> float:
        """Probability that ``passages`` (the top evidence, best first) answer ``question``."""
        return self.decide(question, passages).probability

    def decide(self, question: str, passages: Sequence[str]) -> GateDecision:
        """The gate's decision on ``question``: the best of its scores against each window of
        ``passages`` (:func:`~grounded.checks.text.passage_windows`, at most 12 windows: pass the
        top passages, best first), with the window that scored best."""
        p, window = gate_score(self.model, question, passages)
        return GateDecision(round(p, 6), p >= self.threshold, window)


def gate_score(model: CrossEncoder, question: str, passages: Sequence[str]) -> tuple[float, str]:
    """``(probability, window)``: the highest answerable probability over the passages' windows."""
    windows = passage_windows(list(passages)) or [""]
    scores = model.score([question] * len(windows), windows, "answerable")
    best = int(np.argmax(scores))
    return float(scores[best]), windows[best]
