"""Refresh sources now or on their schedules: locks, retries, job history.

A source's ``schedule`` is a cron expression (``"*/15 * * * *"``, via ``croniter``) or an
interval (``"30s"``, ``"15m"``, ``"1h30m"``, ``"1d"``). A refresh is ``grounded.ingest.sources.sync_source``:
an incremental sync into a new version, published only when complete.

- **One refresh per source at a time**, across processes: ``<kb>/locks/<source>.lock`` (flock).
  The knowledge base's own write lock serialises different sources; a refresh that finds it
  taken waits and retries like any retriable error.
- **Retries**: :class:`RetriableConnectorError` (and a busy write lock) retry after
  ``backoff_s * 2**attempt`` (capped at ``backoff_max_s``, with jitter) up to ``max_retries``
  times; a :class:`FatalConnectorError` or any other error fails the job at once.
- **History**: every job in ``<kb>/jobs.sqlite`` (:mod:`grounded.ops.jobs`), shared by processes, so
  several schedulers (workers, hosts on shared storage) never run the same due refresh twice.

Example::

    refresher = Refresher(kb)
    job = refresher.refresh("shop")          # runs now, in this thread
    Scheduler(refresher).run_forever()       # or .start() for a background thread
"""

from __future__ import annotations

import fcntl
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING

from croniter import croniter

from grounded.errors import (
    ConfigError,
    GroundedError,
    KnowledgeBaseLocked,
    NotFound,
    RetriableConnectorError,
)
from grounded.ops.jobs import JOBS_FILE, JobRecord, JobStore
from grounded.ops.metrics import REFRESH_DURATION, REFRESHES

if TYPE_CHECKING:
    from grounded.kb import KnowledgeBase

__all__ = ["Refresher", "Schedule", "Scheduler", "parse_schedule"]

log = logging.getLogger("grounded.ops.scheduler")

_INTERVAL = re.compile(r"^(?:\d+[smhd])+$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule: a cron expression or a fixed interval."""

    text: str
    interval_s: float | None = None

    def next_after(self, when: datetime) -> datetime:
        """The first run strictly after ``when`` (UTC)."""
        if self.interval_s is not None:
            return when + timedelta(seconds=self.interval_s)
        nxt: datetime = croniter(self.text, when).get_next(datetime)
        return nxt

    def first_due(self, last_start: datetime | None, now: datetime) -> datetime:
        """When the next run is due, given the last one (intervals run at once when never run)."""
        if last_start is None:
            return now if self.interval_s is not None else self.next_after(now)
        return self.next_after(last_start)


def parse_schedule(text: str, *, source: str = "?") -> Schedule:
    """``"15m"``-style intervals or five-field cron expressions; anything else is a ConfigError."""
    spec = text.strip().lower().replace(" ", "") if _INTERVAL.match(text.strip().lower().replace(" ", "")) else None
    if spec:
        seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", spec))
        if seconds < 1:
            raise ConfigError(f"source {source!r}: schedule {text!r} is zero; use at least 1s")
        return Schedule(text, float(seconds))
    if croniter.is_valid(text.strip()):
        return Schedule(text.strip())
    raise ConfigError(
        f"source {source!r}: schedule {text!r} is neither an interval ('30s', '15m', '1h30m', '1d') "
        "nor a cron expression ('*/15 * * * *')"
    )


class _SourceLock:
    """An exclusive flock on ``<kb>/locks/<source>.lock``, held until :meth:`release`."""

    def __init__(self, fh: IO[str], source: str) -> None:
        self.fh = fh
        self.source = source

    def release(self) -> None:
        self.fh.close()


class Refresher:
    """Runs refreshes of one knowledge base's configured sources and records them."""

    def __init__(
        self,
        kb: KnowledgeBase,
        jobs: JobStore | None = None,
        *,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.kb = kb
        self.settings = kb.settings.scheduler
        self.jobs = jobs or JobStore(kb.path / JOBS_FILE, keep=self.settings.history)
        self.sleep = sleep
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    # -- locking ----------------------------------------------------------------------------------

    def _acquire(self, source: str) -> _SourceLock:
        folder = self.kb.path / "locks"
        folder.mkdir(exist_ok=True)
        fh = open(folder / f"{source}.lock", "a+")  # noqa: SIM115 - released by the job's runner
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            fh.close()
            raise KnowledgeBaseLocked(
                f"source {source!r} is already being refreshed (by this or another process); "
                "see GET /v1/jobs or wait for it to finish"
            ) from exc
        return _SourceLock(fh, source)

    @contextmanager
    def locked(self, source: str) -> Iterator[None]:
        """Hold ``source``'s refresh lock (raises KnowledgeBaseLocked at once when taken)."""
        lock = self._acquire(source)
        try:
            yield
        finally:
            lock.release()

    # -- running ----------------------------------------------------------------------------------

    def _config_names(self) -> list[str]:
        return list(self.kb.settings.sources)

    def _start(self, source: str, trigger: str) -> tuple[_SourceLock, JobRecord]:
        if source not in self.kb.settings.sources:
            known = ", ".join(sorted(self.kb.settings.sources)) or "none"
            raise NotFound(f"no source named {source!r} is configured; configured sources: {known}")
        lock = self._acquire(source)
        try:
            self.jobs.interrupt_stale(source)
            job = self.jobs.start(source, trigger, at=self.clock())
        except BaseException:
            lock.release()
            raise
        return lock, job

    def refresh(self, source: str, *, trigger: str = "manual", full: bool = False) -> JobRecord:
        """Refresh ``source`` now, in this thread; returns the finished job (failed or not)."""
        lock, job = self._start(source, trigger)
        return self._run(lock, job, full=full)

    def refresh_in_background(self, source: str, *, trigger: str = "api") -> JobRecord:
        """Start refreshing ``source`` in a thread; returns the ``running`` job at once."""
        lock, job = self._start(source, trigger)
        thread = threading.Thread(target=self._run, args=(lock, job), name=f"refresh-{source}", daemon=True)
        thread.start()
        return job

    def backoff(self, attempt: int) -> float:
        """Delay before retry ``attempt`` (1-based): exponential, capped, with up to 25 % jitter."""
        base = min(self.settings.backoff_max_s, self.settings.backoff_s * 2 ** (attempt - 1))
        return float(base * (1 + random.uniform(0, 0.25)))

    def _run(self, lock: _SourceLock, job: JobRecord, *, full: bool = False) -> JobRecord:
        from grounded.ingest.sources import sync_source

        source = job.source
        started = time.perf_counter()
        attempts = 0
        try:
            while True:
                attempts += 1
                self.jobs.attempt(job.id, attempts)
                try:
                    config = self.kb.settings.sources[source]
                    stats = sync_source(self.kb.store, source, config, configured=self._config_names(), full=full)
                except (RetriableConnectorError, KnowledgeBaseLocked) as exc:
                    if attempts > self.settings.max_retries:
                        return self._failed(job, exc, started, attempts)
                    delay = self.backoff(attempts)
                    log.warning(
                        "refresh of %s failed (%s), retry %d in %.1f s",
                        source,
                        exc,
                        attempts,
                        delay,
                        extra={"source": source, "job": job.id},
                    )
                    self.jobs.attempt(job.id, attempts, str(exc), type(exc).__name__)
                    self.sleep(delay)
                except GroundedError as exc:  # fatal connector errors, config errors: no retry
                    return self._failed(job, exc, started, attempts)
                except Exception as exc:
                    log.exception("refresh of %s failed unexpectedly", source, extra={"source": source})
                    return self._failed(job, exc, started, attempts)
                else:
                    elapsed = time.perf_counter() - started
                    REFRESH_DURATION.labels(source=source, status="succeeded").observe(elapsed)
                    REFRESHES.labels(source=source, status="succeeded").inc()
                    log.info("refreshed %s: version %s", source, stats.version, extra={"source": source, "job": job.id})
                    return self.jobs.finish(
                        job.id,
                        "succeeded",
                        duration_s=elapsed,
                        version=stats.version,
                        stats={k: v for k, v in asdict(stats).items() if k not in ("version", "skipped")},
                    )
        finally:
            lock.release()

    def _failed(self, job: JobRecord, exc: BaseException, started: float, attempts: int) -> JobRecord:
        elapsed = time.perf_counter() - started
        REFRESH_DURATION.labels(source=job.source, status="failed").observe(elapsed)
        REFRESHES.labels(source=job.source, status="failed").inc()
        message = str(exc) if isinstance(exc, GroundedError) else f"unexpected {type(exc).__name__}: {exc}"
        log.error(
            "refresh of %s failed after %d attempt(s): %s",
            job.source,
            attempts,
            message,
            extra={"source": job.source, "job": job.id},
        )
        self.jobs.attempt(job.id, attempts)
        return self.jobs.finish(job.id, "failed", duration_s=elapsed, error=message, error_kind=type(exc).__name__)


class Scheduler:
    """Runs each scheduled source when due (plus jitter), one refresh at a time, until stopped."""

    def __init__(self, refresher: Refresher, *, clock: Callable[[], datetime] | None = None) -> None:
        self.refresher = refresher
        self.kb = refresher.kb
        self.clock = clock or (lambda: datetime.now(UTC))
        refresher.clock = self.clock  # job start times and due times on one clock
        self.schedules = {
            name: parse_schedule(cfg.schedule, source=name)
            for name, cfg in sorted(self.kb.settings.sources.items())
            if cfg.enabled and cfg.schedule
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._due: dict[str, datetime] = {}
        # Sleeping between retries must end early on stop().
        refresher.sleep = self._stop.wait

    def next_runs(self) -> dict[str, datetime]:
        """Each scheduled source's next run (jitter included once planned)."""
        return {name: self._due.get(name) or self._plan(name) for name in self.schedules}

    def _plan(self, name: str) -> datetime:
        last = self.refresher.jobs.last(name)
        due = self.schedules[name].first_due(last.started_at if last else None, self.clock())
        jitter = random.uniform(0, self.refresher.settings.jitter_s)
        return due + timedelta(seconds=jitter)

    def run_pending(self) -> list[JobRecord]:
        """Refresh every source that is due now; returns the jobs run."""
        done: list[JobRecord] = []
        for name in self.schedules:
            if self._stop.is_set():
                break
            due = self._due.setdefault(name, self._plan(name))
            if due > self.clock():
                continue
            # Another process may have refreshed it since we planned: plan again from its history.
            last = self.refresher.jobs.last(name)
            if last is not None and self.schedules[name].next_after(last.started_at) > self.clock():
                self._due[name] = self._plan(name)
                continue
            try:
                done.append(self.refresher.refresh(name, trigger="schedule"))
            except KnowledgeBaseLocked:
                log.info("skipped scheduled refresh of %s: already running elsewhere", name)
            self._due[name] = self._plan(name)
        return done

    def seconds_until_next(self) -> float:
        if not self._due:
            return 1.0
        return max(0.0, min((d - self.clock()).total_seconds() for d in self._due.values()))

    def run_forever(self) -> None:
        """Loop until :meth:`stop` (or Ctrl-C when run in the foreground)."""
        log.info("scheduler started for %s", ", ".join(self.schedules) or "no scheduled sources")
        while not self._stop.is_set():
            try:
                self.run_pending()
            except Exception:
                log.exception("scheduler loop failed; trying again in a minute")
                self._stop.wait(60)
                continue
            self._stop.wait(min(60.0, max(0.05, self.seconds_until_next())))

    def start(self) -> Scheduler:
        """Run in a daemon thread (a refresh cut short by exit leaves the last good version)."""
        self._thread = threading.Thread(target=self.run_forever, name="grounded-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
