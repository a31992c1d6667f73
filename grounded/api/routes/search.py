"""``POST /v1/search``: hybrid retrieval over the current index version."""

from __future__ import annotations

import time

from fastapi import APIRouter

from grounded.api.deps import KBDep
from grounded.api.schemas import HitOut, SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


@router.post("/v1/search", response_model=SearchResponse)
def search(body: SearchRequest, kb: KBDep) -> SearchResponse:
    """Return the ``k`` chunks that best match ``query``, with scores and character offsets."""
    started = time.perf_counter()
    snapshot = kb.snapshot()
    hits = kb.search(body.query, k=body.k, filters=body.filters, mode=body.mode)
    return SearchResponse(
        query=body.query,
        index_version=snapshot.version.id,
        hits=[HitOut.from_hit(h) for h in hits],
        took_ms=round((time.perf_counter() - started) * 1000, 3),
    )
