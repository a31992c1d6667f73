"""The ``openai`` backend: any OpenAI-compatible ``/chat/completions`` endpoint over httpx.

vLLM, SGLang, Ollama, the llama.cpp server and hosted APIs all speak it. Requests use
``temperature=0`` and a fixed ``seed`` (servers that honour them decode greedily). 429 and 5xx
answers and connection errors are retried with exponential backoff, honouring ``Retry-After``;
everything else fails at once with the server's own message.

Structured output uses the server's native API: ``generate_tool_calls`` sends ``tools`` with
``tool_choice="required"`` and reads ``message.tool_calls``; ``generate_json`` sends
``response_format={"type": "json_schema", ...}`` (vLLM, SGLang and llama.cpp server decode under
it). Whatever comes back is parsed and validated against the schema before anyone uses it, so a
server that ignores the request gives an ExpertError, not a malformed call.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from grounded.config import ExpertSpec
from grounded.errors import ConfigError, ExpertError, ExpertTimeout
from grounded.experts.base import (
    FunctionSchema,
    Generation,
    JsonGeneration,
    Message,
    ToolCallRequest,
    ToolCalls,
)
from grounded.experts.structured import parse_json, validate

__all__ = ["OpenAIChatGenerator"]

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0


def _retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait before the next try: ``Retry-After`` (seconds or a date), else backoff."""
    value = response.headers.get("retry-after")
    if value:
        try:
            return min(MAX_BACKOFF_S, max(0.0, float(value)))
        except ValueError:
            try:
                return float(min(MAX_BACKOFF_S, max(0.0, parsedate_to_datetime(value).timestamp() - time.time())))
            except (TypeError, ValueError):
                pass
    return min(MAX_BACKOFF_S, 0.5 * 2.0**attempt)


class OpenAIChatGenerator:
    """Chat completions from an OpenAI-compatible server.

    >>> gen = OpenAIChatGenerator(ExpertSpec(backend="openai", model="smollm2", url="http://127.0.0.1:8080/v1"))
    >>> gen.fingerprint
    'openai:http://127.0.0.1:8080/v1:smollm2'
    """

    def __init__(self, spec: ExpertSpec, *, transport: httpx.BaseTransport | None = None) -> None:
        if not spec.url:
            raise ConfigError(
                "expert backend 'openai' needs a url, e.g. GROUNDED_EXPERTS__ANSWER__URL=http://127.0.0.1:8080/v1"
            )
        self.spec = spec
        self.url = spec.url.rstrip("/")
        self.fingerprint = f"openai:{self.url}:{spec.model}"
        headers = {"accept": "application/json"}
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise ConfigError(f"environment variable {spec.api_key_env!r} (experts api_key_env) is not set")
            headers["authorization"] = f"Bearer {key}"
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=spec.timeout_s, transport=transport)
        self.sleep = time.sleep  # tests replace it

    def __repr__(self) -> str:
        return f"OpenAIChatGenerator({self.url!r}, model={self.spec.model!r})"

    def close(self) -> None:
        self._client.close()

    def _payload(self, messages: Sequence[Message], max_tokens: int) -> dict[str, Any]:
        return {
            "model": self.spec.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": 0,
            "seed": 0,
            "stream": False,
        }

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        """One chat completion, retried on 429/5xx; raises ExpertError or ExpertTimeout."""
        payload = self._payload(messages, max_tokens)
        if stop:
            payload["stop"] = list(stop)
        return self._complete(payload, timeout_s)[1]

    def generate_json(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any],
        *,
        max_tokens: int,
        name: str = "output",
        timeout_s: float | None = None,
    ) -> JsonGeneration:
        """A completion under ``response_format`` json_schema (strict), parsed and validated here too."""
        payload = self._payload(messages, max_tokens)
        payload["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(name), "schema": dict(schema), "strict": True},
        }
        _, generation = self._complete(payload, timeout_s)
        value = parse_json(generation.text, schema, what=name, finish_reason=generation.finish_reason)
        return JsonGeneration(value, generation)

    def generate_tool_calls(
        self,
        messages: Sequence[Message],
        tools: Sequence[FunctionSchema],
        *,
        max_calls: int,
        max_tokens: int,
        timeout_s: float | None = None,
    ) -> ToolCalls:
        """Native function calling: ``tools`` + ``tool_choice="required"``; reads ``message.tool_calls``."""
        if not tools:
            raise ExpertError("no tools to call: offer at least one tool to the tool-call expert")
        by_name = {t.name: t for t in tools}
        payload = self._payload(messages, max_tokens)
        payload["tools"] = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in tools
        ]
        payload["tool_choice"] = "required"
        payload["parallel_tool_calls"] = max_calls > 1
        message, generation = self._complete(payload, timeout_s)
        raw = message.get("tool_calls") or []
        if not isinstance(raw, list) or not raw:
            raise ExpertError(
                f"{self.url}/chat/completions returned no tool_calls although tool_choice was 'required' "
                f"(does the server support function calling for {self.spec.model!r}?): {message!r:.200}"
            )
        calls = []
        for i, item in enumerate(raw[:max_calls]):
            try:
                name = item["function"]["name"]
                arguments = item["function"]["arguments"]
                arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
            except (KeyError, TypeError, json.JSONDecodeError) as exc:
                raise ExpertError(f"tool call {i} from {self.url} is malformed ({exc}): {item!r:.200}") from exc
            if name not in by_name:
                raise ExpertError(
                    f"tool call {i} names tool {name!r}, which was not offered; offered: {', '.join(by_name)}"
                )
            validate(arguments, by_name[name].parameters, what=f"arguments of {name!r}")
            calls.append(ToolCallRequest(name, dict(arguments)))
        return ToolCalls(tuple(calls), generation)

    def _complete(self, payload: dict[str, Any], timeout_s: float | None) -> tuple[dict[str, Any], Generation]:
        """POST one request, retrying 429/5xx and connection errors; the reply's message and Generation."""
        timeout = timeout_s if timeout_s is not None else self.spec.timeout_s
        started = time.perf_counter()
        deadline = started + timeout
        attempt = 0
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise ExpertTimeout(f"{self.url}/chat/completions did not answer within {timeout:g} s")
            try:
                response = self._client.post("/chat/completions", json=payload, timeout=left)
            except httpx.TimeoutException as exc:
                raise ExpertTimeout(
                    f"{self.url}/chat/completions did not answer within {timeout:g} s; raise experts.<task>.timeout_s"
                ) from exc
            except httpx.TransportError as exc:
                if attempt < self.spec.max_retries:
                    self.sleep(min(max(0.0, deadline - time.perf_counter()), 0.5 * 2.0**attempt))
                    attempt += 1
                    continue
                raise ExpertError(f"cannot reach {self.url} ({exc!r}); is the model server running?") from exc
            if response.status_code in RETRY_STATUS and attempt < self.spec.max_retries:
                wait = _retry_after(response, attempt)
                if time.perf_counter() + wait >= deadline:
                    raise ExpertTimeout(
                        f"{self.url} asked to retry after {wait:g} s (HTTP {response.status_code}), past the "
                        f"{timeout:g} s timeout"
                    )
                self.sleep(wait)
                attempt += 1
                continue
            return self._parse(response, time.perf_counter() - started)

    def _parse(self, response: httpx.Response, elapsed: float) -> tuple[dict[str, Any], Generation]:
        if response.status_code != 200:
            detail = response.text[:300].strip()
            raise ExpertError(
                f"{self.url}/chat/completions answered HTTP {response.status_code}"
                f"{' after retries' if response.status_code in RETRY_STATUS else ''}: {detail or '(empty body)'}"
            )
        missing = f"{self.url}/chat/completions returned no choices[0].message.content: {response.text[:200]!r}"
        try:
            body = response.json()
            choice = body["choices"][0]
            message = choice["message"]
            usable = isinstance(message, dict) and ("content" in message or "tool_calls" in message)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ExpertError(missing) from exc
        if not usable:
            raise ExpertError(missing)
        text = message.get("content") or ""
        usage = body.get("usage") or {}
        generation = Generation(
            text=str(text).strip(),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            prefill_s=0.0,
            decode_s=elapsed,
            finish_reason=str(choice.get("finish_reason") or "stop"),
        )
        return dict(message), generation


def _schema_name(name: str) -> str:
    """A ``response_format`` schema name: letters, digits, ``_`` and ``-`` only (the API's rule)."""
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64]
    return cleaned or "output"
