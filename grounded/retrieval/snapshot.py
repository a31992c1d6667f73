"""A published version opened for reading: its DuckDB store and its FAISS index."""

from __future__ import annotations

from dataclasses import dataclass

from indexes.duckdb_store import DuckDBStore
from indexes.faiss_index import IndexChoice, VectorIndex
from indexes.versions import VersionInfo

__all__ = ["Snapshot"]


@dataclass(slots=True)
class Snapshot:
    """A published version opened for reading: its DuckDB store and FAISS index."""

    version: VersionInfo
    store: DuckDBStore
    vectors: VectorIndex

    @classmethod
    def open(cls, version: VersionInfo) -> Snapshot:
        store = DuckDBStore.open(version.store_path, read_only=True)
        choice = IndexChoice(**version.manifest.get("index", {"kind": "Flat"}))
        vectors = VectorIndex.load(version.vectors_path, choice)
        store.postings()  # BM25 posting lists into memory now, not on the first query
        return cls(version, store, vectors)
