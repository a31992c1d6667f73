"""``POST /v1/query`` over a real uvicorn server on loopback: JSON, SSE, errors, concurrency."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

import grounded
from grounded.api.app import create_app
from tests.api.conftest import _free_port
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

QUESTION = "What does the assert statement do?"


def _events(text: str) -> list[tuple[str, object]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


@pytest.mark.slow
def test_query_answers_with_sentences_and_citations_then_streams_the_same(client: httpx.Client) -> None:
    response = client.post("/v1/query", json={"query": QUESTION, "k": 2}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["abstained"] is False
    assert body["sentences"]
    assert [c["id"] for c in body["citations"]] == [1, 2]
    for sentence in body["sentences"]:
        assert sentence["citations"]
        assert set(sentence["citations"]) <= {1, 2}
    citation = body["citations"][0]
    assert set(citation) >= {"id", "doc_id", "title", "uri", "start", "end", "text", "source", "synced_at"}
    assert citation["end"] - citation["start"] == len(citation["text"])
    assert body["index_version"]
    assert body["timings"]["total_ms"] > 0

    stream = client.post(
        "/v1/query", json={"query": QUESTION, "k": 2}, headers={"accept": "text/event-stream"}, timeout=300
    )
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = _events(stream.text)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "evidence"
    assert kinds[-1] == "answer"
    assert kinds.count("sentence") == len(body["sentences"])
    final = events[-1][1]
    assert isinstance(final, dict)
    assert final["cached"] is True  # the JSON request stored it
    for key in ("answer", "sentences", "citations", "abstained", "index_version"):
        assert final[key] == body[key]


def test_bad_input_is_a_problem(client: httpx.Client) -> None:
    for payload in ({"query": ""}, {"query": "x", "k": 0}, {"query": "x", "unknown": 1}):
        response = client.post("/v1/query", json=payload)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
    response = client.post("/v1/query", json={"query": "x", "filters": {"colour": "red"}})
    assert response.status_code == 422
    assert "unknown filter 'colour'" in response.json()["detail"]
    streamed = client.post(
        "/v1/query", json={"query": "x", "filters": {"colour": "red"}}, headers={"accept": "text/event-stream"}
    )
    assert streamed.status_code == 422
    assert streamed.headers["content-type"] == "application/problem+json"


@pytest.fixture(scope="module")
def slow_server(built_kb_path: Path, fake_backend: str) -> Iterator[str]:  # noqa: F811
    """A second server whose answer expert takes 8 s with a 4 s timeout."""
    kb = grounded.open(
        built_kb_path,
        create=False,
        experts={"answer": {"backend": fake_backend, "model": "slow:8", "timeout_s": 4.0}},
        answer={"cache": False},
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(kb), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the slow test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_expert_timeout_is_504_and_never_blocks_other_requests(slow_server: str) -> None:
    results: dict[str, httpx.Response] = {}

    def ask() -> None:
        results["query"] = httpx.post(f"{slow_server}/v1/query", json={"query": QUESTION}, timeout=30)

    asker = threading.Thread(target=ask)
    asker.start()
    time.sleep(0.5)  # the query is now waiting on the expert
    health = httpx.get(f"{slow_server}/healthz", timeout=30)
    search = httpx.post(f"{slow_server}/v1/search", json={"query": "assert", "k": 1}, timeout=30)
    # Both were answered while the query still waited on the expert: nothing queued behind it.
    assert asker.is_alive(), "/healthz and /v1/search waited for the slow expert"
    asker.join(timeout=30)
    assert health.status_code == 200
    assert search.status_code == 200
    response = results["query"]
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    assert "within 4 s" in response.json()["detail"]
    streamed = httpx.post(
        f"{slow_server}/v1/query", json={"query": QUESTION}, headers={"accept": "text/event-stream"}, timeout=30
    )
    events = _events(streamed.text)
    assert [kind for kind, _ in events] == ["evidence", "error"]
    error = events[-1][1]
    assert isinstance(error, dict)
    assert error["status"] == 504
