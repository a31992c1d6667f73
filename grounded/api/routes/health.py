"""``GET /healthz``: the process is up and can read its knowledge base."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from grounded.api.deps import KBDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz(kb: KBDep) -> dict[str, Any]:
    """``ok`` with the published version (``null`` before the first ingest)."""
    return {"status": "ok", "index_version": kb.version}
