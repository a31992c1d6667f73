"""Answerability: is this question answered, answered in part, not answerable, or underspecified?

Every answer carries one of four labels (``Answer.answerability``), decided explicitly here
from signals the engine already has, in this order:

* ``underspecified``: the question points at something no earlier turn names ("this library",
  "that case"; :func:`~grounded.answering.conversation.unresolved_reference`). The engine asks
  one clarifying question instead of guessing which one was meant.
* ``unanswerable``: the engine abstained (no evidence close enough, or no sentence survived
  verification).
* ``partial``: an answer was written, but a name or number the question asks about appears in
  none of the cited evidence; the answer says what is missing.
* ``answerable``: otherwise.

The trained answerability gate (``grounded.answering.trust``) acts before this: when it finds no
answer in the passages the engine abstains, which reads here as ``unanswerable``. ``gate`` lets a
caller impose a verdict directly; it wins over the abstention signals, except ``underspecified``,
which only the conversation can tell.

With a trained answerability model (``answer.answerability``, :mod:`grounded.answering.answerability_model`)
``underspecified`` and ``partial`` are the model's decisions instead of the two rules; the
decision's ``scores`` (each head's probability and threshold) are in ``trace.answerability``.
:func:`clarification` words the one question asked back either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from grounded.answering.answerability_model import AnswerabilityModel, answerability_cache
from grounded.answering.conversation import Turn
from grounded.answering.turn_features import definite_referent, demonstrative_referent
from grounded.answering.types import AnswerSentence, Citation
from grounded.errors import ConfigError
from grounded.text import key_terms

__all__ = [
    "ANSWERABILITY",
    "Answerability",
    "Decision",
    "clarification",
    "clarifying_question",
    "decide",
    "load_model",
]

Answerability = Literal["answerable", "partial", "unanswerable", "underspecified"]
ANSWERABILITY: tuple[Answerability, ...] = ("answerable", "partial", "unanswerable", "underspecified")


@dataclass(frozen=True, slots=True)
class Decision:
    """The label, the signal that decided it, and (for ``partial``) what the sources lack."""

    label: Answerability
    reason: str
    missing: tuple[str, ...] = ()
    scores: dict[str, Any] = field(default_factory=dict)
    """The trained model's verdicts (``model``, ``underspecified``, ``partial``); empty with the rules."""

    def trace(self) -> dict[str, object]:
        out: dict[str, object] = {"label": self.label, "reason": self.reason, "missing": list(self.missing)}
        if self.scores:
            out["model"] = self.scores
        return out


def decide(
    question: str,
    *,
    abstained: bool,
    unresolved: str | None,
    sentences: Sequence[AnswerSentence],
    citations: Sequence[Citation],
    gate: Answerability | None = None,
) -> Decision:
    """The answerability of one answer (see the module docstring for the order of the signals)."""
    if unresolved is not None:
        return Decision("underspecified", f"{unresolved!r} refers to nothing named earlier")
    if gate is not None:
        return Decision(gate, "answerability gate")
    if abstained or not sentences:
        return Decision("unanswerable", "abstained: the evidence does not hold the answer")
    cited = {i for s in sentences for i in s.citations}
    evidence = " ".join(c.text + " " + c.title for c in citations if c.id in cited)
    missing = _missing(question, evidence)
    if missing:
        return Decision("partial", "the cited evidence lacks some of what the question names", missing)
    return Decision("answerable", "every name and number asked about is in the cited evidence")


def _missing(question: str, evidence: str) -> tuple[str, ...]:
    """Names and numbers of the question (as written) whose stem is in none of the evidence."""
    lowered = evidence.lower()
    missing: list[str] = []
    for word in (w.strip(".,;:!?()[]\"'") for w in question.split()):
        terms = key_terms(f"x {word}") if word else set()
        # A substring match, not a word match: "2019" counts as found in "2019-20", "Acme" in "Acme's".
        if terms and word not in missing and not any(t in lowered for t in terms):
            missing.append(word)
    return tuple(missing)


def clarifying_question(referent: str) -> str:
    """The one question asked back for an underspecified question."""
    return f"Which {referent} are you referring to?"


GENERIC_CLARIFICATION = "Could you say which one you mean, by name?"
"""Asked back when the model finds a turn underspecified but it names no noun to ask about."""


def clarification(question: str, history: Sequence[Turn], unresolved: str | None = None) -> tuple[str | None, str]:
    """``(referent, question asked back)`` for an underspecified turn: the unresolved
    demonstrative's noun, else any demonstrative's ("this credit card", though credit cards came
    up, is not pinned down), else an unnamed "the X" ("the park"), else a generic question."""
    referent = unresolved or demonstrative_referent(question) or definite_referent(question, history)
    return referent, clarifying_question(referent) if referent else GENERIC_CLARIFICATION


def load_model(setting: str) -> AnswerabilityModel | None:
    """The model ``answer.answerability`` asks for: ``None`` with ``rules`` (or ``auto`` and none
    trained); ``model`` without one raises :class:`~grounded.errors.ConfigError` saying how to train it."""
    if setting == "rules":
        return None
    model = AnswerabilityModel.active()
    if model is None and setting == "model":
        raise ConfigError(
            f"answer.answerability = 'model' but no answerability model is trained in {answerability_cache()}: "
            "run `grounded tune answerability --data ../shared/data/mtrag`, or set it to 'auto' or 'rules'"
        )
    return model
