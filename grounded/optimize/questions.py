"""Questions written from the knowledge base's own passages (``grounded tune answer`` and
``grounded optimize --generate``).

A text expert writes, greedily and few-shot, the question one passage sentence answers. The
sentences are picked by a hash of their text and a seed, so the same knowledge base gives the
same questions on every run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Protocol

from grounded.experts.base import Message
from grounded.retrieval import Snapshot
from indexes.chunking import sentence_spans

__all__ = ["candidate_sentences", "clean_question", "question_messages", "stable_hash"]

_QUESTION_SYSTEM = "Write the question that the text answers."
# General-knowledge shots (not from any evaluation set) teach the form: lower case, one question.
_SHOTS = (
    ("Eiffel Tower", "The tower was completed in 1889 as the entrance arch to the World's Fair.",
     "when was the eiffel tower completed?"),
    ("Photosynthesis", "Plants use the energy of sunlight to turn carbon dioxide and water into glucose and oxygen.",
     "what do plants turn carbon dioxide and water into?"),
    ("Hamlet", "The play was written by William Shakespeare sometime between 1599 and 1601.",
     "who wrote the play hamlet?"),
)  # fmt: skip


class _Versioned(Protocol):
    def snapshot(self) -> Snapshot: ...


def question_messages(title: str, sentence: str) -> list[Message]:
    """The few-shot prompt asking for the question ``sentence`` (from a passage titled ``title``) answers."""
    messages = [Message("system", _QUESTION_SYSTEM)]
    for t, s, q in _SHOTS:
        messages += [Message("user", f"{t}: {s}"), Message("assistant", q)]
    return [*messages, Message("user", f"{title}: {sentence}" if title else sentence)]


def clean_question(text: str) -> str | None:
    """The first line of a reply when it is one plausible question (4-30 words, ending in ``?``)."""
    line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    if not line.endswith("?") or "?" in line[:-1]:
        return None
    return line if 4 <= len(line.split()) <= 30 else None


def stable_hash(text: str) -> int:
    """A 48-bit hash of ``text`` that is the same in every process (unlike ``hash``)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def candidate_sentences(kb: _Versioned, limit: int, *, seed: int = 0) -> Iterator[tuple[int, str, str, str]]:
    """``(chunk_id, doc_id, title, sentence)``: one sentence of 8-60 words from each of ``limit`` chunks.

    ``kb`` is a knowledge base or a store. Chunks and their sentences are picked by a hash of
    their text and ``seed``, so the choice is the same on every run over the same knowledge base.
    """
    rows = (
        kb.snapshot()
        .store.cursor()
        .execute(
            "SELECT c.chunk_id, c.doc_id, coalesce(d.title, ''), c.text FROM chunks c JOIN documents d USING (doc_id)"
        )
        .fetchall()
    )
    rows.sort(key=lambda r: stable_hash(f"{seed}:{r[3]}"))
    taken = 0
    for chunk_id, doc_id, title, text in rows:
        sentences = [" ".join(text[a:b].split()) for a, b in sentence_spans(text)]
        fit = [s for s in sentences if 8 <= len(s.split()) <= 60 and len(s) <= 400]
        if not fit:
            continue
        yield int(chunk_id), str(doc_id), str(title), min(fit, key=lambda s: stable_hash(f"{seed}:{s}"))
        taken += 1
        if taken >= limit:
            return
