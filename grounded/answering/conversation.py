"""Follow-up questions: the conversation so far, and the standalone question retrieval runs on.

A follow-up ("Who founded it?", "And in 2019?") names nothing a search can find. Before
routing, the engine turns the last question into a *standalone* one that carries what the
earlier turns were about; routing, tools and retrieval run on that rewrite, and the answer
shows it (``Answer.rewrite``) and its reason (``trace["rewrite"]``).

Rewriting is skipped when the question needs none: no earlier turn, or no cue that it leans on
one (a pronoun or demonstrative, an elliptic opening such as "and"/"what about", or a question
of one content word or none). The check is a regular expression and a word count, so a
self-contained question costs nothing and is answered exactly as without a conversation.

Two rewriters, both deterministic:

* ``rules`` (default): the question followed by the earlier user turns it leans on, most
  recent first, back to the last one that stood alone, in parentheses:
  ``"Who founded it? (about: tell me about the Eiffel tower)"``.
  Search needs the topic's words, not grammar; the rule never loses one of them.
* ``expert``: the answer expert (greedy) writes the standalone question; a rewrite that drops
  one of the question's own content words, or grows past a bound, is rejected for the rule's.

Example::

    history = [Turn("user", "Tell me about the Eiffel tower"), Turn("assistant", "It is in Paris. [1]")]
    rewrite_question("When was it built?", history).text
    # 'When was it built? (about: Tell me about the Eiffel tower)'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from grounded.errors import InvalidRequest
from grounded.experts.base import Message, TextGenerator
from grounded.text import content_terms

__all__ = [
    "REWRITE_VERSION",
    "Rewrite",
    "RewriteMode",
    "Turn",
    "as_turns",
    "conversation_material",
    "needs_rewrite",
    "rewrite_question",
    "split_messages",
    "unresolved_reference",
]

REWRITE_VERSION = "rewrite-v1"
"""Bumped whenever the cue check or a rewriter changes, so cached answers are not reused."""

RewriteMode = Literal["rules", "expert", "off"]

Role = Literal["user", "assistant"]

_PRONOUN = re.compile(
    r"\b(it|its|it's|itself|they|them|their|theirs|this|that|these|those|he|him|his|she|her|hers|there|such|"
    r"the same|the former|the latter|the above|one|ones|other|others|former|latter)\b",
    re.I,
)
_ELLIPTIC_START = re.compile(
    r"^\s*(and|or|but|also|so|then|what about|how about|why not|what else|anything else|any other|more|"
    r"same|else|which one|how so|and if|what if)\b",
    re.I,
)
_DEMONSTRATIVE = re.compile(
    r"\b(this|that|these|those|the said|said)\s+(?!is\b|are\b|was\b|were\b|one\b|ones\b|does\b|do\b|will\b|can\b)"
    r"([A-Za-z][A-Za-z-]+(?:\s+[A-Za-z][A-Za-z-]+)?)",
    re.I,
)

# "this year" names no thing the user could mean: time words never make a question underspecified.
NOT_REFERENTS = frozenset(
    [
        "year",
        "month",
        "week",
        "day",
        "time",
        "way",
        "morning",
        "evening",
        "afternoon",
        "night",
        "quarter",
        "season",
        "moment",
        "point",
    ]
)

_QUALIFIERS = frozenset(["particular", "specific", "same", "new", "old", "whole", "given", "above", "exact"])

_EXPERT_PROMPT = (
    "Rewrite the last question so that it can be understood without the conversation. "
    "Replace pronouns with what they refer to. Keep every word of the question that names something. "
    "Write only the rewritten question."
)


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier turn of a conversation: who spoke (``user`` or ``assistant``) and what they said."""

    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class Rewrite:
    """The standalone question and why it is what it is.

    ``text`` equals the question as asked when no rewrite was needed (``method`` is ``none``).
    """

    text: str
    method: Literal["none", "rules", "expert"]
    reason: str

    @property
    def changed(self) -> bool:
        return self.method != "none"

    def trace(self) -> dict[str, str]:
        return {"text": self.text, "method": self.method, "reason": self.reason}


def split_messages(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[Turn]]:
    """``(question, history)`` from OpenAI-style messages: the last user message is the question.

    System, developer and tool messages are not dialogue and are left out; content given as a
    list of parts keeps its text parts. Raises :class:`InvalidRequest` without a user message.
    """
    turns: list[Turn] = []
    for message in messages:
        role = str(message.get("role", ""))
        if role not in ("user", "assistant"):
            continue
        text = _content_text(message.get("content"))
        if text.strip():
            turns.append(Turn("user" if role == "user" else "assistant", text))
    while turns and turns[-1].role != "user":
        turns.pop()  # a trailing assistant turn answers nothing: the question is the last user turn
    if not turns:
        raise InvalidRequest("messages must contain a user message with text: it is the question grounded answers")
    return turns[-1].text, turns[:-1]


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def as_turns(history: Iterable[Turn | Mapping[str, Any] | tuple[str, str]] | None) -> list[Turn]:
    """Normalise a history given as turns, ``{"role", "content"}`` dicts or ``(role, text)`` pairs."""
    turns: list[Turn] = []
    for item in history or ():
        role: str
        text: str
        if isinstance(item, Turn):
            role, text = item.role, item.text
        elif isinstance(item, Mapping):
            role, text = str(item.get("role", "")), _content_text(item.get("content", item.get("text")))
        else:
            role, text = item
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"a history turn's role must be 'user' or 'assistant'; got {role!r}")
        if text.strip():
            turns.append(Turn("user" if role == "user" else "assistant", " ".join(text.split())))
    return turns


def conversation_material(history: Sequence[Turn]) -> list[list[str]]:
    """The history as the cache key holds it: what each turn said, in order."""
    return [[t.role, " ".join(t.text.split())] for t in history]


def needs_rewrite(question: str, history: Sequence[Turn]) -> str | None:
    """Why ``question`` leans on earlier turns (the cue found), or ``None`` when it stands alone."""
    if not any(t.role == "user" for t in history):
        return None
    start = _ELLIPTIC_START.search(question)
    if start:
        return f"elliptic opening {start.group(1).lower()!r}"
    pronoun = _PRONOUN.search(question)
    if pronoun:
        return f"reference {pronoun.group(1).lower()!r}"
    if len(content_terms(question)) <= 1:
        return "short question"
    return None


def unresolved_reference(question: str, history: Sequence[Turn]) -> str | None:
    """A demonstrative ("this library", "that case") whose noun no earlier turn names, or ``None``.

    Such a question is *underspecified*: guessing which library would answer a question nobody
    asked, so the engine asks one clarifying question instead.
    """
    earlier = content_terms(" ".join(t.text for t in history))
    for match in _DEMONSTRATIVE.finditer(question):
        words = [w.lower() for w in match.group(2).split()]
        # "this particular fund": the noun is the first word that is not a mere qualifier.
        noun = next((w for w in words if w not in _QUALIFIERS), words[-1])
        if noun in NOT_REFERENTS or not content_terms(noun):
            continue
        if not content_terms(noun) & earlier:
            return noun
    return None


def rewrite_question(
    question: str,
    history: Sequence[Turn],
    *,
    mode: RewriteMode = "rules",
    expert: TextGenerator | None = None,
    max_turns: int = 3,
) -> Rewrite:
    """The standalone form of ``question`` given the earlier ``history`` (see the module docstring)."""
    if mode == "off":
        return Rewrite(question, "none", "rewriting is off")
    cue = needs_rewrite(question, history)
    if cue is None:
        reason = "no earlier turn" if not any(t.role == "user" for t in history) else "no follow-up cue"
        return Rewrite(question, "none", reason)
    ruled = _rules(question, history, max_turns)
    if mode == "expert" and expert is not None:
        written = _expert(question, history, expert)
        if written is not None:
            return Rewrite(written, "expert", cue)
        return Rewrite(ruled, "rules", f"{cue}; the expert's rewrite was rejected")
    return Rewrite(ruled, "rules", cue)


def _rules(question: str, history: Sequence[Turn], max_turns: int) -> str:
    """The question, then the earlier user turns back to the last one that stood alone.

    "Why?" after "When is it useful?" after "What does pass do?" needs both earlier questions:
    the nearer one says what is asked about, the older one names the subject.
    """
    own = content_terms(question)
    context: list[str] = []
    for i in range(len(history) - 1, -1, -1):
        turn = history[i]
        if turn.role != "user":
            continue
        if content_terms(turn.text) - own:
            context.append(" ".join(turn.text.split()).rstrip("?.! "))
        if len(context) >= max_turns or needs_rewrite(turn.text, history[:i]) is None:
            break
    if not context:
        return question
    return f"{question.rstrip()} (about: {'; '.join(context)})"


def _expert(question: str, history: Sequence[Turn], expert: TextGenerator) -> str | None:
    dialogue = "\n".join(f"{t.role}: {_clip(t.text)}" for t in history[-4:])
    messages = [
        Message("system", _EXPERT_PROMPT),
        Message("user", f"Conversation:\n{dialogue}\n\nLast question: {question}\n\nRewritten question:"),
    ]
    text = " ".join(expert.generate(messages, max_tokens=48).text.split()).strip().strip('"')
    text = text.split("\n")[0]
    # A rewrite must keep the question's own content words and stay a question-sized sentence.
    if not text or len(text) > 4 * len(question) + 200 or not content_terms(question) <= content_terms(text):
        return None
    return text


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."
