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
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from grounded.answering.engine import AnswerEvent
from grounded.api.deps import KBDep, PrincipalDep
from grounded.api.routes.conversations import question_and_history, remember
from grounded.api.schemas import CitationOut, QueryRequest, QueryResponse, SentenceOut
from grounded.errors import GroundedError
from grounded.ops.metrics import observe_answer
from grounded.ops.recording import record_question

__all__ = ["CitationOut", "QueryRequest", "QueryResponse", "SentenceOut", "router"]

router = APIRouter(tags=["query"])


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def _encode(event: AnswerEvent, conversation_id: str | None = None) -> bytes:
    if event.kind == "evidence":
        return _sse("evidence", [CitationOut.of(c).model_dump(mode="json") for c in event.data])
    if event.kind == "sentence":
        return _sse("sentence", SentenceOut.of(event.data).model_dump(mode="json"))
    response = QueryResponse.of(event.data)
    response.conversation_id = conversation_id
    return _sse("answer", response.model_dump(mode="json"))


@router.post(
    "/v1/query",
    response_model=QueryResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 504: {"description": "The answer expert timed out."}},
)
async def query(body: QueryRequest, request: Request, kb: KBDep, principal: PrincipalDep) -> Any:
    """Answer ``query`` (or the last user turn of ``messages``) from what the caller may read.

    Every sentence is cited and verified; a follow-up is answered from its standalone rewrite.
    """
    engine = kb.engine
    groups = principal.acl_groups
    question, history, conv = question_and_history(body, request, principal)
    if kb.settings.server.record_questions and not history:  # a follow-up is not a question on its own
        await run_in_threadpool(record_question, kb.path, question, kb.settings.server.record_questions)
    if "text/event-stream" not in request.headers.get("accept", ""):
        answer = await run_in_threadpool(
            engine.answer,
            question,
            k=body.k,
            filters=body.filters,
            use_cache=body.cache,
            acl_groups=groups,
            history=history,
        )
        observe_answer(answer, "/v1/query")
        response = QueryResponse.of(answer)
        response.conversation_id = await run_in_threadpool(remember, request, principal, conv, answer)
        return response

    events: Iterator[AnswerEvent] = engine.stream(
        question, k=body.k, filters=body.filters, use_cache=body.cache, acl_groups=groups, history=history
    )
    # Validate before the 200 goes out: bad input still gets a problem+json response.
    first = await run_in_threadpool(next, events)

    async def body_stream() -> AsyncIterator[bytes]:
        yield _encode(first)
        try:
            async for event in iterate_in_threadpool(events):
                conversation_id = None
                if event.kind == "answer":
                    observe_answer(event.data, "/v1/query")
                    conversation_id = await run_in_threadpool(remember, request, principal, conv, event.data)
                yield _encode(event, conversation_id)
        except GroundedError as exc:
            yield _sse(
                "error",
                {"title": exc.title, "status": exc.status, "detail": str(exc), "instance": request.url.path},
            )

    return StreamingResponse(body_stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})
