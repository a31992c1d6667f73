"""Operations: ``/healthz`` (alive), ``/readyz`` (a version is published), ``/metrics`` (Prometheus).

``/healthz`` and ``/readyz`` need no key and say nothing about the content; ``/metrics``
(index sizes, latencies) needs an admin key once keys exist.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from grounded.api.deps import AdminDep, KBDep
from grounded.ops import metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz(kb: KBDep) -> dict[str, Any]:
    """``ok`` with the published version (``null`` before the first ingest)."""
    return {"status": "ok", "index_version": kb.version}


@router.get(
    "/readyz",
    responses={503: {"description": "No index version is published yet, or it cannot be opened."}},
)
def readyz(kb: KBDep, request: Request) -> JSONResponse:
    """``ready`` once a version is published and opened; 503 before (load balancers wait)."""
    version = kb.version
    if version is None or getattr(request.app.state, "shutting_down", False):
        reason = "shutting down" if version is not None else "no index version is published yet"
        return JSONResponse({"status": "not ready", "index_version": version, "reason": reason}, status_code=503)
    try:
        opened = kb.snapshot().version.id
    except Exception as exc:
        return JSONResponse(
            {"status": "not ready", "index_version": version, "reason": type(exc).__name__}, status_code=503
        )
    return JSONResponse({"status": "ready", "index_version": opened})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format."}},
)
async def prometheus(kb: KBDep, _: AdminDep) -> Response:
    """Prometheus metrics: request latency by route, answers, refreshes, index size (admin key)."""
    body = await run_in_threadpool(metrics.render, kb)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
