"""The evidence pool: every sentence of one question's evidence, embedded once, and what the
writer is shown of it.

Each passage is split into sentences (prefixed with the passage's title, so "It is located ..."
keeps its subject, :func:`indexes.chunking.evidence_sentences`); the verifier checks sentences
against the pool, and :func:`select_evidence` picks the sentences of each passage the writer sees.
Ingest stores every chunk's sentences and their embeddings, so a passage's sentences are only
looked up here; passages without stored ones (tool results, a version built before sentences
were stored) are split and embedded now, by the same function and the same batch-invariant
encoder, so both ways give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from grounded.answering.types import Citation, Evidence
from grounded.experts.embedding import SentenceEmbedder
from grounded.text import content_terms
from indexes.chunking import evidence_sentences
from indexes.duckdb_store import StoredSentences

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


def build_pool(
    question: str,
    citations: Sequence[Citation],
    embedder: SentenceEmbedder,
    stored: Mapping[int, StoredSentences] | None = None,
) -> EvidencePool:
    """The pool of ``citations``' sentences: looked up in ``stored`` (by chunk id, what ingest
    stored) for retrieved passages, split and embedded now for the others."""
    stored = stored or {}
    owners: list[int] = []
    spans: list[tuple[int, int]] = []
    parts: list[np.ndarray | list[str]] = []
    for c in citations:
        found = stored.get(c.chunk_id) if c.provenance is None else None
        if found is not None:
            pairs = [(span, "") for span in found.spans]
            parts.append(found.vectors)
        else:
            pairs = evidence_sentences(c.title, c.text)
            parts.append([text for _, text in pairs])
        owners.extend(c.id for _ in pairs)
        spans.extend(span for span, _ in pairs)
    # One call to the encoder for every passage without stored sentences.
    todo = [text for part in parts if isinstance(part, list) for text in part]
    fresh = embedder.embed(todo) if todo else np.zeros((0, 1), np.float32)
    blocks: list[np.ndarray] = []
    for part in parts:
        if isinstance(part, list):
            if not part:  # a passage with no sentence (blank text): nothing to place
                continue
            part, fresh = fresh[: len(part)], fresh[len(part) :]
        blocks.append(part)
    vectors = np.concatenate(blocks).astype(np.float32, copy=False) if owners else np.zeros((0, 1), np.float32)
    qsim = vectors @ embedder.embed_query(question) if owners else np.zeros(0, np.float32)
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
