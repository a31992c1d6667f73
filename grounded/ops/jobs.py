"""Refresh job history in ``<kb>/jobs.sqlite``, shared by every process serving the knowledge base.

Published versions are read-only; job records change while a refresh runs, so they live beside
the versions in SQLite (WAL: many readers, one writer at a time). A job killed with its process
stays ``running`` until the next refresh of its source takes the source lock and marks it
``interrupted``: holding the lock proves nobody is still running it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from grounded.errors import KnowledgeBaseError

__all__ = ["JOBS_FILE", "JobRecord", "JobStatus", "JobStore"]

JOBS_FILE = "jobs.sqlite"
JobStatus = Literal["running", "succeeded", "failed", "interrupted"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    duration_s REAL,
    version TEXT,
    error TEXT,
    error_kind TEXT,
    stats TEXT,
    pid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_source ON jobs (source, id);
"""

_COLUMNS = (
    "id, source, trigger, status, attempts, started_at, finished_at, duration_s, version, error, error_kind, stats"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One refresh of one source: when, how it ended, what it published."""

    id: int
    source: str
    trigger: str
    status: str
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    version: str | None
    error: str | None
    error_kind: str | None
    stats: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> JobRecord:
        (id_, source, trigger, status, attempts, started, finished, duration, version, error, kind, stats) = row
        return cls(
            id=int(id_),
            source=str(source),
            trigger=str(trigger),
            status=str(status),
            attempts=int(attempts),
            started_at=datetime.fromisoformat(started),
            finished_at=datetime.fromisoformat(finished) if finished else None,
            duration_s=float(duration) if duration is not None else None,
            version=version,
            error=error,
            error_kind=kind,
            stats=json.loads(stats) if stats else None,
        )


class JobStore:
    """Append and update job records; list them newest first."""

    def __init__(self, path: Path, *, keep: int = 1000) -> None:
        self.path = path
        self.keep = keep
        self._local = threading.local()
        try:
            self._con().executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise KnowledgeBaseError(f"cannot open the job history {path} ({exc}); delete it to start afresh") from exc

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            self._local.con = con
        return con

    def start(self, source: str, trigger: str, *, at: datetime | None = None) -> JobRecord:
        """Record a refresh that starts now (call it while holding the source's lock)."""
        con = self._con()
        started = at.astimezone(UTC).isoformat(timespec="milliseconds") if at else _now()
        with con:
            cur = con.execute(
                "INSERT INTO jobs (source, trigger, status, started_at, pid) VALUES (?, ?, 'running', ?, ?)",
                (source, trigger, started, os.getpid()),
            )
            job_id = int(cur.lastrowid or 0)
            con.execute("DELETE FROM jobs WHERE id <= ?", (job_id - self.keep,))
        return self.get(job_id)

    def attempt(self, job_id: int, attempts: int, error: str | None = None, error_kind: str | None = None) -> None:
        """Note the number of attempts so far (and the last retriable error)."""
        self._con().execute(
            "UPDATE jobs SET attempts = ?, error = ?, error_kind = ? WHERE id = ?",
            (attempts, error, error_kind, job_id),
        )

    def finish(
        self,
        job_id: int,
        status: JobStatus,
        *,
        duration_s: float,
        version: str | None = None,
        error: str | None = None,
        error_kind: str | None = None,
        stats: dict[str, Any] | None = None,
    ) -> JobRecord:
        self._con().execute(
            "UPDATE jobs SET status = ?, finished_at = ?, duration_s = ?, version = ?, error = ?, error_kind = ?, "
            "stats = ? WHERE id = ?",
            (
                status,
                _now(),
                round(duration_s, 3),
                version,
                error,
                error_kind,
                json.dumps(stats, default=str) if stats is not None else None,
                job_id,
            ),
        )
        return self.get(job_id)

    def interrupt_stale(self, source: str) -> int:
        """Mark ``source``'s ``running`` jobs as interrupted (the caller holds the source lock)."""
        cur = self._con().execute(
            "UPDATE jobs SET status = 'interrupted', finished_at = ?, "
            "error = 'the process running this refresh stopped before it finished; the last good version kept "
            "serving' WHERE source = ? AND status = 'running'",
            (_now(), source),
        )
        return cur.rowcount

    def get(self, job_id: int) -> JobRecord:
        row = self._con().execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return JobRecord.from_row(row)

    def list(self, *, source: str | None = None, status: str | None = None, limit: int = 50) -> list[JobRecord]:
        """The newest ``limit`` jobs, optionally of one source or status."""
        where, params = [], []
        if source is not None:
            where.append("source = ?")
            params.append(source)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._con().execute(
            f"SELECT {_COLUMNS} FROM jobs {clause} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [JobRecord.from_row(r) for r in rows.fetchall()]

    def last(self, source: str) -> JobRecord | None:
        """The most recent job of ``source`` (any status)."""
        found = self.list(source=source, limit=1)
        return found[0] if found else None
