"""``POST /v1/sources/{name}/refresh`` while that source is refreshing: 409, until the job ends.

The source is a REST API on loopback whose answer waits on a gate, so the first refresh is
really running (its connector is inside the HTTP request) when the second one is asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import grounded
from grounded.api.app import create_app
from tests.api.serving import serving
from tests.connectors.apiserver import APIServer, Reply


@pytest.fixture
def gated_api() -> Iterator[tuple[APIServer, threading.Event]]:
    api, gate = APIServer(), threading.Event()

    def items(query: dict[str, str], headers: dict[str, str]) -> Reply:
        gate.wait(60)
        return Reply(200, {"data": [{"id": 1, "text": "The gated item arrived after the gate opened."}]})

    api.route("/items", items)
    try:
        yield api, gate
    finally:
        gate.set()
        api.close()


def _jobs(client: httpx.Client, source: str) -> list[dict[str, Any]]:
    response = client.get("/v1/jobs", params={"source": source})
    assert response.status_code == 200, response.text
    return list(response.json()["jobs"])


def _finished(client: httpx.Client, source: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = _jobs(client, source)
        if jobs and jobs[0]["status"] != "running":
            return jobs[0]
        time.sleep(0.1)
    raise AssertionError(f"the refresh of {source} did not finish")


def test_a_second_refresh_of_a_running_source_is_409(
    tmp_path: Path, gated_api: tuple[APIServer, threading.Event]
) -> None:
    api, gate = gated_api
    rest = {"base_url": api.url, "endpoints": [{"name": "items", "path": "/items", "records": "data"}]}
    kb = grounded.open(
        tmp_path / "kb",
        sources={
            "gated": {"type": "rest", "params": rest},
        },
        scheduler={"jitter_s": 0},
    )
    with serving(create_app(kb)) as base, httpx.Client(base_url=base, timeout=30) as client:
        first = client.post("/v1/sources/gated/refresh")
        assert first.status_code == 202, first.text
        deadline = time.monotonic() + 30
        while not any(path == "/items" for path, _ in api.log):  # the connector is inside its request
            assert time.monotonic() < deadline, "the refresh never reached the API"
            time.sleep(0.02)

        second = client.post("/v1/sources/gated/refresh")
        assert second.status_code == 409, second.text
        assert second.headers["content-type"] == "application/problem+json"
        assert "'gated' is already being refreshed" in second.json()["detail"]
        assert [j["status"] for j in _jobs(client, "gated")] == ["running"]  # no second job was recorded

        assert client.post("/v1/sources/nope/refresh").status_code == 404  # not a 409 for what does not exist

        gate.set()
        done = _finished(client, "gated")
        assert (done["id"], done["status"]) == (first.json()["id"], "succeeded")
        again = client.post("/v1/sources/gated/refresh")  # the lock went with the job
        assert again.status_code == 202, again.text
        assert _finished(client, "gated")["status"] == "succeeded"
        hits = client.post("/v1/search", json={"query": "gated item", "filters": {"source": "gated"}}).json()["hits"]
        assert "gated item" in hits[0]["text"]
