"""A published version opened for reading: its DuckDB head (segments attached) and FAISS indexes."""

from __future__ import annotations

from dataclasses import dataclass

from indexes.duckdb_store import DuckDBStore
from indexes.segments import LayeredVectors
from indexes.versions import VersionInfo

__all__ = ["Snapshot"]


@dataclass(slots=True)
class Snapshot:
    """A published version opened for reading: its DuckDB store and FAISS index."""

    version: VersionInfo
    store: DuckDBStore
    vectors: LayeredVectors

    @classmethod
    def open(cls, version: VersionInfo) -> Snapshot:
        store = DuckDBStore.open(version.store_path, read_only=True)
        try:
            vectors = LayeredVectors.open(
                store, version.segments, version.segment_path, int(version.manifest.get("dim", 384))
            )
            store.postings()  # BM25 posting lists into memory now, not on the first query
        except BaseException:
            store.close()
            raise
        return cls(version, store, vectors)
