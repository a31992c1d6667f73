"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from indexes.base import Hit

__all__ = ["HitOut", "SearchRequest", "SearchResponse"]


class SearchRequest(BaseModel):
    """``POST /v1/search``: what to look for and how many results."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"query": "how to open a file", "k": 5}]})

    query: str = Field(min_length=1, max_length=2000, description="The search text.")
    k: int = Field(10, ge=1, le=100, description="How many chunks to return.")
    filters: dict[str, Any] | None = Field(
        None,
        description="Narrow the search: source, doc_id, uri_prefix, updated_after, updated_before, metadata.",
    )
    mode: Literal["hybrid", "bm25", "dense"] = Field("hybrid", description="Which retrieval to use.")


class HitOut(BaseModel):
    """One retrieved chunk: text, score and where it sits in its document."""

    chunk_id: str = Field(description="Chunk id (a 63-bit integer, as a string for JavaScript clients).")
    score: float
    text: str
    start: int = Field(description="Character offset of the chunk in the document text.")
    end: int
    doc_id: str
    title: str
    uri: str
    source: str
    updated_at: datetime | None
    metadata: dict[str, Any]
    bm25_rank: int | None
    dense_rank: int | None

    @classmethod
    def from_hit(cls, hit: Hit) -> HitOut:
        return cls(
            chunk_id=str(hit.chunk_id),
            score=hit.score,
            text=hit.text,
            start=hit.start,
            end=hit.end,
            doc_id=hit.doc_id,
            title=hit.title,
            uri=hit.uri,
            source=hit.source,
            updated_at=hit.updated_at,
            metadata=hit.metadata,
            bm25_rank=hit.bm25_rank,
            dense_rank=hit.dense_rank,
        )


class SearchResponse(BaseModel):
    query: str
    index_version: str
    hits: list[HitOut]
    took_ms: float
