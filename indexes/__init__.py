"""Indexes: the FAISS vector index, the DuckDB store (documents, chunks, BM25) and versions."""

from indexes.base import Chunk, Hit, SearchFilters

__all__ = ["Chunk", "Hit", "SearchFilters"]
