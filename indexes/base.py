"""Types shared by the indexes: chunks, hits and search filters."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Chunk", "Hit", "SearchFilters"]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A span ``text == document.text[start:end]`` of a document, the unit of retrieval.

    ``chunk_id`` is a 63-bit content hash (FAISS needs integer ids) of the document id, the
    span and its text, so re-chunking unchanged text gives the same ids.
    """

    chunk_id: int
    doc_id: str
    ordinal: int
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved chunk with its document's identity and the scores that ranked it."""

    chunk_id: int
    doc_id: str
    score: float
    text: str
    start: int
    end: int
    title: str
    uri: str
    source: str
    key: str
    ordinal: int = 0
    updated_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    bm25_rank: int | None = None
    dense_rank: int | None = None
    rerank_score: float | None = None
    """The reranker's probability that the chunk answers the query, when search reranked it."""


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Restrictions on what a search may return; every field narrows the result."""

    sources: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()
    uri_prefix: str | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    acl_groups: tuple[str, ...] | None = None
    """``None``: no access restriction; else only documents with no ACL or one of these groups."""

    def is_empty(self) -> bool:
        return (
            not self.sources
            and not self.doc_ids
            and self.uri_prefix is None
            and self.updated_after is None
            and self.updated_before is None
            and not self.metadata
            and self.acl_groups is None
        )
