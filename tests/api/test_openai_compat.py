"""The OpenAI-compatible route, driven by the real ``openai`` client against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import grounded
from grounded.answering.types import cited_text
from grounded.api.app import create_app
from grounded.ops.keys import KEYS_FILE, KeyStore
from tests.api.serving import serving
from tests.conftest import REAL_QUESTION
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def chat_server(built_kb_path: Path, fake_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    # A copy of the shared KB, so creating keys does not put the shared one out of development mode.
    import shutil

    root = tmp_path_factory.mktemp("chat") / "kb"
    shutil.copytree(built_kb_path, root)
    kb = grounded.open(root, create=False, experts={"answer": {"backend": fake_backend, "model": "echo"}})
    with serving(create_app(kb)) as base:
        yield base


def _client(base: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)


def test_chat_completion_is_the_grounded_answer(chat_server: str) -> None:
    client = _client(chat_server, "local-dev")
    reply = client.chat.completions.create(
        model="grounded",
        messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "How do I leave the innermost loop early?"},
        ],
        temperature=0.7,
    )
    assert reply.object == "chat.completion"
    assert reply.model == "grounded"
    content = reply.choices[0].message.content or ""
    assert "[1]" in content
    assert "Sources:\n[1] break" in content
    assert reply.choices[0].finish_reason == "stop"
    extra = reply.model_extra or {}
    assert extra["grounded"]["abstained"] is False
    assert extra["citations"][0]["title"] == "break"
    assert reply.system_fingerprint == f"grounded-{extra['grounded']['index_version']}"
    models = client.models.list()
    assert [m.id for m in models.data] == ["grounded"]


def test_streaming_chat_completion_matches(chat_server: str) -> None:
    client = _client(chat_server, "local-dev")
    question = [{"role": "user", "content": "How do I leave the innermost loop early?"}]
    whole = client.chat.completions.create(model="grounded", messages=question)  # type: ignore[arg-type]
    parts: list[str] = []
    finish = None
    with client.chat.completions.create(
        model="grounded",
        messages=question,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
    assert "".join(parts) == whole.choices[0].message.content
    assert finish == "stop"


def test_chat_needs_a_user_message(chat_server: str) -> None:
    client = _client(chat_server, "local-dev")
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.chat.completions.create(model="grounded", messages=[{"role": "system", "content": "hi"}])
    assert "user message" in err.value.response.json()["detail"]


def test_chat_respects_the_key_groups(built_kb_path: Path, fake_backend: str, tmp_path: Path) -> None:  # noqa: F811
    import shutil

    root = tmp_path / "kb"
    shutil.copytree(built_kb_path, root)
    kb = grounded.open(root, create=False, experts={"answer": {"backend": fake_backend, "model": "echo"}})
    keys = KeyStore(root / KEYS_FILE)
    outsider, _ = keys.create("outsider", groups=["nobody"])
    # Every document of the shared KB is public, so restrict it by re-stamping the source's ACL.
    from tests.conftest import write_topics

    corpus = write_topics(tmp_path / "corpus")
    from connectors.files import FilesConfig, FilesConnector

    kb.sync("reference", FilesConnector(FilesConfig(path=corpus)), acl=["staff"])
    with serving(create_app(kb)) as base:
        with pytest.raises(openai.AuthenticationError):
            _client(base, "gk_wrong_key").chat.completions.create(
                model="grounded", messages=[{"role": "user", "content": "How do I leave a loop?"}]
            )
        reply = _client(base, outsider).chat.completions.create(
            model="grounded", messages=[{"role": "user", "content": "How do I leave the innermost loop early?"}]
        )
    extra = reply.model_extra or {}
    assert extra["citations"] == []
    assert extra["grounded"]["abstained"] is True


@pytest.mark.slow
def test_the_real_answer_model_behind_the_route(real_kb_path: Path, real_answer: Any) -> None:
    """Once with SmolLM2 itself (no stand-in): the reply is the engine's own cited answer."""
    kb = grounded.open(real_kb_path, create=False, answer={"cache": False})
    with serving(create_app(kb)) as base:
        reply = _client(base, "local-dev").chat.completions.create(
            model="grounded", messages=[{"role": "user", "content": REAL_QUESTION}]
        )
    extra = reply.model_extra or {}
    assert extra["grounded"]["answer_model"] == real_answer.model
    assert (extra["grounded"]["abstained"], extra["grounded"]["cached"]) == (False, False)
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0  # the model decoded, the cache did not answer
    content = reply.choices[0].message.content or ""
    assert content.startswith(cited_text(real_answer.sentences) + "\n\nSources:\n")
    assert [c["chunk_id"] for c in extra["citations"]] == [str(c.chunk_id) for c in real_answer.citations]
