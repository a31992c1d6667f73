"""Dense search over several vector indexes as if they were one: a segmented version's
segments, or a knowledge base's shards.

Each part returns its own top ``k``; the merged top ``k`` is the best ``k`` of those lists by
score (ties by id, as one index breaks them nowhere worse). With exact indexes this is exactly
the top ``k`` of one index over the union: every chunk of the true top ``k`` is in its own
part's top ``k``.

    index = FanOutIndex([base, delta])
    scores, ids = index.search(query[None, :], 10)
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from indexes.faiss_index import FloatArray, IdArray, IndexChoice, VectorIndex

__all__ = ["FanOutIndex", "merge_top", "shard_of"]


def shard_of(doc_id: str, shards: int) -> int:
    """The shard of a document (a hex id, :func:`grounded.ingest.prepare.doc_id_for`): stable, so a
    document's chunks always live in one shard."""
    return int(doc_id[:15], 16) % shards if shards > 1 else 0


def merge_top(results: Sequence[tuple[FloatArray, IdArray]], k: int, nq: int) -> tuple[FloatArray, IdArray]:
    """The best ``k`` ``(scores, ids)`` per query row of several parts' results (ids -1 pad)."""
    out_scores = np.full((nq, k), -np.inf, dtype=np.float32)
    out_ids = np.full((nq, k), -1, dtype=np.int64)
    for row in range(nq):
        scores = np.concatenate([r[0][row] for r in results]) if results else np.zeros(0, np.float32)
        ids = np.concatenate([r[1][row] for r in results]) if results else np.zeros(0, np.int64)
        keep = ids >= 0
        scores, ids = scores[keep], ids[keep]
        order = np.lexsort((ids, -scores))[:k]
        out_scores[row, : len(order)] = scores[order]
        out_ids[row, : len(order)] = ids[order]
    return out_scores, out_ids


class FanOutIndex:
    """Several :class:`VectorIndex` parts searched as one (the interface search uses)."""

    def __init__(self, parts: Sequence[VectorIndex], *, workers: int = 1) -> None:
        self.parts = list(parts)
        self.workers = workers
        """Parts searched at once: 1 searches them in turn (the cheapest for a few small parts)."""
        largest = max(self.parts, key=lambda p: p.ntotal, default=None)
        self.choice = largest.choice if largest is not None else IndexChoice(kind="Flat")

    @property
    def ntotal(self) -> int:
        return sum(p.ntotal for p in self.parts)

    @property
    def dim(self) -> int:
        return self.parts[0].dim if self.parts else 0

    @property
    def device(self) -> str:
        """Where the parts are searched (all loaded alike: ``cuda`` or ``cpu``)."""
        return self.parts[0].device if self.parts else "cpu"

    def search(self, queries: FloatArray, k: int, *, allowed: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        """Top-``k`` ``(scores, ids)`` per query over every part (see the module docstring)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        parts = [p for p in self.parts if p.ntotal]
        if self.workers > 1 and len(parts) > 1:
            with ThreadPoolExecutor(min(self.workers, len(parts))) as pool:
                results = list(pool.map(lambda p: p.search(queries, k, allowed=allowed), parts))
        else:
            results = [p.search(queries, k, allowed=allowed) for p in parts]
        return merge_top(results, k, len(queries))
