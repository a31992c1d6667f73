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

from grounded.checks.lexical import Combination, claim_features, logit, question_features
from grounded.checks.model import CrossEncoder
from grounded.checks.store import active_model_dir
from grounded.checks.text import evidence_window, passage_windows, split_sentences

__all__ = [
    "AGGREGATIONS",
    "AnswerabilityGate",
    "EntailmentChecker",
    "GateDecision",
    "SupportScore",
    "aggregate",
    "as_plain_text",
    "claim_scores",
    "claims_of",
    "gate_score",
    "is_claim",
    "is_scaffolding",
    "looks_cut_off",
    "looks_like_prose",
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


_LIST_MARKER = re.compile(r"(?:^|\s)(?:\d{1,2}|[a-z])[.)]$")


def is_scaffolding(sentence: str) -> bool:
    """True for the scaffolding of a list: a marker split off as a sentence of its own ("2."), a heading or
    a line that introduces what follows ("Here are some tips:", "FICO Score:", "... include: 1."). It
    asserts nothing a passage could support, so a whole response's verdict does not score it (scored, such
    lines sank a faithful list answer to its lowest claim)."""
    text = re.sub(r"\s*\[\d+(?:,\s*\d+)*\]\s*$", "", sentence.strip())  # a trailing citation "[1]"
    text = _LIST_MARKER.sub("", text).strip(" *#-")
    return not re.search(r"[A-Za-z]", text) or text.endswith(":")


_MARKDOWN = re.compile(r"\*\*|__|`")
_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s+")


def as_plain_text(sentence: str) -> str:
    """``sentence`` without markdown emphasis or code marks and without a leading list marker, as the
    checker reads it: "1. **Initiate the Case**: A case ..." is read "Initiate the Case: A case ...".
    The model never saw markdown in training, and the marker's number counted as a number no passage
    holds (a lexical feature of a swapped figure)."""
    return " ".join(_ITEM.sub("", _MARKDOWN.sub("", sentence)).split())


def claims_of(response: str) -> list[str]:
    """The sentences of ``response`` a verdict on the whole checks: claims (:func:`is_claim`), not the
    scaffolding of a list (:func:`is_scaffolding`)."""
    return [s for s in split_sentences(response) if is_claim(s) and not is_scaffolding(s)]


def looks_cut_off(sentence: str) -> bool:
    """True for an obvious fragment: it ends on an article, a conjunction or a dangling preposition,
    or leaves a parenthesis or quotation open. (The model also scores fragments low; this is the
    cheap rule in front of it.)"""
    text = re.sub(r"\s*\[\d+(?:,\s*\d+)*\]\s*$", "", sentence.strip())  # a trailing citation "[1]"
    text = text.rstrip(" .!?;:,")
    last = text.split()[-1].lower() if text.split() else ""
    opened = text.count("(") > text.count(")") or text.count('"') % 2 == 1
    return not text or last in _DANGLING or opened


_MARKUP = re.compile(
    r"\*{3,}|={3,}|-{3,}|~{3,}|\^{3,}|#{3,}|::=|^\s*(?:>>>|\$ |def |class |return\b)"
    # A statement: an import, or statements joined by ";" ('import pdb; pdb.Pdb(...).set_trace()').
    r"|^\s*(?:import|from)\s+[\w.]+(?:\s+import\b|\s*;|\s*$)|[\w)\]]\s*;\s*[\w.]+\s*[(=.]"
)


# A line that introduces what follows once its colon or its code is gone: "... is equivalent to", "For example,
# the following code", "... as follows" (quoted as answers in the demo when the sentence split dropped the code).
_INTRO = re.compile(
    r"(?:\b(?:equivalent|equal|identical|similar|corresponds?|translates?|expands?) to|\bthe following(?: \w+)?"
    r"|\bas follows)\W*$",
    re.IGNORECASE,
)


def looks_like_prose(sentence: str, *, min_words: int = 3) -> bool:
    """False for what is not a sentence a reader can be told: a heading and its underline
    (``Lambdas *******``), grammar or code (``lambda_expr ::= ...``, ``def <lambda>(parameters):``,
    ``import pdb; pdb.Pdb(skip=['django.*']).set_trace()``), a
    line that only introduces what follows (ends with ``:``, or with "is equivalent to", "the following
    code", "as follows" once the code after it is gone), fewer than ``min_words`` words, or more
    symbols than letters. Such text is never kept as an answer sentence nor quoted as one."""
    text = re.sub(r"\s*\[\d+(?:,\s*\d+)*\]\s*$", "", sentence.strip())  # a trailing citation "[1]"
    if not text or _MARKUP.search(text) or text.rstrip().endswith(":") or _INTRO.search(text):
        return False
    if len(re.findall(r"[A-Za-z]{2,}", text)) < min_words:
        return False
    letters = sum(c.isalpha() for c in text)
    visible = sum(not c.isspace() for c in text)
    return letters >= 0.6 * visible


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
        self.aggregation = str(stored.get("aggregation", "min")) if stored else "min"
        """How a whole response's claim scores are aggregated (:data:`AGGREGATIONS`), chosen on dev responses."""

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
        # A whole sentence of a cited passage, copied, is supported whatever the score: the threshold
        # leans towards rejecting (calibration v4), and a quote is what a rejected sentence becomes.
        return SupportScore(
            round(p, 6), not cut and (p >= self.threshold or is_verbatim(sentence, passages)), window, cut
        )

    def response_score(self, response: str, passages: Sequence[str]) -> float:
        """A whole response: its claims' support aggregated as the model's calibration chose
        (:attr:`aggregation`: the lowest, or the mean; 1.0 when it makes no claim)."""
        scores = claim_scores(self.model, [(response, tuple(passages))], self.combination)[0]
        return aggregate(scores, self.aggregation)

    def faithful(self, response: str, passages: Sequence[str]) -> bool:
        """Whether ``response`` is supported as a whole (its score at the response threshold)."""
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


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def is_verbatim(sentence: str, passages: Sequence[str]) -> bool:
    """Whether ``sentence`` is one whole sentence of one of ``passages`` (case and spacing aside)."""
    target = _normal(sentence)
    return any(_normal(s) == target for passage in passages for s in split_sentences(passage))


AGGREGATIONS = ("min", "mean")
"""How a response's claim scores become its score: ``min`` (every claim must hold) or ``mean`` (the share
of the response that holds; several unsupported sentences weigh more than one). Chosen per model on its
dev responses (:func:`~grounded.checks.train.calibrate`)."""


def aggregate(scores: np.ndarray, how: str = "min") -> float:
    """A response's score from its claims' scores (1.0 for a response that makes no claim)."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation {how!r} is not one of {AGGREGATIONS}")
    if not len(scores):
        return 1.0
    return float(scores.min() if how == "min" else scores.mean())


def _claim_windows(sentence: str, passages: Sequence[str]) -> list[str]:
    """The windows a claim of a whole response is read against: its window over all ``passages`` and its window
    in each one alone. A response's passages are several long documents (MT-RAG: 1-7 of about 260 words): a
    window picked across all of them mixes sentences of several and often leaves out the one passage that
    states the claim; read alone, that passage gets the whole window. (The answer path scores a sentence
    against the passages it cites, usually one: :meth:`EntailmentChecker.score`.)"""
    windows = [evidence_window(sentence, list(passages))]
    if len(passages) > 1:
        windows += [w for w in (evidence_window(sentence, [p]) for p in passages) if w not in windows]
    return windows


def _best_support(
    model: CrossEncoder, sentence: str, passages: Sequence[str], combination: Combination | None
) -> float:
    """A claim of a whole response against passages it does not cite: the best of its windows
    (:func:`_claim_windows`)."""
    windows = _claim_windows(sentence, passages)
    return float(_support(model, [sentence] * len(windows), windows, combination).max())


def claim_scores(
    model: CrossEncoder,
    responses: Sequence[tuple[str, Sequence[str]]],
    combination: Combination | None = None,
) -> list[np.ndarray]:
    """Each response's claims (:func:`claims_of`), read as plain text (:func:`as_plain_text`), scored
    against its passages (the best of their windows, :func:`_best_support`), combined with the lexical
    features when ``combination`` is given; a fragment scores 0. Every claim's windows of one response go
    to the model in one call (it scores one pair at a time, so the scores are those of a call per claim)."""
    out: list[np.ndarray] = []
    for text, passages in responses:
        sentences = claims_of(text)
        if not sentences:
            out.append(np.zeros(0, dtype=np.float32))
            continue
        claims: list[str] = []
        windows: list[str] = []
        owner: list[int] = []
        for n, s in enumerate(sentences):
            plain = as_plain_text(s)
            for w in _claim_windows(plain, passages):
                claims.append(plain)
                windows.append(w)
                owner.append(n)
        pair_scores = _support(model, claims, windows, combination)
        scores = np.full(len(sentences), -np.inf, dtype=np.float32)
        np.maximum.at(scores, np.asarray(owner), pair_scores)
        scores[np.array([looks_cut_off(s) for s in sentences], dtype=bool)] = 0.0
        out.append(scores)
    return out


def response_scores(
    model: CrossEncoder,
    responses: Sequence[tuple[str, Sequence[str]]],
    combination: Combination | None = None,
    aggregation: str = "min",
) -> np.ndarray:
    """Each response's score: its claims' scores (:func:`claim_scores`) aggregated (:func:`aggregate`)."""
    scores = claim_scores(model, responses, combination)
    return np.asarray([aggregate(s, aggregation) for s in scores], dtype=np.float32)


class AnswerabilityGate:
    """Decides from a question and its top evidence whether the sources hold an answer
    (replaces the single similarity threshold ``answer.min_evidence_similarity``).

    The model's probability (best window) is combined with two lexical features of the question
    against all the passages (:func:`~grounded.checks.lexical.question_features`) when the model's
    calibration has a gate combination and ``combine`` is true; ``threshold`` is the combination's
    (chosen on dev questions); :attr:`relevance_threshold` is for one sentence alone, chosen with the
    gate on the dev questions (:mod:`grounded.checks.relevance`)."""

    def __init__(
        self,
        model: CrossEncoder,
        *,
        threshold: float | None = None,
        relevance_threshold: float | None = None,
        combine: bool = True,
    ) -> None:
        self.model = model
        calibration = model.meta.get("combination") or {}
        stored = calibration.get("gate") if combine else None
        self.combination: Combination | None = Combination.from_json(stored) if stored else None
        # The model alone: the calibration's threshold (chosen again whenever its dev questions change)
        # over the training run's.
        thresholds = calibration.get("thresholds", {})
        alone = thresholds.get("answerable", model.meta["thresholds"]["answerable"])
        # One sentence scores lower than a window: its own threshold, chosen with the gate on whole
        # questions (grounded.checks.relevance), where the calibration has one.
        sentence = thresholds.get("relevance", alone)
        self.relevance_threshold = float(sentence if relevance_threshold is None else relevance_threshold)
        """Does one sentence answer the question: the model's score of it alone (no lexical features)."""
        chosen = stored["threshold"] if stored else alone
        self.threshold = float(chosen if threshold is None else threshold)
        decision = calibration.get("decision") if combine else None
        self.decision: Combination | None = Combination.from_json(decision) if decision else None
        """The answer decision (:mod:`grounded.checks.relevance`): the gate's probability, the best one-sentence
        relevance and the evidence similarity in one score, where the calibration has one; it then decides
        whether to answer instead of :attr:`threshold` and :attr:`relevance_threshold` in a row."""
        self.decision_threshold = float(decision["threshold"]) if decision else float("nan")
        self.decision_floor = float(decision.get("floor", 0.0)) if decision else float("nan")
        """The least relevance the best candidate sentence must reach for the decision to answer (calibration
        v7, :func:`~grounded.checks.relevance.choose_answer_floor`; 0 in a v6 calibration)."""

    def answers(self, gate: float, relevance: float, similarity: float) -> tuple[float, bool]:
        """``(probability, answer?)`` of the answer decision on a question whose gate probability (with its
        lexical features, :meth:`decide`), best one-sentence relevance among the candidate sentences and
        their evidence similarity are given; without a decision, the two thresholds in a row."""
        if self.decision is None:
            return gate, gate >= self.threshold and relevance >= self.relevance_threshold
        p = self.decision.probability(gate, (logit(relevance), similarity))
        return p, p >= self.decision_threshold and relevance >= self.decision_floor

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
        top passages, best first), with the window that scored best, combined with the question's
        lexical features when the gate has a combination."""
        p, window = gate_score(self.model, question, passages)
        if self.combination is not None:
            p = self.combination.probability(p, question_features(question, passages))
        return GateDecision(round(p, 6), p >= self.threshold, window)

    def relevance(self, question: str, sentence: str) -> float:
        """The model's probability that ``sentence`` alone answers ``question`` (compare with
        :attr:`relevance_threshold`): a true sentence beside the question scores low."""
        return gate_score(self.model, question, [sentence])[0]


def gate_score(model: CrossEncoder, question: str, passages: Sequence[str]) -> tuple[float, str]:
    """``(probability, window)``: the highest answerable probability over the passages' windows."""
    windows = passage_windows(list(passages)) or [""]
    scores = model.score([question] * len(windows), windows, "answerable")
    best = int(np.argmax(scores))
    return float(scores[best]), windows[best]
