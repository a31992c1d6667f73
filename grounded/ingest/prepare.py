"""What a document becomes before it is written: its row, its chunks, its evidence sentences.

These are pure functions of the document and the chunking settings, so they give the same ids
and texts wherever they run: in the :class:`~grounded.ingest.builder.VersionBuilder` (a local
ingest) or in a Ray task (:mod:`grounded.ingest.ray_engine`), whose results the builder then
writes through the same path (:meth:`~grounded.ingest.builder.VersionBuilder.apply_prepared`).

Example::

    prepared = prepare_document("docs", Document(key="a.md", text="One. Two."), ChunkingConfig(1000, 0))
    [row.chunk.chunk_id for row in prepared.chunks]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from connectors.base import Document, Page
from grounded.access import effective_acl
from indexes.chunking import ChunkingConfig, chunk_document, evidence_sentences
from indexes.duckdb_store import ChunkRow, DocumentRow

__all__ = [
    "PreparedDocument",
    "SentenceText",
    "content_hash",
    "doc_id_for",
    "prepare_document",
    "search_text",
    "sentence_digest",
    "with_acl",
]


def doc_id_for(source: str, key: str) -> str:
    """Stable document id: the same source and key always give the same id."""
    return hashlib.blake2b(f"{source}\x00{key}".encode(), digest_size=12).hexdigest()


def content_hash(doc: Document) -> str:
    """Hash of everything that, when changed, requires re-chunking or re-indexing."""
    payload = json.dumps(
        [doc.title, doc.text, doc.uri, dict(doc.metadata), sorted(doc.acl)], sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def search_text(title: str, text: str) -> str:
    """The text of a chunk that is embedded and indexed for BM25: the title goes with every
    chunk, since it is often the best evidence of what a chunk is about."""
    return f"{title}\n{text}" if title and not text.startswith(title) else text


def sentence_digest(sentence: str) -> str:
    """The key an evidence sentence's embedding is stored and reused under."""
    return hashlib.sha256(sentence.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SentenceText:
    """An evidence sentence to embed: its digest and the exact text the model reads."""

    digest: str
    text: str


@dataclass(slots=True)
class PreparedDocument:
    """A document chunked (and, once an embedding worker has seen it, embedded).

    ``vectors`` holds one row per chunk (``None``: not embedded yet); ``sentence_vectors`` maps
    the digests of its evidence sentences to their embeddings.
    """

    row: DocumentRow
    chunks: tuple[ChunkRow, ...]
    sentences: tuple[SentenceText, ...] = ()
    vectors: np.ndarray | None = None
    sentence_vectors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def doc_id(self) -> str:
        return self.row.doc_id


def prepare_document(
    source: str, doc: Document, chunking: ChunkingConfig, *, digest: str | None = None, sentences: bool = False
) -> PreparedDocument:
    """``doc`` as rows: the document row, its chunks (with the text embedded for each) and, with
    ``sentences``, the evidence sentences its chunks will store (deduplicated, in order)."""
    doc_id = doc_id_for(source, doc.key)
    row = DocumentRow(
        doc_id=doc_id,
        source=source,
        key=doc.key,
        title=doc.title,
        uri=doc.uri,
        text=doc.text,
        content_hash=digest or content_hash(doc),
        updated_at=doc.updated_at,
        metadata=dict(doc.metadata),
        acl=tuple(doc.acl),
    )
    chunks: list[ChunkRow] = []
    texts: dict[str, SentenceText] = {}
    for chunk in chunk_document(doc_id, doc.text, chunking):
        embedded = search_text(doc.title, chunk.text)
        chunks.append(ChunkRow(chunk, embedded, hashlib.sha256(embedded.encode()).hexdigest()))
        if sentences:
            for _, sentence in evidence_sentences(doc.title, chunk.text):
                key = sentence_digest(sentence)
                texts.setdefault(key, SentenceText(key, sentence))
    return PreparedDocument(row, tuple(chunks), tuple(texts.values()))


def with_acl(page: Page, acl: Sequence[str]) -> Page:
    """``page`` with every document's ACL set to :func:`~grounded.access.effective_acl` of the
    source's ``acl``."""
    records = [replace(r, acl=effective_acl(acl, r.acl)) if isinstance(r, Document) else r for r in page.records]
    return replace(page, records=records)
