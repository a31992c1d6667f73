"""Answers with citations: the types, the writer's prompt, and parsing what the model wrote.

The answer expert sees numbered evidence passages ``[1]..[n]`` and writes short sentences,
each ending with the number(s) of the passage(s) it comes from. :func:`parse_sentences` turns
that text into ``(sentence, citation ids)`` pairs; ids that name no passage are dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from grounded.experts.base import Message
from indexes.base import Hit

__all__ = [
    "ABSTAIN_TEXT",
    "Answer",
    "AnswerSentence",
    "Citation",
    "Evidence",
    "build_messages",
    "cited_text",
    "format_passages",
    "is_abstention",
    "parse_sentences",
    "passage_messages",
]

ABSTAIN_TEXT = "The sources do not contain this."

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources. Write one to three short sentences. "
    "End every sentence with the number of the source it comes from, like [1]. "
    f"If the sources do not answer the question, write only: {ABSTAIN_TEXT}"
)


@dataclass(frozen=True, slots=True)
class Citation:
    """An evidence passage an answer may cite as ``[id]``: a chunk and where it sits in its source.

    ``start``/``end`` are character offsets into the source document's text; ``synced_at`` is
    when the source was last synced, so an answer can say what it knew "as of" when.
    """

    id: int
    chunk_id: int
    doc_id: str
    title: str
    uri: str
    start: int
    end: int
    text: str
    source: str
    synced_at: datetime | None
    score: float
    provenance: Mapping[str, Any] | None = None
    """For tool evidence (SQL, live API, calculator): tool, source, tables, query, row keys, fetched_at."""

    @classmethod
    def from_hit(cls, cid: int, hit: Hit, synced_at: datetime | None) -> Citation:
        """Passage ``[cid]`` for a retrieved chunk."""
        return cls(
            id=cid,
            chunk_id=hit.chunk_id,
            doc_id=hit.doc_id,
            title=hit.title,
            uri=hit.uri,
            start=hit.start,
            end=hit.end,
            text=hit.text,
            source=hit.source,
            synced_at=synced_at,
            score=hit.score,
        )


@dataclass(frozen=True, slots=True)
class AnswerSentence:
    """One sentence of an answer and the evidence passages it cites.

    ``quoted`` means the model's own sentence was not supported and this is the evidence
    sentence quoted verbatim instead; ``support`` is the verifier's share of content words found.
    """

    text: str
    citations: tuple[int, ...]
    quoted: bool = False
    support: float = 1.0

    @property
    def cited(self) -> str:
        """The sentence as an answer shows it: ``text [1][2]``."""
        return f"{self.text} " + "".join(f"[{i}]" for i in self.citations)


def cited_text(sentences: Sequence[AnswerSentence]) -> str:
    """An answer's text: its sentences, each followed by its citations."""
    return " ".join(s.cited for s in sentences)


@dataclass(frozen=True, slots=True)
class Answer:
    """A cited, verified answer (or an abstention) to one question on one index version.

    >>> answer = kb.ask("where is mount logan?")      # doctest: +SKIP
    >>> print(answer.text)                            # doctest: +SKIP
    Mount Logan is located in Kluane National Park Reserve in southwestern Yukon. [1]
    """

    question: str
    text: str
    sentences: tuple[AnswerSentence, ...]
    citations: tuple[Citation, ...]
    abstained: bool
    index_version: str
    model: str
    closest: AnswerSentence | None = None
    """For an abstention: the evidence sentence nearest to the question, quoted with its citation."""
    timings: Mapping[str, float] = field(default_factory=dict, compare=False)
    cached: bool = field(default=False, compare=False)
    route: str = "unstructured"
    """How the router classified the question (grounded.router)."""
    grounded: bool = True
    """False for a not-fact-seeking question answered without retrieval."""
    trace: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """Route, reason, plan and each tool call's arguments, result size, time and error."""

    def cited(self) -> tuple[Citation, ...]:
        """The citations that some sentence (or ``closest``) actually cites, in id order."""
        used = {i for s in self.sentences for i in s.citations}
        if self.closest is not None:
            used.update(self.closest.citations)
        return tuple(c for c in self.citations if c.id in used)

    def to_dict(self, *, timings: bool = True) -> dict[str, Any]:
        """JSON-ready dict; without ``timings`` it is the same for every identical answer."""
        data = asdict(self)
        data["timings"] = dict(self.timings)
        for c in data["citations"]:
            c["synced_at"] = c["synced_at"].isoformat() if c["synced_at"] else None
        if not timings:
            data.pop("timings")
            data.pop("cached")
            data.pop("trace")
        return data

    def canonical_json(self) -> str:
        """The answer as canonical JSON without timings: the bytes that determinism promises."""
        return json.dumps(self.to_dict(timings=False), sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Answer:
        def sentence(s: Mapping[str, Any]) -> AnswerSentence:
            return AnswerSentence(s["text"], tuple(s["citations"]), bool(s["quoted"]), float(s["support"]))

        return cls(
            question=data["question"],
            text=data["text"],
            sentences=tuple(sentence(s) for s in data["sentences"]),
            citations=tuple(
                Citation(**{**c, "synced_at": datetime.fromisoformat(c["synced_at"]) if c["synced_at"] else None})
                for c in data["citations"]
            ),
            abstained=bool(data["abstained"]),
            index_version=data["index_version"],
            model=data["model"],
            closest=sentence(data["closest"]) if data.get("closest") else None,
            timings=dict(data.get("timings") or {}),
            cached=bool(data.get("cached", False)),
            route=str(data.get("route", "unstructured")),
            grounded=bool(data.get("grounded", True)),
            trace=dict(data.get("trace") or {}),
        )

    def _repr_html_(self) -> str:
        """Jupyter: linked [n] markers, cited spans highlighted, trace and timings (grounded.display)."""
        from grounded.display import answer_html

        return answer_html(self)


@dataclass(frozen=True, slots=True)
class Evidence:
    """A passage as shown to the writer: its citation and the sentences picked from it."""

    citation: Citation
    sentences: tuple[tuple[int, int], ...]
    """Spans (offsets into ``citation.text``) of the sentences shown, in text order."""

    def shown_text(self, max_sentence_chars: int = 400) -> str:
        parts = []
        for a, b in self.sentences:
            sentence = " ".join(self.citation.text[a:b].split())
            parts.append(sentence if len(sentence) <= max_sentence_chars else sentence[:max_sentence_chars] + " ...")
        return " ".join(parts)


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
