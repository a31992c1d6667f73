"""The evidence pool: every sentence of one question's evidence, embedded once, and what the
writer is shown of it.

Each passage is split into sentences (prefixed with the passage's title, so "It is located ..."
keeps its subject) and embedded with the question; the verifier checks sentences against the
pool, and :func:`select_evidence` picks the sentences of each passage the writer sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grounded.answering.types import Citation, Evidence
from grounded.experts.embedding import SentenceEmbedder
from grounded.text import content_terms
from indexes.chunking import sentence_spans

__all__ = ["EvidencePool", "build_pool", "select_evidence"]


@dataclass(frozen=True, slots=True)
class EvidencePool:
    """Every sentence of the evidence passages, embedded once per question."""

    citations: tuple[Citation, ...]
    owners: tuple[int, ...]
    """Citation id of each sentence."""
    spans: tuple[tuple[int, int], ...]
    """Offsets of each sentence in its citation's text."""
    vectors: np.ndarray
    question_similarity: np.ndarray
    terms: dict[int, frozenset[str]]

    def sentence(self, i: int) -> str:
        citation = self.by_id(self.owners[i])
        a, b = self.spans[i]
        return " ".join(citation.text[a:b].split())

    def by_id(self, cid: int) -> Citation:
        return self.citations[cid - 1]

    def closest(self) -> int | None:
        """Index of the sentence most similar to the question."""
        return int(np.argmax(self.question_similarity)) if len(self.owners) else None

    def best_similarity(self) -> float:
        return float(self.question_similarity.max()) if len(self.owners) else -1.0


def build_pool(question: str, citations: Sequence[Citation], embedder: SentenceEmbedder) -> EvidencePool:
    """Split the passages into sentences and embed them with the question."""
    owners: list[int] = []
    spans: list[tuple[int, int]] = []
    texts: list[str] = []
    for c in citations:
        for a, b in sentence_spans(c.text) or [(0, len(c.text))]:
            if c.text[a:b].strip():
                owners.append(c.id)
                spans.append((a, b))
                # The title gives a sentence its subject ("It is located ..." -> "Mount Logan: It is ...").
                texts.append(f"{c.title}: {c.text[a:b]}" if c.title else c.text[a:b])
    vectors = embedder.embed(texts) if texts else np.zeros((0, 1), np.float32)
    qsim = vectors @ embedder.embed_query(question) if texts else np.zeros(0, np.float32)
    return EvidencePool(
        citations=tuple(citations),
        owners=tuple(owners),
        spans=tuple(spans),
        vectors=vectors,
        question_similarity=np.asarray(qsim, dtype=np.float32),
        terms={c.id: frozenset(content_terms(c.title + " " + c.text)) for c in citations},
    )


def select_evidence(pool: EvidencePool, per_passage: int) -> list[Evidence]:
    """Each passage cut to its ``per_passage`` sentences closest to the question, in text order."""
    out: list[Evidence] = []
    for citation in pool.citations:
        rows = [i for i, owner in enumerate(pool.owners) if owner == citation.id]
        if not rows:
            continue
        # Stable order: similarity descending, then position, so ties never depend on chance.
        ranked = sorted(rows, key=lambda i: (-float(np.float32(pool.question_similarity[i])), i))[:per_passage]
        out.append(Evidence(citation, tuple(pool.spans[i] for i in sorted(ranked))))
    return out
