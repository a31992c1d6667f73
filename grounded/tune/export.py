"""Export a tuned expert as one quantized GGUF file (``grounded tune export``).

A tuned expert is float32 weights, or a LoRA adapter on a base; llama.cpp, Ollama and the
``llama-cpp`` backend want a GGUF file. The base GGUF the expert was tuned from already holds
everything but the weights — architecture, tokenizer, chat template — so the export copies its
metadata, writes the tuned weights under the base's tensor names (through ``gguf``'s own name
map, the one llama.cpp's converter uses), and quantizes each matrix to Q8_0 (or F16); norms and
biases stay float32, as in the base. Q8_0 keeps about 1/256 of each 32-weight block's largest
value as its error, and is the format whose greedy output stays closest to float32's.

Only GGUF bases of the architectures our experts use are supported: ``llama`` (SmolLM2) and
``qwen2`` (Qwen2.5, Qwen2.5-Coder). For ``llama``, llama.cpp stores the query and key
projections with their rotary halves interleaved; transformers undoes that when it reads a
GGUF, so the export applies it again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounded.errors import ConfigError, InvalidRequest, NotFound
from grounded.experts.models import LocalModel, resolve_local_model
from grounded.experts.tuned import experts_dir

__all__ = ["EXPORT_TYPES", "ExportResult", "export_gguf", "gguf_base"]

EXPORT_TYPES = ("q8_0", "f16")
_ARCHS = ("llama", "qwen2")


@dataclass(frozen=True, slots=True)
class ExportResult:
    """The written file, its size, and how many tensors were quantized."""

    path: Path
    bytes: int
    tensors: int
    quantized: int


def gguf_base(model: LocalModel) -> LocalModel:
    """The GGUF file at the root of ``model``'s base chain (an adapter's base, or the model itself)."""
    while model.kind == "adapter" and model.base is not None:
        model = model.base
    if model.kind != "gguf":
        raise ConfigError(
            f"export needs a GGUF base to take the tokenizer and metadata from; {model.path} is a {model.kind} model"
        )
    return model


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's layout of a llama query/key projection (rotary halves interleaved per head)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _field(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    return field.contents() if field is not None else None


def export_gguf(
    kb_path: Path,
    name: str,
    out: Path,
    *,
    dtype: str = "q8_0",
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Write tuned expert ``name`` of the knowledge base at ``kb_path`` to ``out`` as a GGUF file."""
    import gguf

    from grounded.experts.transformers_backend import load_causal_lm

    if dtype not in EXPORT_TYPES:
        raise InvalidRequest(f"export type must be one of {', '.join(EXPORT_TYPES)}; got {dtype!r}")
    directory = experts_dir(kb_path) / name
    card_path = directory / "card.json"
    if not card_path.is_file():
        raise NotFound(f"no tuned expert {name!r} in {experts_dir(kb_path)}; `grounded tune list` shows them")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    expert = resolve_local_model(str(directory))
    if expert.kind == "adapter":
        base = gguf_base(expert)
    else:
        base = gguf_base(resolve_local_model(str(card["base"])))
        if base.fingerprint != card.get("base_fingerprint"):
            raise ConfigError(
                f"expert {name!r} was tuned from {card['base']!r} with fingerprint {card.get('base_fingerprint')}; "
                f"that file is now {base.fingerprint}, so its tokenizer may not be the expert's"
            )
    reader = gguf.GGUFReader(str(base.path))
    arch = str(_field(reader, "general.architecture"))
    if arch not in _ARCHS:
        raise ConfigError(f"export supports GGUF bases of architecture {' or '.join(_ARCHS)}; {base.path} is {arch!r}")

    model, _ = load_causal_lm(expert)
    config = model.config
    names = gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], config.num_hidden_layers)
    weights: dict[str, Any] = {}  # GGUF name -> torch tensor (converted one at a time when written)
    for hf_name, tensor in model.state_dict().items():
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ConfigError(f"export: no GGUF name for tensor {hf_name!r} of {arch}")
        weights.setdefault(gguf_name, tensor)
    wanted = {t.name for t in reader.tensors}
    extra = set(weights) - wanted - ({"output.weight"} if config.tie_word_embeddings else set())
    if extra:
        raise ConfigError(f"export: the tuned model has tensors the base GGUF lacks, e.g. {sorted(extra)[0]!r}")

    qtype = gguf.GGMLQuantizationType.Q8_0 if dtype == "q8_0" else gguf.GGMLQuantizationType.F16
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch)
    skip = {gguf.Keys.General.ARCHITECTURE, gguf.Keys.General.FILE_TYPE, gguf.Keys.General.NAME}
    for field in reader.fields.values():
        if field.name in skip or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    writer.add_name(f"{name} (tuned from {base.path.name})")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if dtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    quantized = 0
    try:
        for i, info in enumerate(reader.tensors):
            if info.name not in weights:
                raise ConfigError(f"export: the base GGUF has tensor {info.name!r} that the tuned model lacks")
            data = weights[info.name].detach().float().numpy()
            if arch == "llama" and info.name.endswith(("attn_q.weight", "attn_k.weight")):
                data = _permute(data, heads if "attn_q" in info.name else kv_heads)
            small = info.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
            if data.ndim < 2 or small:
                writer.add_tensor(info.name, np.ascontiguousarray(data, dtype=np.float32))
            elif qtype == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % 32 == 0:
                writer.add_tensor(info.name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
                quantized += 1
            else:
                writer.add_tensor(info.name, np.ascontiguousarray(data, dtype=np.float16))
                quantized += 1
            if progress is not None:
                progress(i + 1, len(reader.tensors))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    return ExportResult(out, out.stat().st_size, len(reader.tensors), quantized)
