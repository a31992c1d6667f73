"""A published version opened for reading: its DuckDB store and its FAISS index."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grounded.errors import CorruptKnowledgeBase
from indexes import segments as seg
from indexes.duckdb_store import DuckDBStore
from indexes.faiss_index import IndexChoice, VectorIndex
from indexes.fanout import FanOutIndex
from indexes.versions import VECTORS_FILE, VersionInfo, segment_dir, shard_file

__all__ = ["Snapshot"]


@dataclass(slots=True)
class Snapshot:
    """A published version opened for reading: its DuckDB store and FAISS index.

    A segmented version's ``vectors`` searches each segment's index, less the chunks of its
    dead documents, and merges them (:class:`~indexes.fanout.FanOutIndex`).
    """

    version: VersionInfo
    store: DuckDBStore
    vectors: VectorIndex | FanOutIndex

    @classmethod
    def open(cls, version: VersionInfo) -> Snapshot:
        store = DuckDBStore.open(version.store_path, read_only=True)
        vectors: VectorIndex | FanOutIndex
        if store.segments:
            vectors = _segment_vectors(version, store)
        else:
            choice = IndexChoice(**version.manifest.get("index", {"kind": "Flat"}))
            vectors = VectorIndex.load(version.vectors_path, choice)
        store.postings()  # BM25 posting lists into memory now, not on the first query
        return cls(version, store, vectors)


def _segment_vectors(version: VersionInfo, store: DuckDBStore) -> FanOutIndex:
    root = version.path.parent.parent
    choices = version.segment_indexes
    sharded = version.segment_shards
    dead = f"{seg.catalog(version.id)}.main.dead"
    parts: list[VectorIndex] = []
    for sid in store.segments:
        files = (
            [(segment_dir(root, sid) / shard_file(k), c) for k, c in enumerate(sharded[sid])]
            if sid in sharded
            else [(segment_dir(root, sid) / VECTORS_FILE, choices[sid])]
        )
        found = store.cursor().execute(seg.dead_chunk_sql(sid, dead)).fetchnumpy()
        for path, choice in files:
            try:
                index = VectorIndex.load(path, IndexChoice(**choice))
            except RuntimeError as exc:  # faiss's error for a missing or damaged file
                # Also what a reader sees when pruning moves the segment meanwhile: the caller
                # (KnowledgeStore) retries on CorruptKnowledgeBase with the then current version.
                raise CorruptKnowledgeBase(f"cannot read segment {sid}'s vectors at {path} ({exc})") from exc
            index.remove(np.asarray(found["chunk_id"], dtype=np.int64))
            parts.append(index)
    # A sharded segment's parts are searched side by side (one thread each), then merged exactly.
    return FanOutIndex(parts, workers=max((len(s) for s in sharded.values()), default=1))
