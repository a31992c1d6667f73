"""OpenAI-compatible ``POST /v1/chat/completions`` (and ``GET /v1/models``): grounded as a model.

Existing clients (the ``openai`` SDK, LangChain, LlamaIndex) point their base URL at
``http://host:port/v1`` and their API key at a grounded key. The last user message is the
question and the user and assistant messages before it are the conversation: a follow-up is
rewritten into a standalone question before retrieval (``grounded.rewrite`` shows it). The reply
is the grounded, cited, verified answer, with its sources listed after it.
Sampling parameters are accepted and ignored: answers are greedy and deterministic. Extra
fields carry what OpenAI's schema has no place for: ``citations`` and ``grounded`` (version,
abstention, cache). With ``stream: true`` the answer arrives as ``chat.completion.chunk`` events,
one verified sentence at a time, then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from grounded.answering.conversation import Turn, split_messages
from grounded.answering.engine import AnswerEvent
from grounded.answering.types import Answer, Citation, cited_text
from grounded.api.deps import KBDep, PrincipalDep
from grounded.api.schemas import CitationOut
from grounded.errors import GroundedError, RequestTooLarge
from grounded.ops.metrics import observe_answer

__all__ = ["ChatRequest", "router"]

router = APIRouter(tags=["openai"])

MODEL_ID = "grounded"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The OpenAI chat request; unknown and sampling fields are accepted and ignored."""

    model_config = ConfigDict(
        extra="allow",
        strict=True,  # "stream": "yes" is a 422, as in the other request bodies
        json_schema_extra={
            "examples": [{"model": "grounded", "messages": [{"role": "user", "content": "How does with work?"}]}]
        },
    )

    model: str = Field(MODEL_ID, max_length=200, description="Echoed back; grounded answers every model name.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: dict[str, Any] | None = None


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatChoiceMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """An OpenAI ``chat.completion`` plus grounded's ``citations`` and ``grounded`` fields."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: Usage
    citations: list[CitationOut]
    grounded: dict[str, Any]


def _question(body: ChatRequest, max_chars: int) -> tuple[str, list[Turn]]:
    question, history = split_messages([m.model_dump() for m in body.messages])
    chars = sum(len(t.text) for t in history)
    if chars > max_chars:
        raise RequestTooLarge(
            f"the conversation sent holds {chars} characters; the limit is {max_chars} "
            "(conversation.max_chars): send only the recent turns"
        )
    return question, history


def _sources(citations: tuple[Citation, ...] | list[Citation], used: set[int]) -> str:
    lines = [f"[{c.id}] {c.title or c.doc_id}" + (f" — {c.uri}" if c.uri else "") for c in citations if c.id in used]
    return "\n\nSources:\n" + "\n".join(lines) if lines else ""


def _content(answer: Answer) -> str:
    if answer.abstained or not answer.sentences:
        return answer.text
    used = {i for s in answer.sentences for i in s.citations}
    return answer.text + _sources(answer.citations, used)


def _usage(answer: Answer) -> Usage:
    prompt = int(answer.timings.get("prompt_tokens", 0))
    completion = int(answer.timings.get("completion_tokens", 0))
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _extras(answer: Answer) -> dict[str, Any]:
    return {
        "index_version": answer.index_version,
        "abstained": answer.abstained,
        "cached": answer.cached,
        "answer_model": answer.model,
        "route": answer.route,
        "rewrite": answer.rewrite,
        "answerability": answer.answerability,
        "from_sources": answer.grounded,
    }


@router.get("/v1/models")
def models(_: PrincipalDep) -> dict[str, Any]:
    """The one model this server offers: ``grounded``."""
    return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "grounded"}]}


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def chat_completions(body: ChatRequest, request: Request, kb: KBDep, principal: PrincipalDep) -> Any:
    """Answer the last user message, in its conversation, from what the caller may read (or streamed)."""
    question, history = _question(body, kb.settings.conversation.max_chars)
    engine = kb.engine
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    groups = principal.acl_groups
    if not body.stream:
        answer = await run_in_threadpool(engine.answer, question, acl_groups=groups, history=history)
        observe_answer(answer, "/v1/chat/completions")
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=body.model,
            system_fingerprint=f"grounded-{answer.index_version}",
            choices=[ChatChoice(message=ChatChoiceMessage(content=_content(answer)))],
            usage=_usage(answer),
            citations=[CitationOut.of(c) for c in answer.citations],
            grounded=_extras(answer),
        )

    events: Iterator[AnswerEvent] = engine.stream(question, acl_groups=groups, history=history)
    first = await run_in_threadpool(next, events)  # bad input fails before the 200 goes out
    include_usage = bool((body.stream_options or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(payload, default=str)}\n\n".encode()

    async def stream() -> AsyncIterator[bytes]:
        yield chunk({"role": "assistant", "content": ""})
        citations: list[Citation] = list(first.data) if first.kind == "evidence" else []
        used: set[int] = set()
        sent = 0
        try:
            async for event in iterate_in_threadpool(events):
                if event.kind == "sentence":
                    yield chunk({"content": (" " if sent else "") + event.data.cited})
                    sent += 1
                    used.update(event.data.citations)
                elif event.kind == "answer":
                    answer: Answer = event.data
                    observe_answer(answer, "/v1/chat/completions")
                    # A partial answer's note on what is missing follows its sentences.
                    note = answer.text[len(cited_text(answer.sentences)) :]
                    tail = answer.text if not answer.sentences else note + _sources(citations, used)
                    if tail:
                        yield chunk({"content": tail})
                    extra: dict[str, Any] = {
                        "system_fingerprint": f"grounded-{answer.index_version}",
                        "citations": [CitationOut.of(c).model_dump(mode="json") for c in answer.citations],
                        "grounded": _extras(answer),
                    }
                    yield chunk({}, "stop", **extra)
                    if include_usage:
                        payload = {
                            "id": completion_id,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": body.model,
                            "choices": [],
                            "usage": _usage(answer).model_dump(),
                        }
                        yield f"data: {json.dumps(payload)}\n\n".encode()
        except GroundedError as exc:
            error = {"error": {"message": str(exc), "type": exc.title, "code": exc.status}}
            yield f"data: {json.dumps(error)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})
