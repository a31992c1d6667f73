"""The trained checks in the answer path: the answerability gate and the entailment-checked verifier.

``answer.checks`` decides what the engine trusts (:func:`load_checks`):

* ``model``: the trained cross-encoder of :mod:`grounded.checks` (``grounded tune checker``):
  the **gate** decides from the question and the top passages whether to write at all
  (instead of ``answer.min_evidence_similarity``), and :func:`verify_checked` keeps a drafted
  sentence only when the **checker** says its cited passages support it;
* ``lexical``: word overlap and embedding similarity only (:mod:`grounded.answering.verify`);
* ``auto`` (default): ``model`` when a model is trained, else ``lexical``, and every answer says
  so (``trace.checks.warning``; ``grounded ask`` prints it).

:func:`verify_checked`, sentence by sentence, in order:

1. a sentence that states no fact (a refusal, a question back, an offer of help) is dropped;
2. a fragment is dropped: it ends on a function word or leaves a bracket open
   (:func:`~grounded.checks.looks_cut_off`), or it is the last sentence of a draft that
   ``max_new_tokens`` cut off and it does not end on ``.``, ``!`` or ``?``; so is what is no
   sentence at all: a heading, code or grammar copied from the evidence, a list's intro
   (:func:`~grounded.checks.looks_like_prose`);
3. cheap lexical pre-filter: a number or name missing from the cited passages, or fewer than
   :data:`PREFILTER_WORD_SUPPORT` of its content words in them, fails without running the model;
4. the checker scores it against its cited passages (an uncited sentence: against each passage,
   the best one becomes its citation); it is kept when the score reaches the model's threshold;
5. an unsupported sentence is replaced by the evidence sentence closest to it and the question,
   quoted verbatim, when that sentence is prose (:func:`is_quotable`) and the gate says it
   addresses the question; else dropped.

Relevance (``answer.relevance``): the gate scores each kept sentence alone against the question
(does this sentence answer it?). ``answer`` (default) abstains unless one kept sentence does, so a
true sentence beside the question ("Operators in the same box have the same precedence.") is no
answer on its own; ``sentence`` drops every sentence that does not.

The answer decision (calibration v6, :mod:`grounded.checks.relevance`): where the gate's model has one,
whether to answer is one score over the gate's probability, the best one-sentence relevance among the
quotable sentences closest to the question and their evidence similarity (:func:`gate_evidence`), decided
before writing; a question it lets through is answered, by the evidence sentence that best answers it
when no drafted sentence does, quoted first. The decision asks the best candidate's relevance to reach a floor
chosen with it on the dev questions (calibration v7), and so does the answer: without a sentence that reaches
it (a drafted one, or the quote), it abstains.

Every finding is returned (:class:`SentenceFinding`) for the trace and ``grounded ask --explain``.
All model calls score one pair at a time in a fixed order: the same draft gives the same answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from grounded.answering.evidence import EvidencePool
from grounded.answering.types import AnswerSentence
from grounded.answering.verify import SupportCheck, best_quote, check_support, is_quotable
from grounded.checks import AnswerabilityGate, EntailmentChecker, is_claim, looks_cut_off, looks_like_prose
from grounded.checks.lexical import logit
from grounded.checks.relevance import CANDIDATES, candidate_similarity
from grounded.config import AnswerSettings
from grounded.errors import ConfigError
from grounded.experts.embedding import SentenceEmbedder
from grounded.text import STOPWORDS, content_terms

__all__ = [
    "FALLBACK",
    "PREFILTER_WORD_SUPPORT",
    "Checks",
    "GateFinding",
    "SentenceFinding",
    "answer_candidates",
    "best_answering_quote",
    "gate_evidence",
    "is_fragment",
    "load_checks",
    "missing_terms",
    "quote_weight",
    "verify_checked",
]

log = logging.getLogger("grounded.answering")

PREFILTER_WORD_SUPPORT = 0.5
"""Below this share of its content words in the cited passages a sentence fails before the model runs."""

NO_MODEL_WARNING = (
    "no trained entailment checker: answers are checked by word overlap only and abstention is a similarity "
    "threshold; run `grounded tune checker` (minutes) for the trained checks"
)

_END = re.compile(r"[.!?][\"')\]]*$")


@dataclass(frozen=True, slots=True)
class Checks:
    """What decides trust for one engine: the trained checker and gate, or none (lexical)."""

    checker: EntailmentChecker | None
    gate: AnswerabilityGate | None
    warning: str = ""

    @property
    def mode(self) -> str:
        return "model" if self.checker is not None else "lexical"

    @property
    def fingerprint(self) -> str:
        return self.checker.fingerprint if self.checker is not None else "lexical"

    def describe(self) -> dict[str, object]:
        """The ``trace.checks`` header: mode, model, thresholds, warning."""
        out: dict[str, object] = {"mode": self.mode}
        if self.checker is not None and self.gate is not None:
            out |= {
                "model": self.checker.fingerprint,
                "support_threshold": round(self.checker.threshold, 6),
                "gate_threshold": round(self.gate.threshold, 6),
                "relevance_threshold": round(self.gate.relevance_threshold, 6),
            }
        if self.warning:
            out["warning"] = self.warning
        return out


def load_checks(setting: str) -> Checks:
    """The checks ``answer.checks`` asks for (see the module docstring); ``model`` without a
    trained model raises :class:`~grounded.errors.ConfigError` saying how to train one."""
    if setting == "lexical":
        return Checks(None, None)
    try:
        checker = EntailmentChecker.load()
    except ConfigError:
        if setting == "model":
            raise
        log.warning(NO_MODEL_WARNING)
        return Checks(None, None, NO_MODEL_WARNING)
    return Checks(checker, AnswerabilityGate(checker.model))


@dataclass(frozen=True, slots=True)
class GateFinding:
    """The gate's decision on a question and its top passages: with an answer decision (the gate's model has
    one, :attr:`~grounded.checks.AnswerabilityGate.decision`) ``probability`` and ``threshold`` are the
    decision's, and its inputs are given."""

    probability: float
    answerable: bool
    threshold: float
    window: float | None = None
    """The gate's own probability (best window, with its lexical features), when a decision weighed it."""
    relevance: float | None = None
    """The best one-sentence relevance among the candidate sentences, when a decision weighed it."""
    similarity: float | None = None
    """The candidates' evidence similarity (:func:`~grounded.checks.relevance.candidate_similarity`)."""

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def gate_evidence(
    gate: AnswerabilityGate,
    question: str,
    passages: Sequence[str],
    pool: EvidencePool | None = None,
    embedder: SentenceEmbedder | None = None,
) -> GateFinding:
    """Whether ``passages`` (the retrieved ones, best first) hold an answer to ``question``: the gate's
    decision, or, when its model has an answer decision and the evidence ``pool`` and ``embedder`` are
    given, the decision over the gate's probability, the best one-sentence relevance among the
    :data:`~grounded.checks.relevance.CANDIDATES` quotable sentences closest to the question, and their
    evidence similarity (:mod:`grounded.checks.relevance`, fitted on real dev questions)."""
    decision = gate.decide(question, passages)
    if gate.decision is None or pool is None or embedder is None:
        return GateFinding(decision.probability, decision.answerable, round(gate.threshold, 6))
    candidates = answer_candidates(question, pool, gate)
    relevance = max((r for _, r in candidates), default=0.0)
    similarity = candidate_similarity(embedder, question, [pool.sentence(i) for i, _ in candidates])
    p, yes = gate.answers(decision.probability, relevance, similarity)
    return GateFinding(
        round(p, 6), yes, round(gate.decision_threshold, 6), decision.probability, round(relevance, 6),
        round(similarity, 6),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SentenceFinding:
    """What the verifier found for one drafted sentence, and what it did with it."""

    text: str
    citations: tuple[int, ...]
    decision: str
    """``kept``, ``quoted`` (replaced by the evidence sentence ``replacement``), or ``dropped: <why>``."""
    support: float | None = None
    """The checker's probability that the cited passages support the sentence (None: not scored)."""
    relevance: float | None = None
    """The gate's probability that the sentence (or its quote) answers the question."""
    word_support: float = 0.0
    replacement: str = ""

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


def verify_checked(
    question: str,
    generated: Sequence[tuple[str, tuple[int, ...]]],
    pool: EvidencePool,
    embedder: SentenceEmbedder,
    settings: AnswerSettings,
    checks: Checks,
    *,
    truncated: bool = False,
) -> tuple[list[AnswerSentence], list[SentenceFinding]]:
    """The kept sentences and a finding per drafted sentence (see the module docstring).

    ``truncated``: the writer stopped at ``max_new_tokens``, so its last sentence may be cut.
    An empty list of sentences means abstain.
    """
    checker, gate = checks.checker, checks.gate
    if checker is None or gate is None:
        raise ValueError("verify_checked needs the trained checks (answer.checks = model)")
    decided = gate.decision is not None
    if not pool.owners or (not generated and not decided):
        return [], []
    vectors = embedder.embed([text for text, _ in generated]) if generated else np.zeros((0, 1), np.float32)
    texts = {c.id: c.text for c in pool.citations}
    all_ids = [c.id for c in pool.citations]
    kept: list[tuple[AnswerSentence, float]] = []
    findings: list[SentenceFinding] = []
    seen: set[str] = set()
    quoted: set[int] = set()

    def relevance(sentence: str) -> float:
        return round(gate.relevance(question, sentence), 6)

    addresses = gate.relevance_threshold

    for n, ((text, ids), vector) in enumerate(zip(generated, vectors, strict=True)):
        if len(kept) >= settings.max_sentences:
            break
        if not is_claim(text):
            findings.append(SentenceFinding(text, ids, "dropped: states no fact"))
            continue
        if is_fragment(text, n, len(generated), truncated):
            findings.append(SentenceFinding(text, ids, "dropped: cut off"))
            continue
        if not looks_like_prose(text):
            findings.append(SentenceFinding(text, ids, "dropped: not a sentence (a heading, code or a list intro)"))
            continue
        candidates = [ids] if ids else [(cid,) for cid in all_ids]
        best: tuple[float, tuple[int, ...], SupportCheck] | None = None
        for cited in candidates:
            lexical = check_support(text, vector, cited, pool, settings)
            if lexical.missing or lexical.word_support < PREFILTER_WORD_SUPPORT:
                p = 0.0
            else:
                p = float(checker.score([text], [[texts[c] for c in cited]])[0])
            if best is None or p > best[0]:
                best = (p, cited, lexical)
        assert best is not None
        p, cited, lexical = best
        key = " ".join(sorted(content_terms(text)))
        if p >= checker.threshold:
            if key in seen:
                findings.append(
                    SentenceFinding(text, cited, "dropped: repeats", round(p, 4), None, lexical.word_support)
                )
                continue
            r = relevance(text)  # scored under every policy: --explain and the trace show it
            if settings.relevance == "sentence" and r < addresses:
                findings.append(
                    SentenceFinding(text, cited, "dropped: does not address the question", round(p, 4), round(r, 4),
                                    lexical.word_support)
                )  # fmt: skip
                continue
            seen.add(key)
            kept.append((AnswerSentence(text, cited, quoted=False, support=round(p, 4)), r))
            findings.append(SentenceFinding(text, cited, "kept", round(p, 4), round(r, 4), lexical.word_support))
            continue
        # Unsupported: the evidence sentence closest to it and to the question, if that answers the question.
        # A heading ('The "return" statement ****'), code or a fragment is never quoted as an answer.
        best_i = best_quote(pool, pool.vectors @ vector + pool.question_similarity)
        i = -1 if best_i is None else best_i
        quote = pool.sentence(i) if best_i is not None else ""
        quote_key = " ".join(sorted(content_terms(quote)))
        quotable = best_i is not None and i not in quoted and quote_key not in seen
        rq = relevance(quote) if quotable else None
        if rq is not None and rq >= addresses:
            quoted.add(i)
            seen.add(quote_key)
            kept.append((AnswerSentence(quote, (pool.owners[i],), quoted=True, support=1.0), rq))
            findings.append(
                SentenceFinding(text, cited, "quoted", round(p, 4), round(rq, 4), lexical.word_support, quote)
            )
        else:
            why = (
                "unsupported"
                if not lexical.missing
                else f"unsupported ({', '.join(lexical.missing)} not in the source)"
            )
            findings.append(
                SentenceFinding(text, cited, f"dropped: {why}", round(p, 4), _round(rq), lexical.word_support)
            )
    # With an answer decision, the gate has already weighed the best candidate sentence's relevance with the
    # evidence: a question it lets through is answered, by the best answering sentence if no drafted one does
    # (also when there is no draft: the writer declined).
    if not any(r >= addresses for _, r in kept) and settings.relevance != "off":
        # No drafted sentence answers the question (all dropped, or none addresses it), though the gate let
        # the question through: the evidence sentence that best answers it, quoted verbatim, if one does.
        floor = gate.decision_floor if decided else None
        fallback = best_answering_quote(question, pool, gate, exclude=quoted, seen=seen, threshold=floor)
        if fallback is not None:
            # The sentence that answers leads; what the writer drafted beside the question follows it.
            i, r = fallback
            lead = AnswerSentence(pool.sentence(i), (pool.owners[i],), quoted=True, support=1.0)
            kept = [(lead, r), *kept[: settings.max_sentences - 1]]
            findings.append(SentenceFinding(pool.sentence(i), (pool.owners[i],), FALLBACK, None, round(r, 4), 1.0))
    # Without an answer decision: some kept sentence must address the question (the relevance threshold); with
    # one, some kept sentence must reach the decision's floor (the least relevance of an answer, calibration v7).
    least = gate.decision_floor if decided else addresses
    if settings.relevance == "answer" and kept and max(r for _, r in kept) < least:
        # Every kept sentence is true of its source, but none answers the question: no answer.
        findings = [
            replace_decision(f, "dropped: no kept sentence addresses the question")
            if f.decision in ("kept", "quoted")
            else f
            for f in findings
        ]
        return [], findings
    return [s for s, _ in kept], findings


FALLBACK = "quoted: the evidence sentence that best answers the question"
"""The decision of :func:`best_answering_quote`'s sentence, when no drafted sentence answered."""


def answer_candidates(
    question: str,
    pool: EvidencePool,
    gate: AnswerabilityGate,
    *,
    exclude: set[int] = set(),  # noqa: B006 (read only)
    seen: set[str] = set(),  # noqa: B006 (read only)
    candidates: int = CANDIDATES,
) -> list[tuple[int, float]]:
    """``(sentence index, relevance)`` of the ``candidates`` quotable evidence sentences
    (:func:`~grounded.answering.verify.is_quotable`) closest to the question, not in ``exclude`` nor
    repeating ``seen``, each scored by the gate's model as an answer to ``question`` on its own."""
    out: list[tuple[int, float]] = []
    for i in np.argsort(-pool.question_similarity, kind="stable"):
        i = int(i)
        sentence = pool.sentence(i)
        if i in exclude or " ".join(sorted(content_terms(sentence))) in seen or not is_quotable(sentence):
            continue
        out.append((i, gate.relevance(question, sentence)))
        if len(out) >= candidates:
            break
    return out


def best_answering_quote(
    question: str,
    pool: EvidencePool,
    gate: AnswerabilityGate,
    *,
    exclude: set[int] = set(),  # noqa: B006 (read only)
    seen: set[str] = set(),  # noqa: B006 (read only)
    candidates: int = CANDIDATES,
    threshold: float | None = None,
) -> tuple[int, float] | None:
    """``(sentence index, relevance)`` of the evidence sentence that best answers ``question``: of the
    ``candidates`` quotable sentences closest to the question (:func:`answer_candidates`) whose relevance
    reaches ``threshold`` (default: the gate's relevance threshold), the one the gate's model scores highest;
    with an answer decision, the one it weighs highest: its weights of the relevance logit and of the evidence
    similarity (the sentence's similarity to the question) over each candidate, so that of two sentences the
    model finds about as relevant, the one about the question's subject is quoted (:func:`quote_weight`)."""
    floor = gate.relevance_threshold if threshold is None else threshold
    best: tuple[int, float, float] | None = None
    for i, r in answer_candidates(question, pool, gate, exclude=exclude, seen=seen, candidates=candidates):
        w = quote_weight(gate, r, float(pool.question_similarity[i]))
        if r >= floor and (best is None or w > best[2]):
            best = (i, r, w)
    return None if best is None else (best[0], best[1])


def quote_weight(gate: AnswerabilityGate, relevance: float, similarity: float) -> float:
    """How strongly a candidate sentence answers the question: with an answer decision, its weights of the
    relevance logit and the evidence similarity applied to the sentence's own (the decision's gate term is
    the same for every sentence of a question); without one, the relevance alone."""
    if gate.decision is None:
        return relevance
    weights = gate.decision.weights
    return weights[1] * logit(relevance) + weights[2] * similarity


def missing_terms(question: str, pool: EvidencePool) -> tuple[str, ...]:
    """Names and numbers of ``question`` that no evidence passage mentions, as the question writes them.

    What a partial answer can soundly say is missing: the sources do not mention these words at all
    (a statement about the sources, not a guess about the answer).
    """
    mentioned: set[str] = set().union(*pool.terms.values()) if pool.terms else set()
    out: list[str] = []
    tokens = re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]*", question)
    for i, token in enumerate(tokens):
        word = token.strip("'-")
        is_key = any(ch.isdigit() for ch in word) or (i > 0 and word[:1].isupper())
        if is_key and word.lower() not in STOPWORDS and word not in out and not (content_terms(word) <= mentioned):
            out.append(word)
    return tuple(out)


def is_fragment(sentence: str, n: int, count: int, truncated: bool) -> bool:
    """Whether drafted sentence ``n`` of ``count`` is cut off: :func:`~grounded.checks.looks_cut_off`, or
    the last sentence of a draft stopped by ``max_new_tokens`` (``truncated``) without a full stop."""
    return looks_cut_off(sentence) or (truncated and n == count - 1 and not _END.search(sentence.strip()))


def replace_decision(finding: SentenceFinding, decision: str) -> SentenceFinding:
    """``finding`` with another decision (the scores stay)."""
    return SentenceFinding(
        finding.text, finding.citations, decision, finding.support, finding.relevance, finding.word_support,
        finding.replacement,
    )  # fmt: skip


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
