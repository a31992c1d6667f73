"""Conversations over REST: what a request's question leans on, and the stored conversations.

:func:`question_and_history` reads a :class:`~grounded.api.schemas.QueryRequest` three ways: a
lone ``query``; ``messages`` (the dialogue, its last user turn the question); or ``query`` with
``conversation_id`` (the stored turns are the history). :func:`remember` appends the question
and the answer to a stored conversation. ``GET``/``DELETE /v1/conversations/{id}`` read and
forget one; only the key that created it may (any other key gets 404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from grounded.access import Principal
from grounded.answering.conversation import Turn, as_turns, split_messages
from grounded.answering.types import Answer
from grounded.api.deps import PrincipalDep
from grounded.api.schemas import ConversationOut, MessageIn, QueryRequest
from grounded.errors import RequestTooLarge
from grounded.ops.conversations import Conversation, ConversationStore

__all__ = ["question_and_history", "remember", "router"]

router = APIRouter(tags=["conversations"])


def _store(request: Request) -> ConversationStore:
    store: ConversationStore = request.app.state.conversations
    return store


def question_and_history(
    body: QueryRequest, request: Request, principal: Principal
) -> tuple[str, list[Turn], Conversation | None]:
    """The question, the turns before it, and the stored conversation it continues (or starts)."""
    store = _store(request)
    if body.messages is not None:
        question, history = split_messages([m.model_dump() for m in body.messages])
        chars = sum(len(t.text) for t in history)
        if chars > store.max_chars:
            raise RequestTooLarge(
                f"the conversation sent holds {chars} characters; the limit is {store.max_chars} "
                "(conversation.max_chars): send only the recent turns"
            )
        conv = store.create(principal.key_id) if body.conversation else None
        if conv is not None:
            store.check_room(conv, [*history, Turn("user", question)])
            conv = store.append(conv.id, principal.key_id, history)
        return question, history, conv
    assert body.query is not None
    if body.conversation_id is not None:
        conv = store.get(body.conversation_id, principal.key_id)
        store.check_room(conv, [Turn("user", body.query), Turn("assistant", "")])
        return body.query, list(conv.turns), conv
    conv = store.create(principal.key_id) if body.conversation else None
    return body.query, [], conv


def remember(request: Request, principal: Principal, conv: Conversation | None, answer: Answer) -> str | None:
    """Append the question and the answer's text to ``conv``; its id (``None`` without one)."""
    if conv is None:
        return None
    turns = as_turns([("user", answer.question), ("assistant", answer.text)])
    _store(request).append(conv.id, principal.key_id, turns)
    return conv.id


@router.get("/v1/conversations/{conversation_id}", response_model=ConversationOut)
def get_conversation(conversation_id: str, request: Request, principal: PrincipalDep) -> Any:
    """The stored conversation's turns (404 for an unknown id or another key's conversation)."""
    conv = _store(request).get(conversation_id, principal.key_id)
    return ConversationOut(
        id=conv.id,
        turns=[MessageIn(role=t.role, content=t.text) for t in conv.turns],
        created_at=datetime.fromisoformat(conv.created_at),
        updated_at=datetime.fromisoformat(conv.updated_at),
    )


@router.delete("/v1/conversations/{conversation_id}", status_code=204)
def delete_conversation(conversation_id: str, request: Request, principal: PrincipalDep) -> Response:
    """Forget the stored conversation (404 for an unknown id or another key's conversation)."""
    _store(request).delete(conversation_id, principal.key_id)
    return Response(status_code=204)
