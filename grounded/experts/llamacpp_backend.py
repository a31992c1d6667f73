"""The ``llama-cpp`` backend: a GGUF file run by llama.cpp (``pip install llama-cpp-python``).

Optional: llama-cpp-python compiles from source on install (minutes). When it is installed it
decodes the same GGUF many times faster than de-quantized float32 in torch on a small CPU; see
the README's benchmark for the measured ratio. Greedy sampling with a fixed seed and a fixed
thread count gives the same text on every run.

``generate_json`` passes the schema as ``response_format`` (llama-cpp-python turns it into a
GBNF grammar that constrains sampling); tool calls are decoded as one JSON object, as with the
transformers backend (:mod:`grounded.experts.structured`). ``generate_grammar`` hands a GBNF
grammar to llama.cpp's own grammar sampler.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from grounded.config import ExpertSpec
from grounded.errors import ConfigError, ExpertError, ExpertTimeout
from grounded.experts.base import FunctionSchema, Generation, JsonGeneration, Message, ToolCalls
from grounded.experts.models import resolve_local_model
from grounded.experts.structured import json_tool_calls, parse_json

__all__ = ["LlamaCppGenerator"]


class LlamaCppGenerator:
    """Greedy chat completion with llama.cpp on a GGUF file."""

    def __init__(self, spec: ExpertSpec, *, n_ctx: int = 4096) -> None:
        self.spec = spec
        self.local = resolve_local_model(spec.model)
        if self.local.kind != "gguf":
            raise ConfigError(f"backend 'llama-cpp' needs a GGUF model; {spec.model!r} is a HF directory")
        self.fingerprint = f"llama-cpp:{self.local.fingerprint}"
        self.n_ctx = n_ctx
        self._lock = threading.Lock()
        self._llm: Any = None
        self._grammars: dict[str, Any] = {}

    def load(self) -> None:
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._llm is not None:
            return
        try:
            from llama_cpp import Llama  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                "backend 'llama-cpp' needs llama-cpp-python: pip install llama-cpp-python (compiles for minutes)"
            ) from exc
        threads = self.spec.threads or os.cpu_count() or 1
        self._llm = Llama(
            model_path=str(self.local.path), n_ctx=self.n_ctx, n_threads=threads, n_threads_batch=threads,
            seed=0, verbose=False,
        )  # fmt: skip

    def count_tokens(self, text: str) -> int:
        with self._lock:
            self._load_locked()
            return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False))

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        """Greedy completion, streamed token by token so a deadline can stop it."""
        return self._complete(messages, max_tokens=max_tokens, stop=stop, timeout_s=timeout_s)

    def generate_json(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any],
        *,
        max_tokens: int,
        name: str = "output",
        timeout_s: float | None = None,
    ) -> JsonGeneration:
        """Greedy decoding under a grammar built from ``schema``; the value is parsed and validated."""
        generation = self._complete(
            messages, max_tokens=max_tokens, stop=(), timeout_s=timeout_s,
            response_format={"type": "json_object", "schema": dict(schema)},
        )  # fmt: skip
        return JsonGeneration(
            parse_json(generation.text, schema, what=name, finish_reason=generation.finish_reason), generation
        )

    def generate_grammar(
        self, messages: Sequence[Message], grammar: str, *, max_tokens: int, timeout_s: float | None = None
    ) -> Generation:
        """Greedy decoding under the GBNF ``grammar`` (llama.cpp's grammar sampler)."""
        with self._lock:
            self._load_locked()
            parsed = self._grammars.get(grammar)
            if parsed is None:
                from llama_cpp import LlamaGrammar  # type: ignore[import-not-found,attr-defined,unused-ignore]

                try:
                    parsed = LlamaGrammar.from_string(grammar, verbose=False)
                except ValueError as exc:
                    raise ExpertError(f"llama.cpp cannot parse the grammar: {exc}") from exc
                if len(self._grammars) >= 64:  # one per linked schema; bound it all the same
                    self._grammars.pop(next(iter(self._grammars)))
                self._grammars[grammar] = parsed
        return self._complete(messages, max_tokens=max_tokens, stop=(), timeout_s=timeout_s, grammar=parsed)

    def generate_tool_calls(
        self,
        messages: Sequence[Message],
        tools: Sequence[FunctionSchema],
        *,
        max_calls: int,
        max_tokens: int,
        timeout_s: float | None = None,
    ) -> ToolCalls:
        """Calls decoded as one constrained JSON object (see :mod:`grounded.experts.structured`)."""
        return json_tool_calls(self, messages, tools, max_calls=max_calls, max_tokens=max_tokens, timeout_s=timeout_s)

    def _complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        stop: Sequence[str],
        timeout_s: float | None,
        response_format: dict[str, Any] | None = None,
        grammar: Any = None,
    ) -> Generation:
        timeout = timeout_s if timeout_s is not None else self.spec.timeout_s
        with self._lock:
            started = time.perf_counter()
            self._load_locked()
            deadline = started + timeout
            first: float | None = None
            parts: list[str] = []
            finish = "stop"
            try:
                self._llm.reset()
                stream = self._llm.create_chat_completion(
                    messages=[{"role": m.role, "content": m.content} for m in messages],
                    max_tokens=max_tokens, temperature=0.0, top_k=1, top_p=1.0, min_p=0.0,
                    repeat_penalty=1.0, seed=0, stop=list(stop) or None, stream=True,
                    response_format=response_format, grammar=grammar,
                )  # fmt: skip
                for chunk in stream:
                    if first is None:
                        first = time.perf_counter()
                    choice = chunk["choices"][0]
                    parts.append(choice.get("delta", {}).get("content") or "")
                    finish = choice.get("finish_reason") or finish
                    if time.perf_counter() > deadline:
                        raise ExpertTimeout(
                            f"llama.cpp did not finish within {timeout:g} s; raise experts.answer.timeout_s"
                        )
            except (RuntimeError, ValueError) as exc:
                raise ExpertError(f"llama.cpp failed on {self.local.path.name}: {exc}") from exc
            finished = time.perf_counter()
            text = "".join(parts)
            prompt_tokens = int(self._llm.n_tokens) - len(
                self._llm.tokenize(text.encode(), add_bos=False, special=True)
            )
        first = first or finished
        completion = max(0, int(self._llm.n_tokens) - prompt_tokens)
        return Generation(
            text=text.strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion,
            prefill_s=first - started,
            decode_s=finished - first,
            finish_reason=str(finish),
        )
