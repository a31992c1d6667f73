"""Scheduled and manual refreshes: schedules, retries, fatal errors, locks, job history."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import grounded
from grounded.errors import ConfigError, FatalConnectorError, KnowledgeBaseLocked, NotFound, RetriableConnectorError
from grounded.ingest import sources as sync_module
from grounded.ingest.builder import IngestStats
from grounded.kb import KnowledgeBase
from grounded.ops.scheduler import Refresher, Scheduler, parse_schedule
from tests.conftest import write_topics


def test_parse_schedule_intervals_and_cron() -> None:
    assert parse_schedule("30s").interval_s == 30
    assert parse_schedule("1h30m").interval_s == 5400
    assert parse_schedule("1d").interval_s == 86400
    cron = parse_schedule("*/15 * * * *")
    assert cron.interval_s is None
    start = datetime(2026, 1, 1, 10, 7, tzinfo=UTC)
    assert cron.next_after(start) == datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    assert cron.first_due(None, start) == datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    assert parse_schedule("15m").first_due(None, start) == start  # never run: an interval runs at once
    for bad in ("soon", "0s", "* * *", "61 * * * *"):
        with pytest.raises(ConfigError, match="schedule"):
            parse_schedule(bad, source="docs")


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    corpus = write_topics(tmp_path / "corpus", ("with", "pass"))
    return grounded.open(
        tmp_path / "kb",
        sources={
            "docs": {"type": "files", "params": {"path": str(corpus)}, "schedule": "10m"},
            "other": {"type": "files", "params": {"path": str(corpus)}, "schedule": "*/5 * * * *"},
        },
        scheduler={"jitter_s": 0, "backoff_s": 0.5, "max_retries": 2},
    )


class ScriptedSync:
    """Stands in for ``grounded.ingest.sources.sync_source``: raises the scripted errors, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, kb: KnowledgeBase, name: str, *args: Any, **kwargs: Any) -> IngestStats:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return IngestStats(documents_seen=1, version="000042", published=True)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def refresher(kb: KnowledgeBase, sleeps: list[float]) -> Refresher:
    return Refresher(kb, sleep=sleeps.append)


def test_retriable_errors_retry_with_growing_backoff(
    refresher: Refresher, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = ScriptedSync(RetriableConnectorError("503 from the API"), RetriableConnectorError("timeout"))
    monkeypatch.setattr(sync_module, "sync_source", scripted)
    job = refresher.refresh("docs")
    assert (job.status, job.attempts, job.version) == ("succeeded", 3, "000042")
    assert scripted.calls == 3
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 0.625
    assert 1.0 <= sleeps[1] <= 1.25


def test_fatal_errors_do_not_retry(refresher: Refresher, sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    scripted = ScriptedSync(FatalConnectorError("password authentication failed for user 'reader'"))
    monkeypatch.setattr(sync_module, "sync_source", scripted)
    job = refresher.refresh("docs")
    assert (job.status, job.attempts, job.error_kind) == ("failed", 1, "FatalConnectorError")
    assert "password authentication failed" in (job.error or "")
    assert sleeps == []


def test_retries_give_up_after_max_retries(
    refresher: Refresher, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module, "sync_source", ScriptedSync(*[RetriableConnectorError("429")] * 5))
    job = refresher.refresh("docs")
    assert (job.status, job.attempts, job.error_kind) == ("failed", 3, "RetriableConnectorError")
    assert len(sleeps) == 2
    history = refresher.jobs.list(source="docs")
    assert [j.status for j in history] == ["failed"]


def test_unknown_source_is_not_found(refresher: Refresher) -> None:
    with pytest.raises(NotFound, match="configured sources: docs, other"):
        refresher.refresh("nope")


def test_one_refresh_per_source_across_processes(refresher: Refresher, kb: KnowledgeBase) -> None:
    lock_file = kb.path / "locks" / "docs.lock"
    lock_file.parent.mkdir(exist_ok=True)
    script = (
        "import fcntl, sys, time\n"
        f"f = open({str(lock_file)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('locked', flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            with pytest.raises(KnowledgeBaseLocked, match="already being refreshed"):
                refresher.refresh("docs")
        finally:
            holder.kill()
    assert refresher.jobs.list() == []


def test_a_killed_job_is_marked_interrupted(refresher: Refresher, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = refresher.jobs.start("docs", "schedule")  # as if its process had been killed
    monkeypatch.setattr(sync_module, "sync_source", ScriptedSync())
    refresher.refresh("docs")
    assert refresher.jobs.get(stale.id).status == "interrupted"


def test_scheduler_runs_due_sources_once_even_with_two_schedulers(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = ScriptedSync()
    monkeypatch.setattr(sync_module, "sync_source", scripted)
    now = [datetime(2026, 3, 1, 12, 1, tzinfo=UTC)]
    first = Scheduler(Refresher(kb), clock=lambda: now[0])
    second = Scheduler(Refresher(kb), clock=lambda: now[0])  # another process, same job history
    assert [j.source for j in first.run_pending()] == ["docs"]  # interval never run: at once; cron waits
    assert second.run_pending() == []
    assert first.run_pending() == []
    now[0] += timedelta(minutes=5)
    assert [j.source for j in second.run_pending()] == ["other"]
    assert first.run_pending() == []
    now[0] += timedelta(minutes=6)
    ran = first.run_pending() + second.run_pending()
    assert sorted(j.source for j in ran) == ["docs", "other"]
    assert scripted.calls == 4
    assert {j.trigger for j in first.refresher.jobs.list()} == {"schedule"}


def test_real_refresh_publishes_a_version(refresher: Refresher, kb: KnowledgeBase) -> None:
    job = refresher.refresh("docs")
    assert job.status == "succeeded", job.error
    assert job.version == kb.version
    assert job.stats is not None
    assert job.stats["documents_added"] == 2
    again = refresher.refresh("docs")
    assert again.status == "succeeded"
    assert again.stats is not None
    assert again.stats["documents_unchanged"] == 2
