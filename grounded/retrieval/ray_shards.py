"""Dense search of a version's shards on a Ray cluster (``[scale] search = "ray"``).

A sharded version (``[index] shards = N``) keeps each segment's vectors in N FAISS files on the
knowledge base's storage. Searched in this process, every API worker holds every shard in
memory; with ``search = "ray"`` each shard file is loaded by one Ray actor instead (spread over
the cluster's nodes, which must see the same storage path), less the segment's dead chunks, and a
query's dense side is fanned out to them and merged here exactly as
:class:`~indexes.fanout.FanOutIndex` merges local parts (:func:`~indexes.fanout.merge_top`): with
exact indexes the merged top k is the unsharded top k. BM25 and the DuckDB store stay in the
process that serves the request.

The actors live as long as the snapshot that opened them: when a newer version is published and
the old snapshot is released, its actor handles go out of scope and Ray stops them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounded.errors import CorruptKnowledgeBase
from indexes.faiss_index import FloatArray, IdArray, IndexChoice, VectorIndex
from indexes.fanout import merge_top

__all__ = ["RayShardIndex", "ShardPart"]


@dataclass(frozen=True, slots=True)
class ShardPart:
    """One FAISS file of a version's segment and the chunk ids to leave out of it (dead documents)."""

    segment: str
    path: Path
    choice: IndexChoice
    dead: IdArray


class _ShardSearcher:
    """A Ray actor holding one shard's index (loaded once, searched for every query)."""

    def __init__(self, path: str, choice: dict[str, Any], dead: IdArray) -> None:
        self.index = VectorIndex.load(Path(path), IndexChoice(**choice))
        if len(dead):
            self.index.remove(dead)

    def info(self) -> tuple[int, int]:
        return self.index.ntotal, self.index.dim

    def search(self, queries: FloatArray, k: int, allowed: IdArray | None) -> tuple[FloatArray, IdArray]:
        return self.index.search(queries, k, allowed=allowed)


class RayShardIndex:
    """A version's vector parts searched by Ray actors, one per part (the interface search uses).

    Example::

        ray = connect_ray(settings, local_cpus=2)  # grounded.retrieval.ray_cluster
        index = RayShardIndex(ray, [ShardPart(path, choice, dead_ids), ...])
        scores, ids = index.search(query[None, :], 10)
    """

    def __init__(self, ray: Any, parts: Sequence[ShardPart]) -> None:
        self.ray = ray
        # The nodes see the storage this process sees (see the module docstring), so a missing
        # file is found here, before any actor starts: the store retries a failed open a few times,
        # and each try would start (and lose) an actor per part.
        missing = [str(p.path) for p in parts if not p.path.is_file()]
        if missing:
            raise CorruptKnowledgeBase(f"a vector part of this version is missing from storage: {', '.join(missing)}")
        # An actor needs no CPU of its own between queries; SPREAD puts the shards on different
        # nodes where the cluster has several, so no node holds them all.
        remote = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(_ShardSearcher)
        self.actors = [remote.remote(str(p.path), p.choice.to_dict(), p.dead) for p in parts]
        try:
            infos: list[tuple[int, int]] = ray.get([a.info.remote() for a in self.actors])
        except ray.exceptions.RayError as exc:
            # As for a local load: the store retries with the then current version (pruning may
            # have moved this one meanwhile), else reports the knowledge base as damaged.
            raise CorruptKnowledgeBase(f"a Ray actor could not load a vector part of this version ({exc})") from exc
        self._sizes = [n for n, _ in infos]
        self._dim = next((d for n, d in infos if n), infos[0][1] if infos else 0)
        largest = max(range(len(parts)), key=lambda i: self._sizes[i], default=None)
        self.choice = parts[largest].choice if largest is not None else IndexChoice(kind="Flat")

    @property
    def ntotal(self) -> int:
        return sum(self._sizes)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def device(self) -> str:
        """The actors search their shards on the CPU."""
        return "cpu"

    @property
    def shards(self) -> int:
        return len(self.actors)

    def search(self, queries: FloatArray, k: int, *, allowed: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        """Top-``k`` ``(scores, ids)`` per query over every shard, merged exactly."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        pending = [a.search.remote(queries, k, allowed) for a, n in zip(self.actors, self._sizes, strict=True) if n]
        return merge_top(self.ray.get(pending), k, len(queries))
