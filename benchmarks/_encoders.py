"""Encoder variants for ``benchmarks/speed.py --only encoder``: today's path and the candidates.

Every variant embeds with one thread (one serving worker per core). The int8 variants are
dynamic quantization of the exported float32 model by ONNX Runtime's quantizer, written next to
it in the model cache; they are measured, not offered by grounded: their activation scale spans
the whole batch, so a batched query's embedding depends on its neighbours (run one query per
call, int8 is batch-invariant again, but gains nothing from batching).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grounded.experts.embedding import SentenceEmbedder
from grounded.experts.onnx_encoder import OnnxEncoder

Encode = Callable[[Sequence[str]], np.ndarray]


class _Int8Encoder(OnnxEncoder):
    def exported(self) -> Path:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = super().exported()
        target = fp32.with_name("model-int8-dynamic.onnx")
        if not target.is_file():
            tmp = target.with_name("model-int8-dynamic.onnx.tmp")
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
            tmp.replace(target)
        return target


def variants() -> dict[str, tuple[Encode, bool]]:
    """``name -> (encode, batch_invariant)``, today's path first."""
    import torch

    torch.set_num_threads(1)
    today = SentenceEmbedder(runtime="torch", batch_size=64)
    onnx = SentenceEmbedder(runtime="onnx", batch_size=64)
    int8 = _Int8Encoder(onnx.model_dir, onnx.fingerprint)
    return {
        "today: sentence-transformers, torch fp32": (today.embed, False),
        "onnx fp32, length buckets (default)": (onnx.embed, True),
        "onnx int8 dynamic, batched": (lambda texts: int8.encode(texts, batch_size=64), False),
        "onnx int8 dynamic, one query per run": (lambda texts: int8.encode(texts, batch_size=1), True),
    }


def gemm_gflops(seconds: float = 2.0) -> float:
    """This CPU's float32 GEMM rate on one thread (best 1024x1024x1024 torch.mm)."""
    import torch

    torch.set_num_threads(1)
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * 1024**3 / best / 1e9


def forward_flops(tokens: int, config: Any) -> float:
    """Multiply-add FLOPs of one BERT forward pass over ``tokens`` tokens (no padding)."""
    h, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = 2 * tokens * (4 * h * h + 2 * h * ff) + 2 * 2 * tokens * tokens * h
    return float(layers * per_layer)


def per_query_ms(encode: Encode, queries: list[str], batch: int) -> list[float]:
    """Milliseconds per query, each batch of ``batch`` distinct queries timed once."""
    out: list[float] = []
    for lo in range(0, len(queries) - batch + 1, batch):
        t0 = time.perf_counter()
        encode(queries[lo : lo + batch])
        out.append((time.perf_counter() - t0) * 1000 / batch)
    return out


def invariant_in_batches(encode: Encode, queries: list[str], trials: int = 8) -> bool:
    """Whether each query's embedding is the same bytes alone and inside batches of 16."""
    for t in range(trials):
        batch = queries[t * 16 : (t + 1) * 16]
        together = encode(batch)
        if any(together[i].tobytes() != encode([q])[0].tobytes() for i, q in enumerate(batch[:4])):
            return False
    return True
