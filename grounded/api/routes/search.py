"""``POST /v1/search``: hybrid retrieval over the current index version, as the caller may see it."""

from __future__ import annotations

import time

from fastapi import APIRouter

from grounded.api.deps import KBDep, PrincipalDep
from grounded.api.schemas import HitOut, SearchRequest, SearchResponse
from grounded.ops.metrics import RETRIEVAL_HITS

router = APIRouter(tags=["search"])


@router.post("/v1/search", response_model=SearchResponse)
def search(body: SearchRequest, kb: KBDep, principal: PrincipalDep) -> SearchResponse:
    """Return the ``k`` chunks that best match ``query``, with scores and character offsets.

    Only documents the caller's key may read are searched: a source outside its groups
    contributes nothing, not even to the number of hits.
    """
    started = time.perf_counter()
    snapshot = kb.snapshot()  # one version for the hits and the reported index_version
    hits = kb.search(
        body.query,
        k=body.k,
        filters=body.filters,
        mode=body.mode,
        acl_groups=principal.acl_groups,
        snapshot=snapshot,
    )
    RETRIEVAL_HITS.labels(route="/v1/search").observe(len(hits))
    return SearchResponse(
        query=body.query,
        index_version=snapshot.version.id,
        hits=[HitOut.from_hit(h) for h in hits],
        took_ms=round((time.perf_counter() - started) * 1000, 3),
    )
