"""Admin routes: configured sources and their refresh state, job history, refresh now.

``GET /v1/sources`` · ``GET /v1/jobs`` · ``POST /v1/sources/{name}/refresh`` (202 with the job,
409 while that source is refreshing). All need an admin key: they name every source, their
errors and sizes, which callers restricted to some groups must not learn.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from grounded.api.deps import AdminDep, KBDep
from grounded.errors import ConfigError
from grounded.ops.jobs import JobRecord
from grounded.ops.scheduler import Refresher, parse_schedule

router = APIRouter(tags=["sources"])


class JobOut(BaseModel):
    """One refresh of one source."""

    id: int
    source: str
    trigger: str = Field(description="schedule, manual (CLI) or api.")
    status: str = Field(description="running, succeeded, failed or interrupted.")
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    version: str | None = Field(description="The version the refresh published (or found current).")
    error: str | None
    error_kind: str | None
    stats: dict[str, Any] | None

    @classmethod
    def of(cls, job: JobRecord) -> JobOut:
        return cls(
            id=job.id,
            source=job.source,
            trigger=job.trigger,
            status=job.status,
            attempts=job.attempts,
            started_at=job.started_at,
            finished_at=job.finished_at,
            duration_s=job.duration_s,
            version=job.version,
            error=job.error,
            error_kind=job.error_kind,
            stats=job.stats,
        )


class SourceOut(BaseModel):
    """A configured source: what it is, when it runs, how its last refresh went."""

    name: str
    type: str
    enabled: bool
    acl: list[str]
    schedule: str | None
    next_run: datetime | None = Field(description="Next scheduled run, before jitter (null: unscheduled).")
    schedule_error: str | None = None
    last_synced_at: datetime | None = Field(description="When the published version last took this source's data.")
    documents: int | None = Field(description="Documents of this source in the published version.")
    last_job: JobOut | None


class JobsResponse(BaseModel):
    jobs: list[JobOut]


class SourcesResponse(BaseModel):
    index_version: str | None
    sources: list[SourceOut]


def _refresher(request: Request) -> Refresher:
    refresher: Refresher = request.app.state.refresher
    return refresher


def _list_sources(kb: Any, refresher: Refresher) -> SourcesResponse:
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
    return await run_in_threadpool(_list_sources, kb, _refresher(request))


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
