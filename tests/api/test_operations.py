"""Operability: readiness, Prometheus metrics, request ids and JSON logs, size and rate limits,
and the admin routes over real refreshes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import grounded
from grounded.api.app import create_app
from grounded.ingest.sources import sync_sources
from grounded.kb import KnowledgeBase
from grounded.ops.keys import KEYS_FILE, KeyStore
from grounded.ops.logs import JsonFormatter
from tests.api.serving import serving
from tests.conftest import write_topics


def test_readyz_waits_for_a_published_version(tmp_path: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    with serving(create_app(kb)) as base, httpx.Client(base_url=base) as client:
        assert client.get("/healthz").json() == {"status": "ok", "index_version": None}
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["reason"] == "no index version is published yet"
        search = client.post("/v1/search", json={"query": "anything"})
        assert search.status_code == 503
        assert search.headers["content-type"].startswith("application/problem+json")
        kb.ingest(write_topics(tmp_path / "c", ("pass",)), source="docs")
        assert client.get("/readyz").json() == {"status": "ready", "index_version": "000001"}


@pytest.fixture(scope="module")
def ops_kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    root = tmp_path_factory.mktemp("ops")
    corpus = write_topics(root / "corpus", ("with", "pass"))
    kb = grounded.open(
        root / "kb",
        server={"rate_limit": 0, "max_body_bytes": 4096},
        sources={
            "docs": {"type": "files", "params": {"path": str(corpus)}, "schedule": "1h", "acl": ["staff"]},
            "broken": {"type": "files", "params": {"path": str(root / "missing")}, "schedule": "*/5 * * * *"},
        },
        scheduler={"backoff_s": 0.01, "jitter_s": 0},
    )
    assert all(r.ok for r in sync_sources(kb.store, kb.settings, ["docs"]))
    return kb


@pytest.fixture(scope="module")
def admin(ops_kb: KnowledgeBase) -> Iterator[httpx.Client]:
    token, _ = KeyStore(ops_kb.path / KEYS_FILE).create("ops", admin=True)
    with (
        serving(create_app(ops_kb)) as base,
        httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=30) as client,
    ):
        yield client


def _wait_job(client: httpx.Client, source: str) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = client.get("/v1/jobs", params={"source": source}).json()["jobs"]
        if jobs and jobs[0]["status"] != "running":
            return dict(jobs[0])
        time.sleep(0.2)
    raise AssertionError(f"the refresh of {source} did not finish")


def test_refresh_routes_and_job_history(admin: httpx.Client) -> None:
    started = admin.post("/v1/sources/docs/refresh")
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running"
    assert admin.post("/v1/sources/nope/refresh").status_code == 404
    done = _wait_job(admin, "docs")
    assert done["status"] == "succeeded"
    assert done["trigger"] == "api"

    assert admin.post("/v1/sources/broken/refresh").status_code == 202
    failed = _wait_job(admin, "broken")
    assert (failed["status"], failed["attempts"], failed["error_kind"]) == ("failed", 1, "FatalConnectorError")
    assert "does not exist" in str(failed["error"])

    sources = {s["name"]: s for s in admin.get("/v1/sources").json()["sources"]}
    assert sources["docs"]["acl"] == ["staff"]
    assert sources["docs"]["documents"] == 2
    assert sources["docs"]["last_job"]["status"] == "succeeded"
    assert sources["docs"]["next_run"] is not None
    assert sources["broken"]["last_job"]["status"] == "failed"
    assert [j["source"] for j in admin.get("/v1/jobs", params={"limit": 2}).json()["jobs"]] == ["broken", "docs"]


def test_metrics_expose_requests_refreshes_and_index(admin: httpx.Client) -> None:
    admin.post("/v1/search", json={"query": "with statement"})
    text = admin.get("/metrics").text
    assert 'grounded_request_duration_seconds_bucket{le="0.1",method="POST",route="/v1/search",status="200"}' in text
    assert "grounded_retrieval_hits_count" in text
    assert "grounded_index_chunks" in text
    assert "grounded_index_bytes" in text
    assert 'grounded_refreshes_total{source="broken",status="failed"}' in text


def test_metrics_time_every_answer_stage(admin: httpx.Client) -> None:
    answered = admin.post("/v1/query", json={"query": "What does the with statement do?", "cache": False}, timeout=300)
    assert answered.status_code == 200, answered.text
    stages = {k.removesuffix("_ms") for k in answered.json()["timings"] if k.endswith("_ms")}
    assert {"retrieve", "total"} <= stages
    text = admin.get("/metrics").text
    for stage in stages:
        assert f'grounded_answer_stage_duration_seconds_count{{stage="{stage}"}}' in text, stage


def test_request_id_is_echoed_or_made(admin: httpx.Client) -> None:
    given = admin.get("/healthz", headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = admin.get("/healthz", headers={"x-request-id": "bad id with spaces"})
    assert len(made.headers["x-request-id"]) == 32


def test_body_size_limit(admin: httpx.Client) -> None:
    big = admin.post(
        "/v1/search", content=b'{"query": "' + b"x" * 5000 + b'"}', headers={"content-type": "application/json"}
    )
    assert big.status_code == 413
    assert big.headers["content-type"] == "application/problem+json"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"query": "'
        yield b"y" * 5000
        yield b'"}'

    streamed = admin.post("/v1/search", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_rate_limit_per_caller(ops_kb: KnowledgeBase) -> None:
    limited_kb = grounded.open(ops_kb.path, create=False, server={"rate_limit": 1, "rate_burst": 3})
    with serving(create_app(limited_kb)) as base, httpx.Client(base_url=base) as client:
        token, _ = KeyStore(ops_kb.path / KEYS_FILE).create("busy", groups=["x"])
        headers = {"authorization": f"Bearer {token}"}
        statuses = [client.post("/v1/search", json={"query": "with"}, headers=headers).status_code for _ in range(6)]
        assert statuses[:3] == [200] * 3
        assert 429 in statuses
        limited = client.post("/v1/search", json={"query": "with"}, headers=headers)
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert int(limited.headers["retry-after"]) >= 1
        assert client.get("/healthz").status_code == 200  # probes are never limited


def test_json_log_lines_carry_the_request_id() -> None:
    from grounded.ops.logs import REQUEST_ID

    token = REQUEST_ID.set("req-42")
    try:
        record = logging.LogRecord("grounded.ops.keys", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
        record.status = 200
        line = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["request_id"] == "req-42"
    assert line["msg"] == "GET /x"
    assert line["status"] == 200
    assert line["level"] == "info"
