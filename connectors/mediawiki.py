"""Pages of a MediaWiki site (Wikipedia and others) as plain-text documents, via the Action API.

It asks ``action=query`` with ``prop=extracts|info`` (TextExtracts' plain-text page extracts, and
the page URL and last-touched time), ``format=json&formatversion=2``, so ``query.pages`` is a
list of ``{pageid, title, extract, fullurl, touched}`` objects (``missing: true`` for titles that
do not exist). Pages are chosen by title or by category (``generator=categorymembers``); the API's
``continue`` object is sent back as-is until the response has none.
See https://www.mediawiki.org/wiki/API:Query and https://www.mediawiki.org/wiki/API:Continue.

Example ``grounded.toml``::

    [sources.wiki]
    type = "mediawiki"
    params = { api_url = "https://en.wikipedia.org/w/api.php", titles = ["Retrieval-augmented generation"] }
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors._http import HttpClient
from connectors.base import Cursor, Document, Page, Record, StreamSpec, Unreadable
from connectors.rest import parse_time
from grounded.errors import FatalConnectorError

__all__ = ["MediaWikiConfig", "MediaWikiConnector"]


class MediaWikiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    api_url: str = Field(description="The wiki's api.php URL.")
    titles: list[str] = Field(default_factory=list, description="Page titles to read.")
    category: str | None = Field(None, description="Read every page in this category ('Category:...').")
    batch: int = Field(20, ge=1, le=50, description="Titles per request (TextExtracts returns ≤ 20).")
    rate_limit: float = Field(2.0, gt=0, description="Requests per second (be kind to public wikis).")
    max_retries: int = Field(5, ge=0)
    max_pages: int = Field(1000, ge=1, description="Most API requests per sync (guards continuation loops).")
    acl: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_to_read(self) -> MediaWikiConfig:
        if not self.titles and not self.category:
            raise ValueError("give titles or a category to read")
        return self


class MediaWikiConnector:
    """Documents from MediaWiki page extracts."""

    name: ClassVar[str] = "mediawiki"
    Config: ClassVar[type[BaseModel]] = MediaWikiConfig

    def __init__(self, config: MediaWikiConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.transport = transport

    def client(self) -> HttpClient:
        return HttpClient(
            "",  # every request goes to api_url itself (a base URL would add a trailing slash)
            rate_limit=self.config.rate_limit,
            max_retries=self.config.max_retries,
            transport=self.transport,
        )

    def check(self) -> None:
        client = self.client()
        try:
            body, _ = client.get(
                self.config.api_url, {"action": "query", "meta": "siteinfo", "format": "json", "formatversion": 2}
            )
        finally:
            client.close()
        if not isinstance(body, dict) or "query" not in body:
            raise FatalConnectorError(f"{self.config.api_url} did not answer like a MediaWiki API; check api_url")

    def streams(self) -> list[StreamSpec]:
        return [StreamSpec(name="pages", kind="documents", full_scan=True)]

    def _requests(self) -> Iterator[dict[str, Any]]:
        base = {
            "action": "query",
            "prop": "extracts|info",
            "explaintext": 1,
            "exlimit": "max",
            "inprop": "url",
            "format": "json",
            "formatversion": 2,
            "redirects": 1,
        }
        if self.config.category:
            yield {**base, "generator": "categorymembers", "gcmtitle": self.config.category, "gcmlimit": 20}
        titles = self.config.titles
        for i in range(0, len(titles), self.config.batch):
            yield {**base, "titles": "|".join(titles[i : i + self.config.batch])}

    def read(self, stream: str, cursor: Cursor | None) -> Iterator[Page]:
        if stream != "pages":
            raise FatalConnectorError(f"mediawiki has one stream, 'pages'; got {stream!r}")
        client = self.client()
        calls = 0
        try:
            for request in self._requests():
                params: dict[str, Any] = dict(request)
                while True:
                    calls += 1
                    if calls > self.config.max_pages:
                        raise FatalConnectorError(
                            f"{self.config.api_url}: more than {self.config.max_pages} requests; the continuation "
                            "may loop, or raise max_pages"
                        )
                    body, _ = client.get(self.config.api_url, params)
                    if isinstance(body, dict) and "error" in body:
                        err = body["error"]
                        raise FatalConnectorError(
                            f"{self.config.api_url}: API error {err.get('code')!r}: {err.get('info')}"
                        )
                    yield Page(records=self._records(body))
                    cont = body.get("continue") if isinstance(body, dict) else None
                    if not isinstance(cont, dict):
                        break
                    params = {**request, **cont}
        finally:
            client.close()

    def _records(self, body: Any) -> list[Record]:
        pages = body.get("query", {}).get("pages", []) if isinstance(body, dict) else []
        out: list[Record] = []
        for page in pages:
            title = str(page.get("title", ""))
            if page.get("missing") or page.get("invalid"):
                out.append(Unreadable(key_prefix=f"title:{title}", reason=f"page {title!r} does not exist"))
                continue
            extract = page.get("extract")
            if not isinstance(extract, str):
                continue  # extract comes in a later continuation batch
            out.append(
                Document(
                    key=str(page["pageid"]),
                    text=extract,
                    title=title,
                    uri=str(page.get("fullurl", "")),
                    updated_at=parse_time(page.get("touched")),
                    metadata={"ns": page.get("ns"), "lastrevid": page.get("lastrevid")},
                    acl=tuple(self.config.acl),
                )
            )
        return out
