"""The ``openai`` backend: any OpenAI-compatible ``/chat/completions`` endpoint over httpx.

vLLM, SGLang, Ollama, the llama.cpp server and hosted APIs all speak it. Requests use
``temperature=0`` and a fixed ``seed`` (servers that honour them decode greedily). 429 and 5xx
answers and connection errors are retried with exponential backoff, honouring ``Retry-After``;
everything else fails at once with the server's own message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from grounded.config import ExpertSpec
from grounded.errors import ConfigError, ExpertError, ExpertTimeout
from grounded.experts.base import Generation, Message

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

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        """One chat completion, retried on 429/5xx; raises ExpertError or ExpertTimeout."""
        payload: dict[str, Any] = {
            "model": self.spec.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": 0,
            "seed": 0,
            "stream": False,
        }
        if stop:
            payload["stop"] = list(stop)
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
                    f"{self.url}/chat/completions did not answer within {timeout:g} s; raise experts.answer.timeout_s"
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

    def _parse(self, response: httpx.Response, elapsed: float) -> Generation:
        if response.status_code != 200:
            detail = response.text[:300].strip()
            raise ExpertError(
                f"{self.url}/chat/completions answered HTTP {response.status_code}"
                f"{' after retries' if response.status_code in RETRY_STATUS else ''}: {detail or '(empty body)'}"
            )
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ExpertError(
                f"{self.url}/chat/completions returned no choices[0].message.content: {response.text[:200]!r}"
            ) from exc
        usage = body.get("usage") or {}
        return Generation(
            text=str(text).strip(),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            prefill_s=0.0,
            decode_s=elapsed,
            finish_reason=str(choice.get("finish_reason") or "stop"),
        )
