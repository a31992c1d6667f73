"""Issues (and optionally pull requests) of GitHub repositories, via the REST API.

``GET /repos/{owner}/{repo}/issues?state=all&sort=updated&direction=asc&since=...&per_page=100``
pages with the ``Link`` header. The list includes pull requests (they carry a ``pull_request``
key); they are skipped unless ``include_pulls``. Each sync asks only for issues updated since the
newest ``updated_at`` it has seen. Rate limits (403 with ``x-ratelimit-remaining: 0``, or 429)
wait until ``x-ratelimit-reset``/``Retry-After``.
See https://docs.github.com/en/rest/issues/issues#list-repository-issues.

Example ``grounded.toml``::

    [sources.gh]
    type = "github"
    params = { repos = ["duckdb/duckdb"], token_env = "GITHUB_TOKEN" }
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from connectors._http import HttpClient
from connectors.base import Cursor, Document, Page, StreamSpec
from connectors.rest import PaginatorConfig, paginate, parse_time
from connectors.sql import secret_from_env
from grounded.errors import FatalConnectorError

__all__ = ["GitHubConfig", "GitHubConnector"]


class GitHubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    repos: list[str] = Field(min_length=1, description="Repositories as owner/name.")
    token_env: str | None = Field(None, description="Variable holding a token (raises the rate limit).")
    api_url: str = Field("https://api.github.com", description="API root (GitHub Enterprise: https://HOST/api/v3).")
    include_pulls: bool = Field(False, description="Also read pull requests.")
    per_page: int = Field(100, ge=1, le=100, description="Issues per request (the API allows up to 100).")
    rate_limit: float | None = Field(None, gt=0, description="Most requests per second.")
    max_retries: int = Field(5, ge=0)
    max_pages: int = Field(10_000, ge=1)
    acl: list[str] = Field(default_factory=list)


class GitHubConnector:
    """Documents from GitHub issues, synced incrementally by ``updated_at``."""

    name: ClassVar[str] = "github"
    Config: ClassVar[type[BaseModel]] = GitHubConfig

    def __init__(self, config: GitHubConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        for repo in config.repos:
            if repo.count("/") != 1:
                raise FatalConnectorError(f"github: repo {repo!r} must be written owner/name")
        self.config = config
        self.transport = transport

    def client(self) -> HttpClient:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        token = secret_from_env(self.config.token_env, "github")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return HttpClient(
            self.config.api_url,
            headers=headers,
            rate_limit=self.config.rate_limit,
            max_retries=self.config.max_retries,
            max_wait=3600,
            transport=self.transport,
            secret_hint=f"${self.config.token_env}" if self.config.token_env else "",
        )

    def check(self) -> None:
        client = self.client()
        try:
            for repo in self.config.repos:
                client.get(f"/repos/{repo}")
        finally:
            client.close()

    def streams(self) -> list[StreamSpec]:
        return [
            StreamSpec(name=repo, kind="documents", full_scan=False, cursor_field="updated_at")
            for repo in self.config.repos
        ]

    def read(self, stream: str, cursor: Cursor | None) -> Iterator[Page]:
        if stream not in self.config.repos:
            raise FatalConnectorError(f"github: no stream {stream!r}; configured repos: {self.config.repos}")
        params: dict[str, Any] = {"state": "all", "sort": "updated", "direction": "asc"}
        since = (cursor or {}).get("since")
        if isinstance(since, str):
            params["since"] = since
        pager = PaginatorConfig(type="link", size_param="per_page", page_size=self.config.per_page)
        client = self.client()
        newest = since if isinstance(since, str) else None
        try:
            for issues, _ in paginate(client, f"/repos/{stream}/issues", params, pager, "", self.config.max_pages):
                docs = [
                    self.document(stream, i) for i in issues if self.config.include_pulls or "pull_request" not in i
                ]
                stamps = [str(i["updated_at"]) for i in issues if i.get("updated_at")]
                newest = max([*stamps, *([newest] if newest else [])], default=None)
                yield Page(records=docs, cursor={"since": newest} if newest else None)
        finally:
            client.close()

    def document(self, repo: str, issue: dict[str, Any]) -> Document:
        labels = [str(label.get("name")) for label in issue.get("labels", []) if isinstance(label, dict)]
        kind = "pull" if "pull_request" in issue else "issue"
        return Document(
            key=f"{repo}#{issue['number']}",
            text=str(issue.get("body") or ""),
            title=f"{repo}#{issue['number']}: {issue.get('title', '')}",
            uri=str(issue.get("html_url", "")),
            updated_at=parse_time(issue.get("updated_at")),
            metadata={
                "repo": repo,
                "number": issue["number"],
                "state": issue.get("state"),
                "kind": kind,
                "author": (issue.get("user") or {}).get("login"),
                "labels": ",".join(labels),
            },
            acl=tuple(self.config.acl),
        )
