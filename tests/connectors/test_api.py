"""REST, GitHub and MediaWiki connectors against a real HTTP server on loopback."""

from __future__ import annotations

import time
from typing import Any

import pytest
from apiserver import APIServer, Reply
from dbkit import mirror_rows

from connectors.github import GitHubConfig, GitHubConnector
from connectors.mediawiki import MediaWikiConfig, MediaWikiConnector
from connectors.rest import RestConfig, RestConnector
from connectors.testing import ConnectorContract, collect
from grounded.errors import FatalConnectorError, RetriableConnectorError
from grounded.kb import KnowledgeBase

pytestmark = pytest.mark.integration


def issue(n: int, updated: str, *, pull: bool = False) -> dict[str, Any]:
    """An issue as GET /repos/{owner}/{repo}/issues returns it (fields we read, plus some we ignore)."""
    body: dict[str, Any] = {
        "url": f"https://api.github.com/repos/acme/tool/issues/{n}",
        "html_url": f"https://github.com/acme/tool/issues/{n}",
        "id": 1000 + n,
        "node_id": f"I_{n}",
        "number": n,
        "title": f"Crash number {n}",
        "user": {"login": "octocat", "id": 1},
        "labels": [{"id": 7, "name": "bug", "color": "f29513"}],
        "state": "open",
        "locked": False,
        "comments": 0,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": updated,
        "closed_at": None,
        "body": f"Steps to reproduce crash {n}: run the tool.",
    }
    if pull:
        body["pull_request"] = {"url": f"https://api.github.com/repos/acme/tool/pulls/{n}"}
    return body


def github_routes(api: APIServer, issues: list[dict[str, Any]]) -> None:
    def list_issues(query: dict[str, str], headers: dict[str, str]) -> Reply:
        since = query.get("since", "")
        items = [i for i in issues if i["updated_at"] >= since]
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []
        if page * per_page < len(items):
            links.append(f'<{{base}}/repos/acme/tool/issues?per_page={per_page}&page={page + 1}&state=all>; rel="next"')
        return Reply(200, chunk, {"Link": ", ".join(links)} if links else {})

    api.route("/repos/acme/tool/issues", list_issues)
    api.route("/repos/acme/tool", lambda q, h: Reply(200, {"full_name": "acme/tool"}))


class TestGitHubContract(ConnectorContract):
    entry_point = "github"

    @pytest.fixture
    def connector(self, api: APIServer) -> GitHubConnector:
        github_routes(api, [issue(n, f"2024-02-{n:02d}T00:00:00Z") for n in range(1, 6)])
        return GitHubConnector(GitHubConfig(repos=["acme/tool"], api_url=api.url))

    @pytest.fixture
    def failing_connector(self, api: APIServer) -> GitHubConnector:
        api.route("/repos/acme/private", lambda q, h: Reply(401, {"message": "Bad credentials"}))
        return GitHubConnector(GitHubConfig(repos=["acme/private"], api_url=api.url))


def test_github_incremental_link_pages_and_retry_after(api: APIServer, kb: KnowledgeBase) -> None:
    issues = [issue(n, f"2024-02-{n:02d}T00:00:00Z", pull=n == 3) for n in range(1, 251)[:27]]
    github_routes(api, issues)
    src = GitHubConnector(GitHubConfig(repos=["acme/tool"], api_url=api.url, per_page=10))
    first = kb.sync("gh", src)
    assert first.documents_added == 26  # the pull request is skipped
    assert any(q.get("page") == "2" for _, q in api.log), api.log  # followed the Link header

    # Later: one issue changed; the API is rate-limited once (429 + Retry-After) before answering.
    issues[4] = {**issue(5, "2024-03-01T00:00:00Z"), "title": "Crash 5, now fixed", "state": "closed"}
    served = api.routes["/repos/acme/tool/issues"]
    calls: list[float] = []

    def limited(query: dict[str, str], headers: dict[str, str]) -> Reply:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return Reply(429, {"message": "API rate limit exceeded"}, {"Retry-After": "1"})
        return served(query, headers)

    api.route("/repos/acme/tool/issues", limited)
    api.log.clear()
    second = kb.sync("gh", src)
    assert (second.documents_updated, second.documents_added) == (1, 0)
    assert calls[1] - calls[0] >= 0.95  # waited as Retry-After asked
    assert api.log[-1][1]["since"] == "2024-02-27T00:00:00Z"  # asked only for what changed
    assert mirror_rows(kb, "SELECT title FROM documents WHERE key = 'acme/tool#5'") == [
        ("acme/tool#5: Crash 5, now fixed",)
    ]


def mediawiki_routes(api: APIServer) -> None:
    """action=query&prop=extracts|info&formatversion=2 answers, with a continuation."""

    def query(q: dict[str, str], headers: dict[str, str]) -> Reply:
        if q.get("meta") == "siteinfo":
            return Reply(200, {"batchcomplete": True, "query": {"general": {"sitename": "Wikipedia"}}})
        pages = {
            "Python (programming language)": (23862, "Python is a high-level, general-purpose programming language."),
            "DuckDB": (64425405, "DuckDB is an open-source column-oriented relational database management system."),
        }
        found = []
        for title in q["titles"].split("|"):
            if title not in pages:
                found.append({"ns": 0, "title": title, "missing": True})
                continue
            pageid, text = pages[title]
            entry = {"pageid": pageid, "ns": 0, "title": title, "touched": "2024-05-01T12:00:00Z", "lastrevid": 1,
                     "fullurl": f"https://en.wikipedia.org/wiki/{title.replace(' ', '_')}"}  # fmt: skip
            # TextExtracts hands out extracts over continuations: DuckDB's comes in the second reply.
            if title != "DuckDB" or q.get("excontinue") == "1":
                entry["extract"] = text
            found.append(entry)
        body: dict[str, Any] = {"batchcomplete": True, "query": {"pages": found}}
        if "excontinue" not in q:
            body = {"continue": {"excontinue": "1", "continue": "||"}, "query": {"pages": found}}
        return Reply(200, body)

    api.route("/w/api.php", query)


class TestMediaWikiContract(ConnectorContract):
    entry_point = "mediawiki"

    @pytest.fixture
    def connector(self, api: APIServer) -> MediaWikiConnector:
        mediawiki_routes(api)
        titles = ["Python (programming language)", "DuckDB"]
        return MediaWikiConnector(MediaWikiConfig(api_url=f"{api.url}/w/api.php", titles=titles, rate_limit=100))


def test_mediawiki_continuation_and_missing_page(api: APIServer, kb: KnowledgeBase) -> None:
    mediawiki_routes(api)
    titles = ["Python (programming language)", "DuckDB", "No such page 123"]
    src = MediaWikiConnector(MediaWikiConfig(api_url=f"{api.url}/w/api.php", titles=titles, rate_limit=100))
    stats = kb.sync("wiki", src)
    assert stats.documents_added == 2
    assert any("No such page 123" in s for s in stats.skipped)
    assert mirror_rows(kb, "SELECT key, uri FROM documents ORDER BY key") == [
        ("23862", "https://en.wikipedia.org/wiki/Python_(programming_language)"),
        ("64425405", "https://en.wikipedia.org/wiki/DuckDB"),
    ]


def rest(api: APIServer, auth: dict[str, Any] | None = None, **endpoint: Any) -> RestConnector:
    config = {"base_url": api.url, "backoff": 0.01, "max_retries": 3, "max_pages": 50, "auth": auth or {}}
    return RestConnector(RestConfig(**config, endpoints=[{"name": "items", "path": "/items", **endpoint}]))


def test_rest_paginators(api: APIServer) -> None:
    items = [{"id": i, "text": f"item {i}", "name": f"n{i}"} for i in range(23)]
    api.route("/items", lambda q, h: Reply(200, {"data": items[int(q["page"]) * 10 - 10 : int(q["page"]) * 10]}))
    pager = {"type": "page", "size_param": "per_page", "page_size": 10}
    assert len([d for p in collect(rest(api, records="data", paginator=pager), "items") for d in p.records]) == 23
    api.route("/items", lambda q, h: Reply(200, {"results": items[int(q["offset"]) : int(q["offset"]) + 5]}))
    pager = {"type": "offset", "size_param": "limit", "page_size": 5}
    assert len([d for p in collect(rest(api, records="results", paginator=pager), "items") for d in p.records]) == 23

    def by_token(q: dict[str, str], h: dict[str, str]) -> Reply:
        start = int(q.get("after", 0))
        nxt = start + 7 if start + 7 < len(items) else None
        return Reply(200, {"items": items[start : start + 7], "meta": {"next": nxt}})

    api.route("/items", by_token)
    pager = {"type": "cursor", "cursor_path": "meta.next", "cursor_param": "after"}
    docs = [d for p in collect(rest(api, records="items", paginator=pager, title="name"), "items") for d in p.records]
    assert [d.key for d in docs] == [f"items/{i}" for i in range(23)]
    assert docs[3].title == "n3"


def test_rest_auth_retries_and_bad_responses(
    api: APIServer, kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITEMS_TOKEN", "s3cret")
    items = [{"id": i, "text": f"item {i}"} for i in range(3)]

    def guarded(q: dict[str, str], h: dict[str, str]) -> Reply:
        if h.get("authorization") != "Bearer s3cret":
            return Reply(401, {"error": "unauthorised"})
        return Reply(200, items)

    api.route("/items", guarded)
    auth = {"type": "bearer", "token_env": "ITEMS_TOKEN"}
    assert kb.sync("items", rest(api, auth=auth)).documents_added == 3
    monkeypatch.setenv("ITEMS_TOKEN", "wrong")
    with pytest.raises(FatalConnectorError, match=r"HTTP 401 .*check the credentials in \$ITEMS_TOKEN") as info:
        rest(api, auth=auth).check()
    assert "wrong" not in str(info.value)

    # Two 500s, then an answer: retried with backoff.
    api.script("/items", Reply(500, {"error": "boom"}), Reply(503, {}), Reply(200, items))
    assert len(collect(rest(api), "items")[0].records) == 3

    # Malformed JSON every time: a retriable error, and the KB keeps its last good version.
    version = kb.version
    api.script("/items", Reply(200, raw=b'{"data": [1, 2,'))
    with pytest.raises(RetriableConnectorError, match="malformed JSON"):
        kb.sync("items", rest(api))
    assert kb.version == version
    assert mirror_rows(kb, "SELECT count(*) FROM documents WHERE source = 'items'") == [(3,)]


def test_rest_page_that_never_ends_is_stopped(api: APIServer) -> None:
    api.route("/items", lambda q, h: Reply(200, {"data": [{"id": q["page"], "text": "again"}] * 10}))
    endless = rest(api, records="data", paginator={"type": "page", "page_size": 10})
    with pytest.raises(FatalConnectorError, match="still paging after 50 pages"):
        collect(endless, "items")
    api.route("/items", lambda q, h: Reply(200, {"data": [{"id": 1, "text": "x"}], "next": "same"}))
    looping = rest(api, records="data", paginator={"type": "cursor", "cursor_path": "next"})
    with pytest.raises(FatalConnectorError, match="cursor 'same' twice"):
        collect(looping, "items")


class TestRestContract(ConnectorContract):
    entry_point = "rest"

    @pytest.fixture
    def connector(self, api: APIServer) -> RestConnector:
        items = [{"id": i, "text": f"item {i}", "updated_at": f"2024-01-{i + 1:02d}T00:00:00Z"} for i in range(12)]

        def since(q: dict[str, str], h: dict[str, str]) -> Reply:
            fresh = [i for i in items if i["updated_at"] > q.get("since", "")]
            start = int(q.get("offset", 0))
            return Reply(200, {"data": fresh[start : start + 5]})

        api.route("/items", since)
        pager = {"type": "offset", "size_param": "limit", "page_size": 5}
        return rest(api, records="data", paginator=pager, updated="updated_at", incremental={"param": "since"})
