"""Hybrid retrieval over one published version: BM25 (DuckDB fts) + dense (FAISS), fused.

Each side returns its ``candidates`` best chunks. With ``fusion="rrf"`` a chunk's fused score
is ``bm25_weight / (rrf_k + bm25_rank) + dense_weight / (rrf_k + dense_rank)``; with
``fusion="score"`` each side's scores are min-max scaled over its candidates and summed with the
same weights. Ties are broken by chunk id, so the same query on the same version always returns
the same list.

With a :class:`~grounded.retrieval.rerank.Reranker` (``search.rerank``), a hybrid search
then reorders its fused top ``search.rerank_k`` with the trained cross-encoder
(:mod:`grounded.retrieval.rerank`); the ``bm25`` and ``dense`` modes show one side alone and
are never reranked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from grounded.config import SearchSettings
from grounded.errors import InvalidRequest
from grounded.experts.embedding import SentenceEmbedder
from grounded.retrieval.rerank import Reranker, rerank
from grounded.retrieval.snapshot import Snapshot
from indexes.base import Hit, SearchFilters

__all__ = ["MODES", "Mode", "fuse", "search"]

Mode = Literal["hybrid", "bm25", "dense"]
MODES: tuple[Mode, ...] = ("hybrid", "bm25", "dense")


def fuse(
    bm25: Sequence[tuple[int, float]], dense: Sequence[tuple[int, float]], settings: SearchSettings
) -> list[tuple[int, float]]:
    """Merge two ``(chunk_id, score)`` rankings, best first; see the module docstring."""
    fused: dict[int, float] = {}
    for ranking, weight in ((bm25, settings.bm25_weight), (dense, settings.dense_weight)):
        if not ranking:
            continue
        if settings.fusion == "rrf":
            for rank, (cid, _) in enumerate(ranking, start=1):
                fused[cid] = fused.get(cid, 0.0) + weight / (settings.rrf_k + rank)
        else:
            # Min-max over this side's candidates: the best gets 1, the last 0, absent 0.
            high = ranking[0][1]
            low = min(ranking[-1][1], high)
            span = (high - low) or 1.0
            for cid, score in ranking:
                fused[cid] = fused.get(cid, 0.0) + weight * (score - low) / span
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def search(
    snapshot: Snapshot,
    embedder: SentenceEmbedder,
    query: str,
    *,
    k: int,
    settings: SearchSettings,
    filters: SearchFilters | None = None,
    mode: Mode = "hybrid",
    reranker: Reranker | None = None,
    trace: dict[str, Any] | None = None,
) -> list[Hit]:
    """The top-``k`` chunks for ``query``; see the module docstring for the fusion.

    ``reranker`` (used when ``settings.rerank`` is not ``"off"`` and ``mode`` is hybrid)
    reorders the fused top ``settings.rerank_k``; ``trace``, when given, receives the
    stage's record under ``"rerank"`` (status, model, ms).
    """
    if mode not in MODES:
        raise InvalidRequest(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    depth = max(settings.candidates, k)
    filters = filters or SearchFilters()
    bm25: list[tuple[int, float]] = []
    dense: list[tuple[int, float]] = []
    # One DuckDB query for the filters (ACL included), shared by both sides.
    allowed = None if filters.is_empty() else snapshot.store.allowed_chunk_ids(filters)
    if mode in ("hybrid", "bm25"):
        bm25 = snapshot.store.bm25(query, depth, allowed)
    if mode in ("hybrid", "dense") and snapshot.vectors.ntotal and (allowed is None or len(allowed)):
        scores, ids = snapshot.vectors.search(embedder.embed_query(query)[None, :], depth, allowed=allowed)
        dense = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    bm25_rank = {cid: r for r, (cid, _) in enumerate(bm25, start=1)}
    dense_rank = {cid: r for r, (cid, _) in enumerate(dense, start=1)}
    reranking = reranker is not None and settings.rerank != "off" and mode == "hybrid"
    top = fuse(bm25, dense, settings)[: max(k, settings.rerank_k) if reranking else k]
    rows = snapshot.store.chunk_rows(cid for cid, _ in top)
    hits: list[Hit] = []
    for cid, score in top:
        row = rows.get(cid)
        if row is None:  # the vector index and the store disagree; never show a ghost
            continue
        hits.append(
            Hit(
                chunk_id=cid,
                doc_id=row["doc_id"],
                score=float(np.float32(score)),
                text=row["text"],
                start=int(row["start_char"]),
                end=int(row["end_char"]),
                title=row["title"] or "",
                uri=row["uri"] or "",
                source=row["source"],
                key=row["key"],
                ordinal=int(row["ordinal"]),
                updated_at=row["updated_at"],
                metadata=row["metadata"],
                bm25_rank=bm25_rank.get(cid),
                dense_rank=dense_rank.get(cid),
            )
        )
    if reranking:
        assert reranker is not None
        hits, stage = rerank(query, hits, reranker, settings)
        if trace is not None:
            trace["rerank"] = stage
    return hits[:k]
