"""A declarative REST API connector: endpoints, pagination, auth and JSON paths from config.

Each endpoint is a stream of documents. Records are found with a JSON path (``data.items``) and
fields are read with paths too (``fields.summary``). Pagination is one of ``page`` (page number),
``offset``, ``cursor`` (a token from the response) or ``link`` (the ``Link: <...>; rel="next"``
header). An endpoint with ``incremental`` sends the largest ``updated`` value seen so far as a
query parameter on the next sync; otherwise every sync reads it all and deletes what vanished.

Example ``grounded.toml``::

    [sources.tickets]
    type = "rest"
    [sources.tickets.params]
    base_url = "https://tickets.example.com/api/"
    auth = { type = "bearer", token_env = "TICKETS_TOKEN" }
    rate_limit = 5
    [[sources.tickets.params.endpoints]]
    name = "tickets"
    path = "v2/tickets"
    records = "data"
    key = "id"
    title = "subject"
    text = ["description", "resolution"]
    updated = "updated_at"
    paginator = { type = "cursor", cursor_path = "meta.next_cursor", cursor_param = "cursor" }
    incremental = { param = "updated_since" }
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from connectors._http import HttpClient, first, json_path
from connectors.base import Cursor, Document, JSONValue, Page, StreamSpec
from connectors.sql import secret_from_env
from grounded.errors import FatalConnectorError

__all__ = ["AuthConfig", "EndpointConfig", "PaginatorConfig", "RestConfig", "RestConnector", "paginate"]


class AuthConfig(BaseModel):
    """How to authenticate; secrets come from environment variables named here."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    type: Literal["none", "bearer", "api_key", "basic"] = "none"
    token_env: str | None = Field(None, description="Variable holding the bearer token or API key.")
    header: str = Field("X-API-Key", description="Header carrying the API key (type api_key).")
    username: str | None = Field(None, description="User name (type basic).")
    password_env: str | None = Field(None, description="Variable holding the password (type basic).")

    def build(self, what: str) -> tuple[dict[str, str], httpx.Auth | tuple[str, str] | None, str]:
        """``(headers, auth, hint)``: what to send, and which variable to blame on a 401."""
        if self.type == "bearer":
            token = secret_from_env(self.token_env, what) if self.token_env else None
            if not token:
                raise FatalConnectorError(f"{what}: bearer auth needs token_env naming a set variable")
            return {"Authorization": f"Bearer {token}"}, None, f"${self.token_env}"
        if self.type == "api_key":
            key = secret_from_env(self.token_env, what) if self.token_env else None
            if not key:
                raise FatalConnectorError(f"{what}: api_key auth needs token_env naming a set variable")
            return {self.header: key}, None, f"${self.token_env}"
        if self.type == "basic":
            password = secret_from_env(self.password_env, what) or ""
            return {}, (self.username or "", password), f"{self.username} / ${self.password_env}"
        return {}, None, ""


class PaginatorConfig(BaseModel):
    """How an endpoint pages."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    type: Literal["none", "page", "offset", "cursor", "link"] = "none"
    page_param: str = Field("page", description="Page-number parameter (type page).")
    first_page: int = Field(1, description="Number of the first page (type page).")
    offset_param: str = Field("offset", description="Offset parameter (type offset).")
    size_param: str | None = Field(None, description="Page-size parameter, e.g. per_page or limit.")
    page_size: int | None = Field(None, ge=1, description="Records per page to ask for (and to expect).")
    cursor_param: str = Field("cursor", description="Parameter carrying the next token (type cursor).")
    cursor_path: str = Field("next", description="JSON path of the next token in the response (type cursor).")


class IncrementalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    param: str = Field(description="Query parameter sent with the last 'updated' value, e.g. since.")


class EndpointConfig(BaseModel):
    """One endpoint: where its records are and which fields make a document."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    name: str = Field(description="Stream name.")
    path: str = Field(description="Path relative to base_url.")
    params: dict[str, str | int | float | bool] = Field(default_factory=dict, description="Fixed query parameters.")
    records: str = Field("", description="JSON path of the record list ('' : the body is the list).")
    key: str = Field("id", description="JSON path of each record's stable id.")
    title: str | None = Field(None, description="JSON path of the title.")
    text: list[str] = Field(default_factory=lambda: ["text"], description="JSON paths joined into the text.")
    uri: str | None = Field(None, description="JSON path of the record's URL.")
    updated: str | None = Field(None, description="JSON path of the last-modified time (ISO 8601).")
    metadata: list[str] = Field(default_factory=list, description="JSON paths kept as metadata.")
    paginator: PaginatorConfig = PaginatorConfig()
    incremental: IncrementalConfig | None = None


class RestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    base_url: str = Field(description="The API's base URL.")
    endpoints: list[EndpointConfig] = Field(min_length=1)
    auth: AuthConfig = AuthConfig()
    headers: dict[str, str] = Field(default_factory=dict)
    rate_limit: float | None = Field(None, gt=0, description="Most requests per second.")
    timeout: float = Field(30.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff: float = Field(0.5, ge=0, description="First retry delay in seconds; doubles each retry.")
    max_wait: float = Field(60.0, gt=0, description="Longest Retry-After honoured, in seconds.")
    max_pages: int = Field(10_000, ge=1, description="Stop an endpoint that pages beyond this (a loop).")
    acl: list[str] = Field(default_factory=list)


def paginate(
    client: HttpClient, path: str, params: Mapping[str, Any], pager: PaginatorConfig, records_path: str, max_pages: int
) -> Iterator[tuple[list[Any], Any]]:
    """Yield ``(records, body)`` per page until the API says there is no more."""
    query: dict[str, Any] = dict(params)
    if pager.size_param and pager.page_size:
        query[pager.size_param] = pager.page_size
    url: str | None = path
    page_no, offset, seen_tokens = pager.first_page, 0, set()
    for count in range(max_pages + 1):
        if count == max_pages:
            raise FatalConnectorError(
                f"{path}: still paging after {max_pages} pages; the paginator may loop "
                "(check its config) or raise max_pages for a very large endpoint"
            )
        if url is None:
            return
        if pager.type == "page":
            query[pager.page_param] = page_no
        elif pager.type == "offset":
            query[pager.offset_param] = offset
        body, response = client.get(url, query)
        records = json_path(body, records_path) if records_path else body
        if isinstance(records, list) and len(records) == 1 and isinstance(records[0], list) and records_path:
            records = records[0]
        if not isinstance(records, list):
            raise FatalConnectorError(f"{path}: records path {records_path!r} does not lead to a list")
        yield records, body
        if pager.type in ("page", "offset"):
            expected = pager.page_size
            if not records or (expected is not None and len(records) < expected):
                return
            page_no += 1
            offset += len(records)
        elif pager.type == "cursor":
            token = first(body, pager.cursor_path)
            if token in (None, "", False):
                return
            if token in seen_tokens:
                raise FatalConnectorError(f"{path}: the API returned cursor {token!r} twice; pagination loops")
            seen_tokens.add(token)
            query[pager.cursor_param] = token
        elif pager.type == "link":
            nxt = response.links.get("next", {}).get("url")
            if not nxt:
                return
            url, query = nxt, {}  # the next link carries every parameter
        else:
            return


class RestConnector:
    """Documents from a JSON REST API, declared in config."""

    name: ClassVar[str] = "rest"
    Config: ClassVar[type[BaseModel]] = RestConfig

    def __init__(self, config: RestConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.transport = transport
        self._endpoints = {e.name: e for e in config.endpoints}

    def client(self) -> HttpClient:
        headers, auth, hint = self.config.auth.build(f"rest {self.config.base_url}")
        return HttpClient(
            self.config.base_url,
            headers={**self.config.headers, **headers},
            auth=auth,
            timeout=self.config.timeout,
            max_retries=self.config.max_retries,
            backoff=self.config.backoff,
            max_wait=self.config.max_wait,
            rate_limit=self.config.rate_limit,
            transport=self.transport,
            secret_hint=hint,
        )

    def check(self) -> None:
        client = self.client()
        try:
            endpoint = self.config.endpoints[0]
            client.get(endpoint.path, endpoint.params)
        finally:
            client.close()

    def streams(self) -> list[StreamSpec]:
        return [
            StreamSpec(name=e.name, kind="documents", full_scan=e.incremental is None, cursor_field=e.updated)
            for e in self.config.endpoints
        ]

    def read(self, stream: str, cursor: Cursor | None) -> Iterator[Page]:
        endpoint = self._endpoints.get(stream)
        if endpoint is None:
            raise FatalConnectorError(f"rest: no endpoint {stream!r}; configured: {sorted(self._endpoints)}")
        params: dict[str, Any] = dict(endpoint.params)
        since = (cursor or {}).get("since")
        if endpoint.incremental and since:
            params[endpoint.incremental.param] = since
        client = self.client()
        try:
            newest = since if isinstance(since, str) else None
            for records, _ in paginate(
                client, endpoint.path, params, endpoint.paginator, endpoint.records, self.config.max_pages
            ):
                docs = [d for r in records if (d := self.document(endpoint, r)) is not None]
                if endpoint.incremental:
                    stamps = [d.updated_at.isoformat() for d in docs if d.updated_at]
                    newest = max([*stamps, *([newest] if newest else [])], default=None)
                yield Page(records=docs, cursor={"since": newest} if endpoint.incremental and newest else None)
        finally:
            client.close()

    def document(self, endpoint: EndpointConfig, record: Any) -> Document | None:
        key = first(record, endpoint.key)
        if key is None:
            return None
        text = "\n\n".join(str(v) for path in endpoint.text for v in json_path(record, path) if v not in (None, ""))
        title = first(record, endpoint.title) if endpoint.title else None
        uri = first(record, endpoint.uri) if endpoint.uri else None
        metadata: dict[str, JSONValue] = {}
        for path in endpoint.metadata:
            value = first(record, path)
            if isinstance(value, str | int | float | bool) or value is None:
                metadata[path] = value
        return Document(
            key=f"{endpoint.name}/{key}",
            text=text,
            title=str(title or ""),
            uri=str(uri or ""),
            updated_at=parse_time(first(record, endpoint.updated)) if endpoint.updated else None,
            metadata=metadata,
            acl=tuple(self.config.acl),
        )


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (``Z`` allowed) as an aware datetime; ``None`` when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
