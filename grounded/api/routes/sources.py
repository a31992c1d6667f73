"""Admin routes: configured sources and their refresh state, job history, refresh now.

``GET /v1/sources`` · ``GET /v1/jobs`` · ``POST /v1/sources/{name}/refresh`` (202 with the job,
409 while that source is refreshing). All need an admin key: they name every source, their
errors and sizes, which callers restricted to some groups must not learn.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from grounded.api.deps import AdminDep, KBDep
from grounded.api.schemas import JobOut, JobsResponse, SourceOut, SourcesResponse
from grounded.errors import ConfigError
from grounded.ops.scheduler import Refresher, parse_schedule

router = APIRouter(tags=["sources"])


def _refresher(request: Request) -> Refresher:
    refresher: Refresher = request.app.state.refresher
    return refresher


def list_sources(kb: Any, refresher: Refresher) -> SourcesResponse:
    """What `GET /v1/sources` answers (also the MCP `sources` tool): for admin callers only."""
    synced: dict[str, dict[str, Any]] = {}
    version = kb.version
    if version is not None:
        snapshot = kb.snapshot()
        synced = {str(s["name"]): s for s in snapshot.store.sources()}
        version = snapshot.version.id
    out: list[SourceOut] = []
    now = datetime.now(UTC)
    for name, cfg in sorted(kb.settings.sources.items()):
        last = refresher.jobs.last(name)
        next_run: datetime | None = None
        error: str | None = None
        if cfg.schedule and cfg.enabled:
            try:
                next_run = parse_schedule(cfg.schedule, source=name).first_due(last.started_at if last else None, now)
            except ConfigError as exc:
                error = str(exc)
        info = synced.get(name, {})
        docs = info.get("documents")
        out.append(
            SourceOut(
                name=name,
                type=cfg.type,
                enabled=cfg.enabled,
                acl=list(cfg.acl),
                schedule=cfg.schedule,
                next_run=next_run,
                schedule_error=error,
                last_synced_at=info.get("last_synced_at"),
                documents=int(docs) if isinstance(docs, int) else None,
                last_job=JobOut.of(last) if last else None,
            )
        )
    return SourcesResponse(index_version=version, sources=out)


@router.get("/v1/sources", response_model=SourcesResponse)
async def sources(request: Request, kb: KBDep, _: AdminDep) -> SourcesResponse:
    """Every configured source with its schedule, data freshness and last refresh (admin key)."""
    return await run_in_threadpool(list_sources, kb, _refresher(request))


@router.get("/v1/jobs", response_model=JobsResponse)
async def jobs(
    request: Request,
    _: AdminDep,
    source: str | None = Query(None, max_length=200, description="Only this source's jobs."),
    status: Literal["running", "succeeded", "failed", "interrupted"] | None = Query(None),
    limit: int = Query(50, ge=1, le=1000),
) -> JobsResponse:
    """Refresh history, newest first (admin key)."""
    found = await run_in_threadpool(_refresher(request).jobs.list, source=source, status=status, limit=limit)
    return JobsResponse(jobs=[JobOut.of(j) for j in found])


@router.post(
    "/v1/sources/{name}/refresh",
    response_model=JobOut,
    status_code=202,
    responses={404: {"description": "No such source."}, 409: {"description": "This source is refreshing already."}},
)
async def refresh(name: str, request: Request, _: AdminDep) -> JobOut:
    """Start refreshing ``name`` in the background; poll ``GET /v1/jobs?source=name`` (admin key)."""
    job = await run_in_threadpool(_refresher(request).refresh_in_background, name, trigger="api")
    return JobOut.of(job)
