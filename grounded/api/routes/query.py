"""``POST /v1/query``: a cited, verified answer as JSON, or as server-sent events.

The model runs in a worker thread (``run_in_threadpool``), so a slow expert holds up only the
requests waiting for it, never the event loop (search, health and other queries go on). With
``Accept: text/event-stream`` the response streams ``evidence``, one ``sentence`` per verified
sentence, then ``answer`` (the same body as the JSON response); an error mid-stream becomes an
``error`` event carrying the problem+json body.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from grounded.answering.engine import AnswerEvent
from grounded.answering.types import Answer, AnswerSentence, Citation
from grounded.api.deps import KBDep, PrincipalDep
from grounded.errors import GroundedError
from grounded.ops.metrics import observe_answer

__all__ = ["CitationOut", "QueryRequest", "QueryResponse", "SentenceOut", "router"]

router = APIRouter(tags=["query"])


class QueryRequest(BaseModel):
    """``POST /v1/query``: the question, how many passages to read, and search filters."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"query": "where is mount logan located?", "k": 3}]}
    )

    query: str = Field(min_length=1, max_length=2000, description="The question.")
    k: int | None = Field(None, ge=1, le=20, description="Evidence passages to read (default: answer.k).")
    filters: dict[str, Any] | None = Field(None, description="The same filters as /v1/search.")
    cache: bool = Field(True, description="Use the answer cache.")


class SentenceOut(BaseModel):
    text: str
    citations: list[int] = Field(description="Ids of the citations this sentence rests on.")
    quoted: bool = Field(description="True when the sentence is evidence quoted verbatim.")

    @classmethod
    def of(cls, s: AnswerSentence) -> SentenceOut:
        return cls(text=s.text, citations=list(s.citations), quoted=s.quoted)


class CitationOut(BaseModel):
    id: int
    doc_id: str
    chunk_id: str = Field(description="Chunk id (a 63-bit integer, as a string for JavaScript clients).")
    title: str
    uri: str
    start: int = Field(description="Character offset of the passage in its document.")
    end: int
    text: str
    source: str
    synced_at: datetime | None = Field(description="When the source was last synced: the answer holds as of then.")

    @classmethod
    def of(cls, c: Citation) -> CitationOut:
        return cls(
            id=c.id,
            doc_id=c.doc_id,
            chunk_id=str(c.chunk_id),
            title=c.title,
            uri=c.uri,
            start=c.start,
            end=c.end,
            text=c.text,
            source=c.source,
            synced_at=c.synced_at,
        )


class QueryResponse(BaseModel):
    query: str
    answer: str
    sentences: list[SentenceOut]
    citations: list[CitationOut]
    abstained: bool
    closest: SentenceOut | None = Field(description="When abstaining: the nearest evidence sentence, quoted.")
    index_version: str
    model: str
    cached: bool
    timings: dict[str, float]
    route: str = Field("unstructured", description="How the question was routed (grounded.grounding.router).")
    trace: dict[str, Any] = Field(default_factory=dict, description="Route decision, plan and tool calls.")

    @classmethod
    def of(cls, a: Answer) -> QueryResponse:
        return cls(
            query=a.question,
            answer=a.text,
            sentences=[SentenceOut.of(s) for s in a.sentences],
            citations=[CitationOut.of(c) for c in a.citations],
            abstained=a.abstained,
            closest=SentenceOut.of(a.closest) if a.closest else None,
            index_version=a.index_version,
            model=a.model,
            cached=a.cached,
            timings=dict(a.timings),
            route=a.route,
            trace=dict(a.trace),
        )


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def _encode(event: AnswerEvent) -> bytes:
    if event.kind == "evidence":
        return _sse("evidence", [CitationOut.of(c).model_dump(mode="json") for c in event.data])
    if event.kind == "sentence":
        return _sse("sentence", SentenceOut.of(event.data).model_dump(mode="json"))
    return _sse("answer", QueryResponse.of(event.data).model_dump(mode="json"))


@router.post(
    "/v1/query",
    response_model=QueryResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 504: {"description": "The answer expert timed out."}},
)
async def query(body: QueryRequest, request: Request, kb: KBDep, principal: PrincipalDep) -> Any:
    """Answer ``query`` from what the caller may read, every sentence cited and verified."""
    engine = kb.engine
    groups = principal.acl_groups
    if "text/event-stream" not in request.headers.get("accept", ""):
        answer = await run_in_threadpool(
            engine.answer, body.query, k=body.k, filters=body.filters, use_cache=body.cache, acl_groups=groups
        )
        observe_answer(answer, "/v1/query")
        return QueryResponse.of(answer)

    events: Iterator[AnswerEvent] = engine.stream(
        body.query, k=body.k, filters=body.filters, use_cache=body.cache, acl_groups=groups
    )
    # Validate before the 200 goes out: bad input still gets a problem+json response.
    first = await run_in_threadpool(next, events)

    async def body_stream() -> AsyncIterator[bytes]:
        yield _encode(first)
        try:
            async for event in iterate_in_threadpool(events):
                if event.kind == "answer":
                    observe_answer(event.data, "/v1/query")
                yield _encode(event)
        except GroundedError as exc:
            yield _sse(
                "error",
                {"title": exc.title, "status": exc.status, "detail": str(exc), "instance": request.url.path},
            )

    return StreamingResponse(body_stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})
