"""Conversations over a real server: /v1/query with messages, stored conversations bound to a key,
the size limit, and a three-turn dialogue through the real ``openai`` client."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

import grounded
from grounded.api.app import create_app
from grounded.client import Client
from grounded.client.remote import RemoteKnowledgeBase
from grounded.ops.keys import KEYS_FILE, KeyStore
from tests.api.serving import serving
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

FIRST = "What does the assert statement do?"
SECOND = "When is it ignored?"
THIRD = "What exception does it raise?"


@pytest.fixture(scope="module")
def server(
    built_kb_path: Path,
    fake_backend: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("conversations") / "kb"
    shutil.copytree(built_kb_path, root)
    kb = grounded.open(
        root,
        create=False,
        experts={"answer": {"backend": fake_backend, "model": "echo"}},
        conversation={"max_turns": 6, "max_chars": 2000},
    )
    keys = KeyStore(root / KEYS_FILE)
    tokens = {"alice": keys.create("alice")[0], "bob": keys.create("bob")[0]}
    with serving(create_app(kb)) as base:
        yield base, tokens


def _http(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=60)


def test_three_turns_with_messages(server: tuple[str, dict[str, str]]) -> None:
    base, tokens = server
    with _http(base, tokens["alice"]) as http:
        messages = [{"role": "user", "content": FIRST}]
        first = http.post("/v1/query", json={"messages": messages}).json()
        assert first["rewrite"] is None
        assert first["answerability"] == "answerable"
        messages += [{"role": "assistant", "content": first["answer"]}, {"role": "user", "content": SECOND}]
        second = http.post("/v1/query", json={"messages": messages}).json()
        assert "assert statement" in second["rewrite"]
        assert second["trace"]["rewrite"]["method"] == "rules"
        assert second["citations"][0]["title"] == "assert"
        messages += [{"role": "assistant", "content": second["answer"]}, {"role": "user", "content": THIRD}]
        third = http.post("/v1/query", json={"messages": messages}).json()
        assert third["citations"][0]["title"] == "assert"
        assert third["query"] == THIRD
        both = http.post("/v1/query", json={"query": FIRST, "messages": messages})
        assert both.status_code == 422


def test_stored_conversation_belongs_to_its_key(server: tuple[str, dict[str, str]]) -> None:
    base, tokens = server
    with _http(base, tokens["alice"]) as alice, _http(base, tokens["bob"]) as bob:
        first = alice.post("/v1/query", json={"query": FIRST, "conversation": True}).json()
        conv = first["conversation_id"]
        assert conv
        second = alice.post("/v1/query", json={"query": SECOND, "conversation_id": conv}).json()
        assert "assert statement" in second["rewrite"]
        assert second["conversation_id"] == conv
        turns = alice.get(f"/v1/conversations/{conv}").json()["turns"]
        assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
        assert turns[2]["content"] == SECOND
        # Another key can neither read nor continue it, nor learn that it exists.
        for response in (
            bob.get(f"/v1/conversations/{conv}"),
            bob.post("/v1/query", json={"query": THIRD, "conversation_id": conv}),
            bob.delete(f"/v1/conversations/{conv}"),
        ):
            assert response.status_code == 404
            assert response.headers["content-type"] == "application/problem+json"
        assert alice.get("/v1/conversations/conv_nope").status_code == 404
        # The limit (6 turns here): the third question fits, the fourth does not.
        assert alice.post("/v1/query", json={"query": THIRD, "conversation_id": conv}).status_code == 200
        full = alice.post("/v1/query", json={"query": FIRST, "conversation_id": conv})
        assert full.status_code == 413
        assert "start a new conversation" in full.json()["detail"]
        assert alice.delete(f"/v1/conversations/{conv}").status_code == 204
        assert alice.get(f"/v1/conversations/{conv}").status_code == 404
        too_long = [{"role": "user", "content": "x" * 1500}, {"role": "assistant", "content": "y" * 1500}]
        sent = alice.post("/v1/query", json={"messages": [*too_long, {"role": "user", "content": FIRST}]})
        assert sent.status_code == 413


def test_python_client_history_and_stored_conversation(server: tuple[str, dict[str, str]]) -> None:
    base, tokens = server
    with Client(base, api_key=tokens["alice"]) as client:
        first = client.ask(FIRST, conversation=True)
        assert first.conversation_id is not None
        second = client.ask(SECOND, conversation_id=first.conversation_id)
        assert second.rewrite is not None
        assert second.citations[0].title == "assert"
        by_history = client.ask(SECOND, history=[("user", FIRST), ("assistant", first.answer)])
        assert by_history.rewrite == second.rewrite
    with RemoteKnowledgeBase(base, api_key=tokens["alice"]) as remote:
        assert remote.ask(SECOND, history=[{"role": "user", "content": FIRST}]).rewrite is not None


def test_three_turns_through_the_openai_client(server: tuple[str, dict[str, str]]) -> None:
    base, tokens = server
    with openai.OpenAI(base_url=f"{base}/v1", api_key=tokens["alice"], max_retries=0, timeout=60) as client:
        messages: list[dict[str, str]] = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": FIRST},
        ]
        replies = []
        for follow_up in (SECOND, THIRD, None):
            reply = client.chat.completions.create(model="grounded", messages=messages)  # type: ignore[arg-type]
            replies.append(reply)
            messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
            if follow_up is not None:
                messages.append({"role": "user", "content": follow_up})
        extras = [r.model_extra or {} for r in replies]
        assert extras[0]["grounded"]["rewrite"] is None
        assert "assert statement" in extras[1]["grounded"]["rewrite"]
        assert extras[1]["citations"][0]["title"] == "assert"
        assert extras[2]["citations"][0]["title"] == "assert"
        assert all(e["grounded"]["answerability"] == "answerable" for e in extras)
        parts: list[str] = []
        with client.chat.completions.create(model="grounded", messages=messages[:4], stream=True) as stream:  # type: ignore[arg-type,union-attr]
            for chunk in stream:
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
        assert "".join(parts) == replies[1].choices[0].message.content
