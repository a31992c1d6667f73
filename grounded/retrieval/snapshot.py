"""A published version opened for reading: its DuckDB store and its FAISS index."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from grounded.errors import CorruptKnowledgeBase
from grounded.retrieval.ray_shards import RayShardIndex, ShardPart
from indexes import segments as seg
from indexes.duckdb_store import DuckDBStore
from indexes.faiss_index import IndexChoice, VectorIndex
from indexes.fanout import FanOutIndex
from indexes.versions import VECTORS_FILE, VersionInfo, segment_dir, shard_file

__all__ = ["RemoteParts", "Snapshot", "VectorParts"]

VectorParts = VectorIndex | FanOutIndex | RayShardIndex

RemoteParts = Callable[[Sequence[ShardPart]], RayShardIndex]
"""Opens a version's vector parts elsewhere (``[scale] search = "ray"``: one Ray actor each)."""


@dataclass(slots=True)
class Snapshot:
    """A published version opened for reading: its DuckDB store and FAISS index.

    A segmented version's ``vectors`` searches each segment's index, less the chunks of its
    dead documents, and merges them (:class:`~indexes.fanout.FanOutIndex`).
    """

    version: VersionInfo
    store: DuckDBStore
    vectors: VectorParts

    @classmethod
    def open(cls, version: VersionInfo, *, remote: RemoteParts | None = None, device: str = "cpu") -> Snapshot:
        """``remote``: search the vector parts of a segmented version there (e.g. on Ray actors)
        instead of loading them into this process. ``device``: where the vectors loaded here are
        searched (``cpu`` or ``cuda``, see :func:`~indexes.faiss_index.faiss_device`)."""
        store = DuckDBStore.open(version.store_path, read_only=True)
        vectors: VectorParts
        if store.segments:
            parts = _segment_parts(version, store)
            vectors = remote(parts) if remote is not None else _load_parts(parts, version, device)
        else:
            vectors = _own_index(version, device)
        store.postings()  # BM25 posting lists into memory now, not on the first query
        return cls(version, store, vectors)


def _own_index(version: VersionInfo, device: str) -> VectorIndex:
    """The vectors of a version that reads no older segment. One that holds no chunk may have no
    file (a sync of mirrored tables writes none, see ``VersionBuilder._own_vectors``)."""
    if not version.vectors_path.exists() and version.manifest.get("chunks") == 0:
        return VectorIndex.empty(int(version.manifest["dim"]))  # every manifest records it
    choice = IndexChoice(**version.manifest.get("index", {"kind": "Flat"}))
    return VectorIndex.load(version.vectors_path, choice).to_device(device)


def _segment_parts(version: VersionInfo, store: DuckDBStore) -> list[ShardPart]:
    """Every FAISS file of the version's segments (a sharded segment has several), each with the
    chunk ids of its segment's dead documents."""
    root = version.path.parent.parent
    choices = version.segment_indexes
    sharded = version.segment_shards
    dead = f"{seg.catalog(version.id)}.main.dead"
    parts: list[ShardPart] = []
    for sid in store.segments:
        files = (
            [(segment_dir(root, sid) / shard_file(k), c) for k, c in enumerate(sharded[sid])]
            if sid in sharded
            else [(segment_dir(root, sid) / VECTORS_FILE, choices[sid])]
        )
        found = store.cursor().execute(seg.dead_chunk_sql(sid, dead)).fetchnumpy()
        gone = np.asarray(found["chunk_id"], dtype=np.int64)
        parts.extend(ShardPart(sid, path, IndexChoice(**choice), gone) for path, choice in files)
    return parts


def _load_parts(parts: Sequence[ShardPart], version: VersionInfo, device: str) -> FanOutIndex:
    """The parts loaded into this process, searched as one."""
    indexes: list[VectorIndex] = []
    for part in parts:
        try:
            index = VectorIndex.load(part.path, part.choice)
        except RuntimeError as exc:  # faiss's error for a missing or damaged file
            # Also what a reader sees when pruning moves the segment meanwhile: the caller
            # (KnowledgeStore) retries on CorruptKnowledgeBase with the then current version.
            raise CorruptKnowledgeBase(f"cannot read segment {part.segment}'s vectors at {part.path} ({exc})") from exc
        index.remove(part.dead)
        indexes.append(index.to_device(device))
    # A sharded segment's parts are searched side by side (one thread each), then merged exactly.
    shards = max((len(s) for s in version.segment_shards.values()), default=1)
    return FanOutIndex(indexes, workers=shards)
