"""Access control end to end, on a real server: keys, groups, admin routes, no leaks.

The knowledge base has a public source and a ``secret`` source readable by group ``staff``.
A key without ``staff`` must never see the secret's text, titles or counts: not in search,
answers, the answer cache, error messages or filters naming the source.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import grounded
from connectors.files import FilesConfig, FilesConnector
from grounded.access import effective_acl, readable_sources
from grounded.api.app import create_app
from grounded.errors import InvalidRequest, Unauthorized
from grounded.kb import KnowledgeBase
from grounded.ops.keys import KEYS_FILE, KeyStore
from tests.api.serving import serving
from tests.conftest import write_topics
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

SECRET_TEXT = (
    "Project Nightingale is the codename of the payroll replacement. "
    "Project Nightingale launches in March 2027 with a budget of four million euros."
)
SECRET_WORDS = ("payroll", "March 2027", "four million", "plan.txt")


@pytest.fixture(scope="module")
def acl_kb(tmp_path_factory: pytest.TempPathFactory, fake_backend: str) -> KnowledgeBase:  # noqa: F811
    root = tmp_path_factory.mktemp("acl")
    public = write_topics(root / "public", ("with", "lambda"))
    secret = root / "secret"
    secret.mkdir()
    (secret / "plan.txt").write_text(SECRET_TEXT, encoding="utf-8")
    kb = grounded.open(root / "kb", experts={"answer": {"backend": fake_backend, "model": "echo"}})
    kb.sync("public", FilesConnector(FilesConfig(path=public)))
    kb.sync("secret", FilesConnector(FilesConfig(path=secret)), acl=["staff"])
    return kb


@pytest.fixture(scope="module")
def tokens(acl_kb: KnowledgeBase) -> dict[str, str]:
    keys = KeyStore(acl_kb.path / KEYS_FILE)
    return {
        "staff": keys.create("alice", groups=["staff"])[0],
        "eng": keys.create("bob", groups=["eng"])[0],
        "admin": keys.create("ops", admin=True)[0],
        "revoked": keys.create("old", groups=["staff"])[0],
    }


@pytest.fixture(scope="module")
def url(acl_kb: KnowledgeBase, tokens: dict[str, str]) -> Iterator[str]:
    KeyStore(acl_kb.path / KEYS_FILE).revoke(tokens["revoked"].split("_")[1])
    with serving(create_app(acl_kb)) as base:
        yield base


def _client(url: str, token: str | None) -> httpx.Client:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def _assert_no_secret(text: str) -> None:
    for word in SECRET_WORDS:
        assert word not in text, f"secret text {word!r} leaked: {text[:500]}"


def test_keystore_hashes_and_revokes(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys.sqlite")
    assert keys.authenticate(None).admin  # no key yet: local development mode
    token, record = keys.create("ci", groups=["b", "a", "a"])
    assert record.groups == ("a", "b")
    assert token.encode() not in (tmp_path / "keys.sqlite").read_bytes()
    keys._has_keys = None
    principal = keys.authenticate(token)
    assert principal.groups == ("a", "b")
    assert principal.acl_groups == ("a", "b")
    assert not principal.admin
    with pytest.raises(Unauthorized):
        keys.authenticate(None)
    with pytest.raises(Unauthorized):
        keys.authenticate(token[:-2] + "xx")
    keys.revoke(record.id)
    with pytest.raises(Unauthorized):
        keys.authenticate(token)
    with pytest.raises(InvalidRequest, match="reserved"):
        keys.create("x", groups=["grounded:no-one"])


def test_readable_sources_for_tables() -> None:
    acls = {"public": [], "hr": ["hr"], "shop": ["staff", "eng"]}
    assert readable_sources(acls, None) is None
    assert readable_sources(acls, ("eng",)) == {"public", "shop"}
    assert readable_sources(acls, ()) == {"public"}


def test_effective_acl_narrows_never_widens() -> None:
    assert effective_acl([], ["x"]) == ("x",)
    assert effective_acl(["staff"], []) == ("staff",)
    assert effective_acl(["staff", "eng"], ["eng", "hr"]) == ("eng",)
    assert effective_acl(["staff"], ["hr"]) == ("grounded:no-one",)


def test_requests_need_a_valid_key(url: str, tokens: dict[str, str]) -> None:
    for token in (None, "gk_nope_nope", tokens["revoked"], "not-a-key"):
        with _client(url, token) as client:
            response = client.post("/v1/search", json={"query": "lambda"})
            assert response.status_code == 401
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["www-authenticate"] == "Bearer"
    with httpx.Client(base_url=url, headers={"x-api-key": tokens["eng"]}) as client:
        assert client.post("/v1/search", json={"query": "lambda"}).status_code == 200
    with httpx.Client(base_url=url) as client:  # operations probes stay open
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_search_shows_each_caller_only_its_sources(url: str, tokens: dict[str, str]) -> None:
    body = {"query": "when does Project Nightingale launch", "k": 10}
    with _client(url, tokens["staff"]) as client:
        staff = client.post("/v1/search", json=body).json()
    assert "secret" in {h["source"] for h in staff["hits"]}
    with _client(url, tokens["eng"]) as client:
        response = client.post("/v1/search", json=body)
    assert response.status_code == 200
    assert {h["source"] for h in response.json()["hits"]} <= {"public"}
    _assert_no_secret(response.text)
    with _client(url, tokens["admin"]) as client:
        assert "secret" in {h["source"] for h in client.post("/v1/search", json=body).json()["hits"]}


def test_naming_a_hidden_source_looks_like_naming_none(url: str, tokens: dict[str, str]) -> None:
    """Filtering on the secret source answers exactly like filtering on a source that does not exist."""
    with _client(url, tokens["eng"]) as client:
        outcomes = []
        for source in ("secret", "no-such-source"):
            for mode in ("hybrid", "bm25", "dense"):
                r = client.post(
                    "/v1/search", json={"query": "Nightingale codename", "filters": {"source": source}, "mode": mode}
                )
                body = r.json()
                body.pop("took_ms")
                outcomes.append((source, mode, r.status_code, body["hits"]))
        assert all(status == 200 and hits == [] for _, _, status, hits in outcomes)
        doc = client.post("/v1/search", json={"query": "x", "filters": {"uri_prefix": "file:"}, "k": 100})
        assert doc.status_code == 200, doc.text
        assert {h["source"] for h in doc.json()["hits"]} == {"public"}
        _assert_no_secret(doc.text)


def test_answers_and_cache_never_cross_groups(url: str, tokens: dict[str, str]) -> None:
    question = {"query": "When does Project Nightingale launch?", "k": 3}
    with _client(url, tokens["staff"]) as client:
        first = client.post("/v1/query", json=question).json()
        again = client.post("/v1/query", json=question).json()
    assert any(c["source"] == "secret" for c in first["citations"])
    assert "payroll" in first["answer"]
    assert again["cached"] is True
    for who in ("eng", "eng"):  # twice: the second would be a cache hit of its own
        with _client(url, tokens[who]) as client:
            response = client.post("/v1/query", json=question)
            streamed = client.post("/v1/query", json=question, headers={"accept": "text/event-stream"})
        assert response.status_code == 200
        answer = response.json()
        assert all(c["source"] == "public" for c in answer["citations"])
        _assert_no_secret(response.text)
        assert streamed.status_code == 200, streamed.text
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert "event: answer" in streamed.text, streamed.text[:300]  # a whole stream, not an error cut short
        _assert_no_secret(streamed.text)


def _chat(client: httpx.Client, question: str, *, stream: bool) -> tuple[httpx.Response, str]:
    """A chat completion (streamed or not) and the answer text it carries."""
    body = {"model": "grounded", "messages": [{"role": "user", "content": question}], "stream": stream}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    if not stream:
        return response, response.json()["choices"][0]["message"]["content"]
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return response, text


def test_streaming_chat_completions_keep_a_restricted_key_out(url: str, tokens: dict[str, str]) -> None:
    question = "When does Project Nightingale launch?"
    with _client(url, tokens["staff"]) as client:  # the positive control: the same stream carries the secret
        _, staff_text = _chat(client, question, stream=True)
    assert "payroll" in staff_text
    with _client(url, tokens["eng"]) as client:
        for _ in range(2):  # the second time the answer cache is warm
            streamed, text = _chat(client, question, stream=True)
            whole, whole_text = _chat(client, question, stream=False)
            _assert_no_secret(streamed.text)
            _assert_no_secret(whole.text)
            assert text == whole_text


def test_admin_routes_need_an_admin_key(url: str, tokens: dict[str, str]) -> None:
    for who in ("staff", "eng"):
        with _client(url, tokens[who]) as client:
            for method, path in (
                ("GET", "/v1/sources"),
                ("GET", "/v1/jobs"),
                ("GET", "/metrics"),
                ("POST", "/v1/sources/secret/refresh"),
                ("POST", "/v1/sources/no-such/refresh"),
            ):
                response = client.request(method, path)
                assert response.status_code == 403, (who, path)
                _assert_no_secret(response.text)
                assert "secret" not in response.json()["detail"]
    with _client(url, tokens["admin"]) as client:
        assert client.get("/v1/jobs").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "grounded_index_chunks" in metrics.text


def test_new_keys_apply_without_restart(tmp_path: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    kb.ingest(write_topics(tmp_path / "c", ("with",)), source="docs")
    with serving(create_app(kb)) as base, httpx.Client(base_url=base) as client:
        assert client.post("/v1/search", json={"query": "with"}).status_code == 200  # development mode
        token, _ = KeyStore(kb.path / KEYS_FILE).create("first", groups=["a"])
        time.sleep(1.1)  # the "any key?" answer is cached for a second
        assert client.post("/v1/search", json={"query": "with"}).status_code == 401
        ok = client.post("/v1/search", json={"query": "with"}, headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200
