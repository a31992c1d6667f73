from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_search_returns_hits_with_offsets_and_document_identity(client: httpx.Client) -> None:
    response = client.post("/v1/search", json={"query": "context manager __exit__", "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["index_version"]
    assert len(body["hits"]) == 3
    top = body["hits"][0]
    assert top["title"] == "with"
    assert top["end"] - top["start"] == len(top["text"])
    assert {"score", "doc_id", "uri", "source", "chunk_id"} <= top.keys()
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_filters_apply_over_http(client: httpx.Client) -> None:
    response = client.post("/v1/search", json={"query": "loop", "k": 5, "filters": {"source": "nowhere"}})
    assert response.status_code == 200
    assert response.json()["hits"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "x", "k": 0}, "k"),
        ({"query": "x", "k": 1000}, "k"),
        ({"k": 3}, "query"),
        ({"query": "x", "colour": "red"}, "colour"),
    ],
)
def test_bad_requests_are_problem_json(client: httpx.Client, body: dict[str, object], field: str) -> None:
    response = client.post("/v1/search", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["title"] == "Invalid request"
    assert field in problem["detail"]


def test_unknown_filter_is_problem_json_naming_the_allowed_ones(client: httpx.Client) -> None:
    response = client.post("/v1/search", json={"query": "x", "filters": {"colour": "red"}})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "unknown filter 'colour'" in response.json()["detail"]
    assert "uri_prefix" in response.json()["detail"]


def test_malformed_json_is_problem_json(client: httpx.Client) -> None:
    response = client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_unknown_route_is_problem_json(client: httpx.Client) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["title"], problem["status"]) == ("Not found", 404)
    wrong_method = client.delete("/v1/search")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"


def test_healthz_reports_the_version(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["index_version"]


def test_openapi_documents_the_search_route(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/search" in spec["paths"]


@pytest.mark.parametrize(
    "metadata",
    [{"": "y"}, {"*": "y"}, {"a\nb": "y"}, {"x" * 201: "y"}, {"\x00": "y"}],
    ids=["empty", "wildcard", "newline", "too-long", "nul"],
)
def test_a_bad_metadata_filter_key_is_a_422_not_a_500(client: httpx.Client, metadata: dict[str, str]) -> None:
    """Issue 23, item 6: {"metadata": {"": "y"}} was a DuckDB JSON path error (500, connection reset)."""
    for route in ("/v1/search", "/v1/query"):
        response = client.post(route, json={"query": "loop", "filters": {"metadata": metadata}})
        assert response.status_code == 422, (route, response.text)
        assert "filter 'metadata' keys must be" in response.json()["detail"]


def test_metadata_filter_keys_match_whatever_characters_they_hold(client: httpx.Client) -> None:
    """Keys the store looks up as one JSON member: quotes, dots, brackets and accents are plain text."""
    for key in ('q"x', "d.e", "[0]", "é ü", "$", "a'b"):
        response = client.post("/v1/search", json={"query": "loop", "filters": {"metadata": {key: "y"}}})
        assert response.status_code == 200, (key, response.text)
        assert response.json()["hits"] == []
    typed = client.post("/v1/search", json={"query": "loop", "k": 3, "filters": {"metadata": {"type": "txt"}}})
    assert len(typed.json()["hits"]) == 3


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/v1/search", {"query": "x", "k": "10"}, "k"),
        ("/v1/search", {"query": "x", "k": True}, "k"),
        ("/v1/search", {"query": "x", "k": 3.0}, "k"),
        ("/v1/search", {"query": 5}, "query"),
        ("/v1/query", {"query": "x", "k": "3"}, "k"),
        ("/v1/query", {"query": "x", "cache": "false"}, "cache"),
        ("/v1/query", {"query": "x", "cache": 0}, "cache"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ],
)
def test_request_fields_are_strictly_typed(
    client: httpx.Client, route: str, body: dict[str, object], field: str
) -> None:
    """Issue 23, item 12: "10" and true were accepted as k; every request body validates strictly."""
    response = client.post(route, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.json()["detail"]
