"""What an answer is: citations, sentences, the answer itself, and evidence as the writer sees it.

Frozen, slotted records; :meth:`Answer.canonical_json` is the byte form that determinism
promises (same question, same index version, same bytes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from indexes.base import Hit

__all__ = ["Answer", "AnswerSentence", "Citation", "Evidence", "cited_text"]


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
    """How the router classified the question (grounded.grounding.router)."""
    grounded: bool = True
    """False for a not-fact-seeking question answered without retrieval."""
    trace: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """Route, reason, plan and each tool call's arguments, result size, time and error."""
    rewrite: str | None = None
    """The standalone question a follow-up was rewritten into (what retrieval ran on); ``None``: as asked."""
    answerability: str = "answerable"
    """answerable, partial, unanswerable or underspecified (grounded.answering.answerability)."""
    missing: tuple[str, ...] = ()
    """Names and numbers of the question that no evidence passage mentions (a partial answer says so)."""

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
            rewrite=data.get("rewrite"),
            # Answers cached before the field existed: an abstention is what "unanswerable" means.
            answerability=str(data.get("answerability") or ("unanswerable" if data["abstained"] else "answerable")),
            missing=tuple(data.get("missing") or ()),
        )

    def _repr_html_(self) -> str:
        """Jupyter: linked [n] markers, cited spans highlighted, trace and timings (grounded.answering.html)."""
        from grounded.answering.html import answer_html

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
