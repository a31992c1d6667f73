"""What the sync and async clients share: request bodies, problem+json to exceptions, SSE events.

Nothing here does I/O: :mod:`grounded.client.client` sends the requests, this module builds
them and reads the answers, so both clients behave the same by construction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from grounded import errors
from grounded.api.schemas import CitationOut, QueryRequest, QueryResponse, SearchRequest, SentenceOut
from grounded.errors import GroundedError, InvalidRequest, RateLimited, ServerUnreachable

__all__ = [
    "API_KEY_ENV",
    "AnswerEvent",
    "EvidenceEvent",
    "History",
    "SentenceEvent",
    "StreamEvent",
    "base_url",
    "error_from_response",
    "query_body",
    "search_body",
]

API_KEY_ENV = "GROUNDED_API_KEY"
"""The environment variable the clients read the key from when none is passed."""

Mode = Literal["hybrid", "bm25", "dense"]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class EvidenceEvent:
    """First event of a streamed answer: the numbered passages the sentences will cite."""

    citations: list[CitationOut]
    kind: Literal["evidence"] = "evidence"


@dataclass(frozen=True, slots=True)
class SentenceEvent:
    """One verified sentence, as soon as the verifier kept it."""

    sentence: SentenceOut
    kind: Literal["sentence"] = "sentence"


@dataclass(frozen=True, slots=True)
class AnswerEvent:
    """Last event: the whole answer, the same body ``ask`` returns."""

    answer: QueryResponse
    kind: Literal["answer"] = "answer"


StreamEvent = EvidenceEvent | SentenceEvent | AnswerEvent
"""What ``ask_stream`` yields, in order: one evidence, zero or more sentences, one answer."""


def base_url(url: str) -> str:
    """``url`` without a trailing ``/`` or ``/v1`` (the OpenAI-style base URL works too)."""
    clean = url.strip().rstrip("/")
    if not clean.startswith(("http://", "https://")):
        raise InvalidRequest(f"the server URL must start with http:// or https://; got {url!r}")
    return clean.removesuffix("/v1")


def headers_for(api_key: str | None) -> dict[str, str]:
    """Authorization for ``api_key`` (default: ``$GROUNDED_API_KEY``; none in development mode)."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    return {"authorization": f"Bearer {key}"} if key else {}


def _validated(model: type[M], **fields: Any) -> M:
    """The request body, checked with the server's own schema before it is sent."""
    try:
        return model(**fields)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise InvalidRequest(detail) from exc


def search_body(query: str, k: int, filters: Mapping[str, Any] | None, mode: Mode) -> dict[str, Any]:
    body = _validated(SearchRequest, query=query, k=k, filters=dict(filters) if filters else None, mode=mode)
    return body.model_dump(mode="json", exclude_none=True)


History = Sequence[Mapping[str, Any] | tuple[str, str]]
"""Earlier turns of a conversation: ``{"role", "content"}`` dicts or ``(role, text)`` pairs, oldest first."""


def query_body(
    query: str,
    k: int | None,
    filters: Mapping[str, Any] | None,
    cache: bool,
    history: History | None = None,
    conversation_id: str | None = None,
    conversation: bool = False,
) -> dict[str, Any]:
    """The ``/v1/query`` body; with ``history`` the question goes as the last of ``messages``."""
    fields: dict[str, Any] = {"k": k, "filters": dict(filters) if filters else None, "cache": cache}
    if history:
        turns = [
            {"role": t["role"], "content": t.get("content", t.get("text", ""))}
            if isinstance(t, Mapping)
            else {"role": t[0], "content": t[1]}
            for t in history
        ]
        fields["messages"] = [*turns, {"role": "user", "content": query}]
    else:
        fields["query"] = query
    body = _validated(QueryRequest, **fields, conversation_id=conversation_id, conversation=conversation)
    return body.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def _error_classes() -> dict[str, type[GroundedError]]:
    """Every public error class by its title; a title shared by a subclass names the base class."""
    found: dict[str, type[GroundedError]] = {}
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, GroundedError):
            known = found.get(cls.title)
            if known is None or issubclass(known, cls):
                found[cls.title] = cls
    return found


_BY_TITLE = _error_classes()


def error_from_problem(problem: Mapping[str, Any], status: int, retry_after: str | None = None) -> GroundedError:
    """The exception a local call would have raised for a problem+json body.

    The class comes from the problem's ``title`` (each class in :mod:`grounded.errors` has its
    own; ``type`` ends in the same slug). A title no class has (405, a proxy's 502) becomes a
    :class:`GroundedError` carrying the response's ``status``. ``problem`` keeps the whole body
    (a 422 lists the offending ``errors``).
    """
    title = str(problem.get("title") or "")
    detail = str(problem.get("detail") or title or f"HTTP {status}")
    cls = _BY_TITLE.get(title, GroundedError)
    exc: GroundedError
    if cls is RateLimited:
        seconds = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else 1.0
        exc = RateLimited(detail, retry_after=seconds)
    else:
        exc = cls(detail)
    if cls is GroundedError or exc.status != status:
        exc.status = status  # what the server said wins over the class default
    exc.problem = dict(problem)
    return exc


def error_from_response(response: httpx.Response) -> GroundedError:
    """The exception for a failed response (problem+json, or anything else a proxy sends)."""
    try:
        problem = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        problem = None
    if not isinstance(problem, dict):
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
        problem = {"title": "", "status": response.status_code, "detail": f"HTTP {response.status_code}: {text}"}
    return error_from_problem(problem, response.status_code, response.headers.get("retry-after"))


def unreachable(url: str, exc: httpx.TransportError) -> ServerUnreachable:
    """A transport failure (refused, reset, timed out) as grounded's error, naming the server."""
    what = "did not answer in time" if isinstance(exc, httpx.TimeoutException) else "could not be reached"
    return ServerUnreachable(f"the grounded server at {url} {what} ({type(exc).__name__}: {exc or 'no detail'})")


def parse(model: type[M], response: httpx.Response) -> M:
    """A successful response as the server's schema."""
    return model.model_validate_json(response.content)


class SseDecoder:
    """Server-sent events from lines (``event:``/``data:`` fields, a blank line ends an event)."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        """One line in; an ``(event, data)`` pair out when the line ended an event."""
        if not line:
            if not self._data:
                return None
            done = (self._event, "\n".join(self._data))
            self._event, self._data = "message", []
            return done
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        return None


def stream_event(event: str, data: str) -> StreamEvent | None:
    """One ``/v1/query`` SSE event as a typed event; an ``error`` event raises its exception."""
    payload = json.loads(data)
    if event == "evidence":
        return EvidenceEvent([CitationOut.model_validate(c) for c in payload])
    if event == "sentence":
        return SentenceEvent(SentenceOut.model_validate(payload))
    if event == "answer":
        return AnswerEvent(QueryResponse.model_validate(payload))
    if event == "error":
        raise error_from_problem(payload, int(payload.get("status") or 500))
    return None  # an event this client does not know yet: skipped, so servers may add some
