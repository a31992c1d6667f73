"""The long-running commands as users run them: ``grounded serve --workers 2``, ``grounded scheduler``
and ``grounded demo``, each a real process on loopback, stopped with a signal.

- ``serve``: two worker processes; the scheduler thread publishes the first version (the server
  is not ready before); ``/metrics`` from any worker sums every worker's requests and shows the
  scheduler's refresh (which ran in the parent process); SIGTERM lets a request in flight finish
  and the process exits 0.
- ``scheduler``: runs a source on its interval until SIGTERM, recording each run as a job.
- ``demo``: builds a slice of the Python reference (``--topics``), prints example requests that
  work against the server it then starts.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from grounded.ops.jobs import JOBS_FILE, JobStore
from tests.api.serving import free_port
from tests.cli.processes import ROOT, grounded_process, stop, wait_http
from tests.conftest import write_topics
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, schedule: str, extra: str = "") -> Path:
    corpus = write_topics(tmp_path / "corpus", ("pass", "break"))
    (tmp_path / "grounded.toml").write_text(
        f'kb_path = "{tmp_path / "kb"}"\n{extra}\n[scheduler]\njitter_s = 0\n\n'
        f'[sources.docs]\ntype = "files"\nschedule = "{schedule}"\nparams = {{ path = "{corpus}" }}\n',
        encoding="utf-8",
    )
    return tmp_path


def _plugin_env() -> dict[str, str]:
    """PYTHONPATH for a child process to find the fake expert plugin (installed by ``fake_backend``)."""
    import sys

    site = next(p for p in sys.path if re.search(r"plugin-site\d*$", p))
    return {"PYTHONPATH": f"{site}:{ROOT}"}


def _count(metrics: str, name: str, labels: str) -> float:
    found = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", metrics, re.M)
    assert found, f"{name}{{{labels}}} missing from /metrics:\n{metrics[:3000]}"
    return float(found.group(1))


@pytest.mark.usefixtures("fake_backend")
def test_serve_with_two_workers_schedules_merges_metrics_and_drains_on_sigterm(tmp_path: Path) -> None:
    extra = '[server]\nrate_limit = 0\ngraceful_timeout_s = 30\n[experts.answer]\nbackend = "fake"\nmodel = "slow:3"\n'
    cwd = _config(tmp_path, "1h", extra)
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    args = ("serve", "--workers", "2", "--port", str(port))
    with grounded_process(*args, cwd=cwd, log=log, env=_plugin_env()) as proc:
        # Nothing was ingested: only the scheduler's first run (an interval runs at once) makes it ready.
        wait_http(f"{base}/readyz", proc, log)
        jobs = httpx.get(f"{base}/v1/jobs", timeout=10).json()["jobs"]
        assert [(j["source"], j["trigger"], j["status"]) for j in jobs] == [("docs", "schedule", "succeeded")]

        for _ in range(6):  # a new connection each: the two workers share them
            assert httpx.post(f"{base}/v1/search", json={"query": "leave a loop"}, timeout=30).status_code == 200
        search = 'method="POST",route="/v1/search",status="200"'
        for _ in range(4):  # whichever worker answers, it reports all six and the parent's refresh
            metrics = httpx.get(f"{base}/metrics", timeout=10).text
            assert _count(metrics, "grounded_request_duration_seconds_count", search) == 6
            assert _count(metrics, "grounded_refreshes_total", 'source="docs",status="succeeded"') == 1

        answer: dict[str, Any] = {}

        def ask() -> None:
            response = httpx.post(f"{base}/v1/query", json={"query": "How do I leave a loop?"}, timeout=60)
            answer.update(status=response.status_code, body=response.json())

        asking = threading.Thread(target=ask)
        asking.start()
        time.sleep(1.0)  # the fake expert takes 3 s: the question is in flight
        started = time.monotonic()
        assert stop(proc, signal.SIGTERM) == 0, log.read_text()[-3000:]
        asking.join(30)
        assert answer.get("status") == 200, (answer, log.read_text()[-3000:])
        assert answer["body"]["answer"].endswith("[1]")
        assert time.monotonic() - started < 30
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/healthz", timeout=5)


def test_scheduler_runs_sources_on_their_interval_until_sigterm(tmp_path: Path) -> None:
    cwd = _config(tmp_path, "2s")
    log = tmp_path / "scheduler.log"
    with grounded_process("scheduler", cwd=cwd, log=log) as proc:
        history = tmp_path / "kb" / JOBS_FILE
        deadline = time.monotonic() + 180
        while not history.exists():  # the command creates the knowledge base first
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no job history:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        jobs = JobStore(history)
        while len([j for j in jobs.list(source="docs") if j.status == "succeeded"]) < 2:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"fewer than two scheduled runs:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        assert stop(proc, signal.SIGTERM, timeout=30) == 0, log.read_text()[-3000:]
    done = [j for j in jobs.list(source="docs") if j.status != "running"]
    assert {(j.trigger, j.status) for j in done} == {("schedule", "succeeded")}
    first, second = sorted(done, key=lambda j: j.started_at)[:2]
    assert (second.started_at - first.started_at).total_seconds() >= 2  # on the interval, not in a loop
    assert first.version == "000001"
    assert "scheduler started for docs" in log.read_text()


def test_scheduler_without_a_schedule_says_how_to_add_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from grounded.cli import app

    (tmp_path / "grounded.toml").write_text(f'kb_path = "{tmp_path / "kb"}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["scheduler", "--kb", str(tmp_path / "kb")])
    assert result.exit_code == 2
    assert "no source has a schedule" in result.output


def test_demo_builds_a_slice_prints_working_examples_and_serves(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "demo.log"
    kb = tmp_path / "demo-kb"
    # --no-checks: training the checks model is tested in tests/grounded/checks, not again here.
    args = ("demo", "--kb", str(kb), "--topics", "with,pass,break", "--no-checks", "--port", str(port))
    with grounded_process(*args, cwd=tmp_path, log=log) as proc:
        assert proc.stdout is not None
        printed: list[str] = []
        for line in proc.stdout:
            printed.append(line)
            if "/docs for the OpenAPI documentation" in line:
                break
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, log)
        out = "".join(printed)
        assert f"demo knowledge base ready in {kb}: 3 documents" in out
        examples = re.findall(rf"curl -s (http://127\.0\.0\.1:{port}/v1/\w+) .* -d '(.+)'$", out, re.M)
        assert [url.rsplit("/", 1)[1] for url, _ in examples] == ["search", "search", "search", "query"], out
        for url, body in examples:  # every printed example works as printed
            response = httpx.post(url, json=json.loads(body), timeout=300)
            assert response.status_code == 200, (body, response.text)
            if url.endswith("/search"):
                assert response.json()["hits"], body
            else:  # the real answer model over the slice: an answer or an abstention, always with evidence
                assert response.json()["citations"], body
        assert stop(proc, signal.SIGINT) == 0, log.read_text()[-3000:]
