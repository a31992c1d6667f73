"""``Client`` and ``AsyncClient``: the REST API from Python, typed with the server's own schemas.

Example::

    import grounded

    with grounded.Client("http://127.0.0.1:8000", api_key="gk_...") as client:
        for hit in client.search("how does with call __exit__", k=3).hits:
            print(hit.score, hit.title, hit.uri, hit.start, hit.end)
        answer = client.ask("how does with call __exit__?")
        print(answer.answer, [c.uri for c in answer.citations])
        for event in client.ask_stream("what does lambda create?"):
            if event.kind == "sentence":
                print(event.sentence.text)

Results are the pydantic models the server renders (:mod:`grounded.api.schemas`); a
problem+json error raises the class a local call raises (:class:`~grounded.errors.Forbidden`,
:class:`~grounded.errors.InvalidRequest`, ...); a server that cannot be reached raises
:class:`~grounded.errors.ServerUnreachable`. ``api_key`` defaults to ``$GROUNDED_API_KEY``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from grounded.api.schemas import JobOut, JobsResponse, QueryResponse, SearchResponse, SourcesResponse
from grounded.client._wire import (
    History,
    Mode,
    SseDecoder,
    StreamEvent,
    base_url,
    error_from_response,
    headers_for,
    parse,
    query_body,
    search_body,
    stream_event,
    unreachable,
)

__all__ = ["AsyncClient", "Client"]

JobStatus = Literal["running", "succeeded", "failed", "interrupted"]
M = TypeVar("M", bound=BaseModel)

DEFAULT_TIMEOUT_S = 120.0
"""Long enough for an answer from the CPU answer model under load; searches take milliseconds."""


def _jobs_params(source: str | None, status: JobStatus | None, limit: int) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if source is not None:
        params["source"] = source
    if status is not None:
        params["status"] = status
    return params


class Client:
    """A synchronous client of one grounded server (thread-safe: one connection pool)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = base_url(url)
        self._http = httpx.Client(base_url=self.url, headers=headers_for(api_key), timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    def _get(self, model: type[M], path: str, **kwargs: Any) -> M:
        return parse(model, self._send("GET", path, **kwargs))

    def _post(self, model: type[M], path: str, **kwargs: Any) -> M:
        return parse(model, self._send("POST", path, **kwargs))

    # -- everyone -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok", "index_version": ...}`` (needs no key)."""
        body: dict[str, Any] = self._send("GET", "/healthz").json()
        return body

    def search(
        self, query: str, k: int = 10, *, filters: Mapping[str, Any] | None = None, mode: Mode = "hybrid"
    ) -> SearchResponse:
        """``POST /v1/search``: the ``k`` best chunks the key may read, with offsets."""
        return self._post(SearchResponse, "/v1/search", json=search_body(query, k, filters, mode))

    def ask(
        self,
        query: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        cache: bool = True,
        history: History | None = None,
        conversation_id: str | None = None,
        conversation: bool = False,
    ) -> QueryResponse:
        """``POST /v1/query``: a cited, verified answer (or an abstention) from what the key may read.

        A follow-up question goes with the conversation before it: either ``history`` (earlier
        turns, oldest first, as ``{"role", "content"}`` dicts or ``(role, text)`` pairs) or a
        stored conversation: ``conversation=True`` starts one (``response.conversation_id``), and
        ``conversation_id=...`` continues it::

            first = client.ask("what does the with statement do?", conversation=True)
            client.ask("what does it call on exit?", conversation_id=first.conversation_id)
        """
        return self._post(
            QueryResponse,
            "/v1/query",
            json=query_body(query, k, filters, cache, history, conversation_id, conversation),
        )

    def ask_stream(
        self,
        query: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        cache: bool = True,
        history: History | None = None,
        conversation_id: str | None = None,
        conversation: bool = False,
    ) -> Iterator[StreamEvent]:
        """``POST /v1/query`` as server-sent events: evidence, each verified sentence, the answer.

        Errors before the stream starts raise like :meth:`ask`; an ``error`` event mid-stream
        raises its exception. Leaving the loop early closes the connection.
        """
        body = query_body(query, k, filters, cache, history, conversation_id, conversation)
        try:
            with self._http.stream("POST", "/v1/query", json=body, headers={"accept": "text/event-stream"}) as resp:
                if resp.is_error:
                    resp.read()
                    raise error_from_response(resp)
                decoder = SseDecoder()
                for line in resp.iter_lines():
                    done = decoder.feed(line)
                    if done is not None and (event := stream_event(*done)) is not None:
                        yield event
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    # -- admin keys -----------------------------------------------------------------------------

    def sources(self) -> SourcesResponse:
        """``GET /v1/sources``: configured sources, schedules, freshness, last job (admin key)."""
        return self._get(SourcesResponse, "/v1/sources")

    def jobs(self, *, source: str | None = None, status: JobStatus | None = None, limit: int = 50) -> JobsResponse:
        """``GET /v1/jobs``: refresh history, newest first (admin key)."""
        return self._get(JobsResponse, "/v1/jobs", params=_jobs_params(source, status, limit))

    def refresh(self, source: str) -> JobOut:
        """``POST /v1/sources/{source}/refresh``: start a refresh; poll :meth:`jobs` (admin key).

        Raises :class:`~grounded.errors.KnowledgeBaseLocked` while that source is refreshing.
        """
        return self._post(JobOut, f"/v1/sources/{quote(source, safe='')}/refresh")


class AsyncClient:
    """The same client for asyncio code: every method is a coroutine, ``ask_stream`` an async iterator."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = base_url(url)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers_for(api_key), timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    async def health(self) -> dict[str, Any]:
        """``GET /healthz`` (needs no key)."""
        body: dict[str, Any] = (await self._send("GET", "/healthz")).json()
        return body

    async def search(
        self, query: str, k: int = 10, *, filters: Mapping[str, Any] | None = None, mode: Mode = "hybrid"
    ) -> SearchResponse:
        """``POST /v1/search`` (see :meth:`Client.search`)."""
        response = await self._send("POST", "/v1/search", json=search_body(query, k, filters, mode))
        return parse(SearchResponse, response)

    async def ask(
        self,
        query: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        cache: bool = True,
        history: History | None = None,
        conversation_id: str | None = None,
        conversation: bool = False,
    ) -> QueryResponse:
        """``POST /v1/query`` (see :meth:`Client.ask`)."""
        response = await self._send(
            "POST", "/v1/query", json=query_body(query, k, filters, cache, history, conversation_id, conversation)
        )
        return parse(QueryResponse, response)

    async def ask_stream(
        self,
        query: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        cache: bool = True,
        history: History | None = None,
        conversation_id: str | None = None,
        conversation: bool = False,
    ) -> AsyncIterator[StreamEvent]:
        """``POST /v1/query`` as server-sent events (see :meth:`Client.ask_stream`)."""
        body = query_body(query, k, filters, cache, history, conversation_id, conversation)
        try:
            async with self._http.stream(
                "POST", "/v1/query", json=body, headers={"accept": "text/event-stream"}
            ) as resp:
                if resp.is_error:
                    await resp.aread()
                    raise error_from_response(resp)
                decoder = SseDecoder()
                async for line in resp.aiter_lines():
                    done = decoder.feed(line)
                    if done is not None and (event := stream_event(*done)) is not None:
                        yield event
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    async def sources(self) -> SourcesResponse:
        """``GET /v1/sources`` (admin key)."""
        return parse(SourcesResponse, await self._send("GET", "/v1/sources"))

    async def jobs(
        self, *, source: str | None = None, status: JobStatus | None = None, limit: int = 50
    ) -> JobsResponse:
        """``GET /v1/jobs`` (admin key)."""
        return parse(JobsResponse, await self._send("GET", "/v1/jobs", params=_jobs_params(source, status, limit)))

    async def refresh(self, source: str) -> JobOut:
        """``POST /v1/sources/{source}/refresh`` (admin key)."""
        return parse(JobOut, await self._send("POST", f"/v1/sources/{quote(source, safe='')}/refresh"))
