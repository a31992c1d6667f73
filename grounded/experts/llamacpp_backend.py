"""The ``llama-cpp`` backend: a GGUF file run by llama.cpp through llama-cpp-python.

llama-cpp-python compiles llama.cpp on install, and no prebuilt llama.cpp on PyPI loads on this
project's Debian 12 machines (README, "llama.cpp"), so ``make llama`` builds the pinned version
once per machine and every later virtual environment installs that wheel. It decodes the
same GGUF several times faster than de-quantized float32 in torch on a small CPU (README,
"Answers"). Greedy sampling with a fixed seed and a fixed thread count gives the same text on
every run, and the prompt is the GGUF's chat template rendered the way transformers renders it,
so both local backends read the same tokens.

The evaluated prompt stays in llama.cpp's KV cache between calls: a new prompt that begins with
the same tokens (the system message and a schema, a repair turn that repeats the whole first
exchange) evaluates only what follows. The text must stay the same byte for byte as after a fresh
evaluation, and llama.cpp's numbers depend on how tokens are batched (one token alone takes
another matrix kernel than many), so every prompt is evaluated in the same batches: blocks of
:data:`BLOCK` tokens from its first, as a fresh evaluation does. Only whole blocks that match the
cached tokens are kept (llama-cpp-python then keeps that prefix of ``input_ids`` and drops the rest
of the cache); each later block is computed from the same tokens and the same cache as it would be
from scratch. Tests hold the text identical on Qwen2.5-Coder-0.5B and SmolLM2.

Token counts and timings come from a logits processor that llama.cpp calls once per token chosen
(its first call ends the prompt's prefill); the text is streamed, so a deadline stops it between
tokens.

``generate_json`` passes the schema as ``response_format`` (llama-cpp-python turns it into a
GBNF grammar that constrains sampling); tool calls are decoded as one JSON object, as with the
transformers backend (:mod:`grounded.experts.structured`). ``generate_grammar`` hands a GBNF
grammar to llama.cpp's own grammar sampler, asked first about the greedy token alone
(:class:`_GrammarMask`): llama-cpp-python's sampler chain matches every one of the 151,936 tokens
of Qwen2.5's vocabulary against the grammar at each step, although the greedy token is most often
allowed, and then it is the token the grammar would have chosen too (llama.cpp's own command-line
sampler does the same). ``fast=False`` takes neither shortcut (every prompt evaluated from its
first token, the grammar in llama.cpp's chain): the reference the tests compare with.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grounded.config import ExpertSpec
from grounded.errors import ConfigError, ExpertError, ExpertTimeout
from grounded.experts.base import FunctionSchema, Generation, JsonGeneration, Message, ToolCalls
from grounded.experts.models import resolve_local_model
from grounded.experts.structured import json_tool_calls, parse_json

__all__ = ["BLOCK", "LlamaCppGenerator"]

BLOCK = 32
"""Tokens per evaluation batch, counted from a prompt's first token: the unit of prefix reuse (a
prompt re-evaluates at most ``BLOCK`` tokens it shares with the last one; smaller batches cost
llama.cpp a little more per token)."""


class LlamaCppGenerator:
    """Greedy chat completion with llama.cpp on a GGUF file."""

    def __init__(self, spec: ExpertSpec, *, n_ctx: int = 4096, fast: bool = True) -> None:
        self.spec = spec
        self.local = resolve_local_model(spec.model)
        if self.local.kind != "gguf":
            raise ConfigError(f"backend 'llama-cpp' needs a GGUF model; {spec.model!r} is a HF directory")
        self.fingerprint = f"llama-cpp:{self.local.fingerprint}"
        self.n_ctx = n_ctx
        self.fast = fast
        """Reuse the cached prompt prefix and ask the grammar about the greedy token first (module docstring)."""
        self._lock = threading.Lock()
        self._llm: Any = None

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
                "backend 'llama-cpp' needs llama-cpp-python: `make llama` (compiles llama.cpp once, 10-25 min on "
                "2 cores; pip keeps the wheel, so later venvs install it at once) or pip install 'grounded[llama]'"
            ) from exc
        # Half the cores by default, as transformers: on a busy machine a thread waiting for a
        # descheduled sibling at every step doubled the time per answer (ClapNQ, 2 cores, load 5-7:
        # 16.5 s per question on two threads against 7.7 s on one).
        threads = self.spec.threads or max(1, (os.cpu_count() or 2) // 2)
        self._llm = Llama(
            model_path=str(self.local.path), n_ctx=self.n_ctx, n_threads=threads, n_threads_batch=threads,
            n_batch=BLOCK, n_ubatch=BLOCK, seed=0, verbose=False,
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
        if not self.fast:
            from llama_cpp import LlamaGrammar  # type: ignore[import-not-found,attr-defined,unused-ignore]

            chained = LlamaGrammar.from_string(grammar, verbose=False)
            return self._complete(messages, max_tokens=max_tokens, stop=(), timeout_s=timeout_s, grammar=chained)
        with self._lock:
            self._load_locked()
            mask = _GrammarMask(self._llm, grammar)  # parsed by llama.cpp; refused there when invalid
        try:
            return self._complete(messages, max_tokens=max_tokens, stop=(), timeout_s=timeout_s, mask=mask)
        finally:
            mask.close()

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

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The token ids llama.cpp reads for ``messages``: the GGUF's chat template rendered, then tokenized."""
        with self._lock:
            self._load_locked()
            return self._prompt_tokens_locked(messages)

    def _prompt_tokens_locked(self, messages: Sequence[Message]) -> list[int]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # type: ignore[import-not-found,unused-ignore]

        llm = self._llm
        eos, bos = llm.token_eos(), llm.token_bos()
        formatter = Jinja2ChatFormatter(
            template=llm.metadata["tokenizer.chat_template"],
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        )
        chat: Any = [{"role": m.role, "content": m.content} for m in messages]
        result = formatter(messages=chat)
        tokens: list[int] = llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        return tokens

    def _keep_whole_blocks(self, messages: Sequence[Message]) -> None:
        """Cut the cached tokens back to the whole blocks the new prompt starts with (module docstring):
        llama-cpp-python reuses at most ``n_tokens`` of them and evaluates the rest in blocks."""
        llm = self._llm
        tokens = self._prompt_tokens_locked(messages)
        cached = llm._input_ids
        shared = 0
        for a, b in zip(cached, tokens[:-1], strict=False):  # the last token is always evaluated
            if a != b:
                break
            shared += 1
        llm.n_tokens = min(llm.n_tokens, shared // BLOCK * BLOCK)

    def close(self) -> None:
        """Free the model now (otherwise when the generator is garbage-collected)."""
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    def _complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        stop: Sequence[str],
        timeout_s: float | None,
        response_format: dict[str, Any] | None = None,
        grammar: Any = None,
        mask: _GrammarMask | None = None,
    ) -> Generation:
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1; got {max_tokens}")
        timeout = timeout_s if timeout_s is not None else self.spec.timeout_s
        with self._lock:
            started = time.perf_counter()
            self._load_locked()
            deadline = started + timeout
            steps: list[int] = []  # the length of the sequence at each token chosen
            marks: dict[str, float] = {}

            def count(input_ids: Any, scores: Any) -> Any:
                # Called once per token chosen (the end-of-text token included), before the grammar
                # and the greedy pick; exceptions cannot cross llama.cpp's callback, so it only counts.
                marks.setdefault("prefill_done", time.perf_counter())
                steps.append(len(input_ids))
                return scores

            parts: list[str] = []
            finish = "stop"
            try:
                if self.fast:
                    self._keep_whole_blocks(messages)
                else:
                    self._llm.reset()
                stream = self._llm.create_chat_completion(
                    messages=[{"role": m.role, "content": m.content} for m in messages],
                    max_tokens=max_tokens, temperature=0.0, top_k=1, top_p=1.0, min_p=0.0,
                    repeat_penalty=1.0, seed=0, stop=list(stop) or None, stream=True,
                    response_format=response_format, grammar=grammar,
                    logits_processor=[count] if mask is None else [count, mask],
                )  # fmt: skip
                for chunk in stream:
                    choice = chunk["choices"][0]
                    parts.append(choice.get("delta", {}).get("content") or "")
                    finish = choice.get("finish_reason") or finish
                    if time.perf_counter() > deadline:
                        stream.close()
                        raise ExpertTimeout(
                            f"llama.cpp did not finish within {timeout:g} s; raise experts.<task>.timeout_s"
                        )
            except (RuntimeError, ValueError) as exc:
                raise ExpertError(f"llama.cpp failed on {self.local.path.name}: {exc}") from exc
            finished = time.perf_counter()
        prefill_done = marks.get("prefill_done", finished)
        return Generation(
            text="".join(parts).strip(),
            prompt_tokens=steps[0] if steps else 0,
            completion_tokens=len(steps),
            prefill_s=prefill_done - started,
            decode_s=finished - prefill_done,
            finish_reason=str(finish),
        )


class _GrammarMask:
    """A GBNF grammar as a logits processor that asks llama.cpp about the greedy token first.

    Each step, the token with the highest logit is matched alone; only when the grammar refuses it
    are all the vocabulary's tokens matched (refused ones set to -inf). Greedy decoding then picks
    the same token as with the grammar in llama.cpp's sampler chain: an allowed token with the
    highest logit of all is also the highest among the allowed. The grammar advances by the tokens
    the model was given since the last step (the chosen one), read from ``input_ids``.
    """

    def __init__(self, llm: Any, grammar: str) -> None:
        import llama_cpp  # type: ignore[import-not-found,unused-ignore]

        self._lib: Any = llama_cpp
        self._sampler: Any = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode("utf-8"), b"root")
        if not self._sampler:
            raise ExpertError("llama.cpp cannot parse the grammar (its log says where)")
        n_vocab = int(llm.n_vocab())
        # One array shaped as llama.cpp's llama_token_data (id, logit, p), reused at each step.
        self._all = np.zeros(n_vocab, dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
        self._all["id"] = np.arange(n_vocab, dtype=np.int32)
        self._one = (llama_cpp.llama_token_data * 1)()
        self._seen: int | None = None

    def _apply(self, data: Any, size: int) -> None:
        lib = self._lib
        array = lib.llama_token_data_array(
            data=ctypes.cast(data, lib.llama_token_data_p), size=size, selected=-1, sorted=False
        )
        lib.llama_sampler_apply(self._sampler, ctypes.byref(array))

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._seen is not None:
            for token in input_ids[self._seen :]:
                self._lib.llama_sampler_accept(self._sampler, int(token))
        self._seen = len(input_ids)
        best = int(np.argmax(scores))
        self._one[0] = self._lib.llama_token_data(best, float(scores[best]), 0.0)
        self._apply(self._one, 1)
        if np.isfinite(self._one[0].logit):
            return scores  # allowed: greedy picks it, as it would under the grammar
        self._all["logit"] = scores
        self._all["p"] = 0.0
        self._apply(self._all.ctypes.data, len(self._all))
        return self._all["logit"].copy()

    def close(self) -> None:
        if self._sampler:
            self._lib.llama_sampler_free(self._sampler)
            self._sampler = None
