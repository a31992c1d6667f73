"""The answer writer's side: its prompts (the long one, and a tuned expert's short one) and
parsing what it wrote.

The answer expert sees numbered evidence passages ``[1]..[n]`` and writes short sentences,
each ending with the number(s) of the passage(s) it comes from. :func:`parse_sentences` turns
that text into ``(sentence, citation ids)`` pairs; ids that name no passage are dropped.

A tuned answer expert (``grounded tune answer``) has absorbed the writer's rules (cite ``[n]``,
one to three sentences, the abstention sentence): its system message is a few words instead of
:data:`SYSTEM_PROMPT` (:func:`tuned_answer_messages`; its card records
:data:`~grounded.experts.tuned.ANSWER_PROMPT_FORMAT`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from grounded.answering.types import Evidence
from grounded.experts.base import Message

__all__ = [
    "ABSTAIN_TEXT",
    "SYSTEM_PROMPT",
    "build_messages",
    "format_passages",
    "is_abstention",
    "parse_sentences",
    "passage_messages",
    "tuned_answer_messages",
]

ABSTAIN_TEXT = "The sources do not contain this."

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources. Write one to three short sentences. "
    "End every sentence with the number of the source it comes from, like [1]. "
    f"If the sources do not answer the question, write only: {ABSTAIN_TEXT}"
)


def format_passages(evidence: Sequence[Evidence]) -> str:
    """The numbered passages as the writer sees them, one ``[n] title: sentences`` line each."""
    return "\n".join(
        f"[{e.citation.id}] {e.citation.title + ': ' if e.citation.title else ''}{e.shown_text()}" for e in evidence
    )


def build_messages(question: str, evidence: Sequence[Evidence]) -> list[Message]:
    """The writer's prompt: the rules, then numbered passages, then the question."""
    return passage_messages(question, format_passages(evidence))


def passage_messages(question: str, passages: str) -> list[Message]:
    """:func:`build_messages` for passages already formatted by :func:`format_passages`."""
    return [Message("system", SYSTEM_PROMPT), Message("user", f"Sources:\n{passages}\n\nQuestion: {question}")]


_CITE = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_LEADING_CITES = re.compile(r"^((?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])+)")
_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


def is_abstention(text: str) -> bool:
    """Whether the model said the sources do not answer."""
    norm = " ".join(text.lower().split())
    return norm.startswith(ABSTAIN_TEXT.lower().rstrip(".")) or "do not contain" in norm or "does not contain" in norm


def parse_sentences(text: str, valid_ids: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """Split generated text into sentences with the citation ids each one ends with.

    Markers after the full stop (``... Yukon. [1]``) belong to the sentence before them; ids
    outside ``valid_ids`` are dropped; the markers are removed from the sentence text.
    """
    valid = set(valid_ids)
    pieces = [p.strip() for p in _SPLIT.split(text) if p and p.strip()]
    merged: list[str] = []
    for piece in pieces:
        lead = _LEADING_CITES.match(piece)
        if lead and merged:
            merged[-1] += " " + lead.group(1).strip()
            piece = piece[lead.end() :].strip()
        if piece:
            merged.append(piece)
    out: list[tuple[str, tuple[int, ...]]] = []
    for sentence in merged:
        ids: list[int] = []
        for group in _CITE.findall(sentence):
            for part in re.split(r"\s*[,;]\s*", group):
                n = int(part)
                if n in valid and n not in ids:
                    ids.append(n)
        clean = " ".join(_CITE.sub(" ", sentence).split())
        clean = re.sub(r"\s+([.,;:!?])", r"\1", clean).strip()
        if clean.rstrip(".!?").strip() or ids:
            out.append((clean, tuple(ids)))
    return [(s, c) for s, c in out if s.rstrip(".!? ")]


_TUNED_INSTRUCTION = "Answer from the sources, citing [n]."


def tuned_answer_messages(question: str, passages: str) -> list[Message]:
    """The chat a tuned answer expert answers: a short rule, the numbered passages, the question.

    ``passages`` is :func:`format_passages` of the evidence, as in the long prompt.
    """
    return [Message("system", _TUNED_INSTRUCTION), Message("user", f"{passages}\n\nQuestion: {question}")]
