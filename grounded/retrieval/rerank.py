"""The rerank stage: the trained cross-encoder reorders the fused top ``search.rerank_k``.

The model (:mod:`grounded.checks.rerank`) scores each of the first ``rerank_k`` fused hits
against the query, one pair at a time on one thread (int8), and the new order is a reciprocal-
rank fusion of the fused order and the model's:
``1/(rrf_k + fused_rank) + rerank_weight/(rrf_k + model_rank)``; ties break by the fused rank,
so the same query on the same version and model always gives the same list. Hits below
``rerank_k`` keep their fused order. Reranking only reorders what the filters (ACL included)
already let through.

``search.rerank = "auto"`` reranks when a model is trained on this machine and otherwise
searches as before, saying so in :attr:`Reranker.status` (and once in the log); ``"on"``
raises :class:`~grounded.errors.ConfigError` when none is.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from grounded.checks.model import CrossEncoder
from grounded.checks.rerank import active_reranker_dir, rerank_cache, rerank_input
from grounded.config import SearchSettings
from grounded.errors import ConfigError
from indexes.base import Hit

__all__ = ["NO_MODEL", "Reranker", "rerank"]

log = logging.getLogger("grounded.retrieval.rerank")

NO_MODEL = (
    "no reranker trained on this machine (search.rerank = 'auto' searches without one); train one with "
    "`grounded tune reranker --kb KB` (pseudo-queries from your passages) or set search.rerank = 'off'"
)


class Reranker:
    """A trained reranker in ``directory`` (``None``: the active one of the model cache, if any).

    >>> reranker = Reranker.shared()                          # doctest: +SKIP
    >>> reranker.available, reranker.status                   # doctest: +SKIP
    (True, 'reranker 3f2a... (int8, 1 thread)')
    >>> reranker.score("what does close() do?", hits)         # doctest: +SKIP
    array([0.91, 0.12, ...], dtype=float32)
    """

    _shared: ClassVar[dict[str, Reranker]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, directory: Path | None = None, *, threads: int = 1) -> None:
        self.directory = directory if directory is not None else active_reranker_dir()
        self.model = CrossEncoder(self.directory, threads=threads) if self.directory is not None else None
        self._warned = False

    @classmethod
    def shared(cls, directory: Path | None = None) -> Reranker:
        """One instance per model directory in this process (the weights load once, on first use)."""
        resolved = directory if directory is not None else active_reranker_dir()
        key = str(resolved or rerank_cache())
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(resolved) if resolved is not None else cls._absent()
            return cls._shared[key]

    @classmethod
    def _absent(cls) -> Reranker:
        absent = cls.__new__(cls)
        absent.directory, absent.model, absent._warned = None, None, False
        return absent

    @property
    def available(self) -> bool:
        return self.model is not None

    @property
    def fingerprint(self) -> str | None:
        return self.model.fingerprint if self.model is not None else None

    @property
    def status(self) -> str:
        """``reranker <fingerprint>`` or why there is none (:data:`NO_MODEL`)."""
        return f"reranker {self.fingerprint}" if self.model is not None else NO_MODEL

    def score(self, query: str, hits: Sequence[Hit]) -> np.ndarray:
        """The model's probability that each hit answers ``query`` (float32, one per hit)."""
        if self.model is None:
            raise ConfigError(NO_MODEL)
        inputs = [rerank_input(query, h.title, h.text) for h in hits]
        return self.model.score([query] * len(hits), inputs, "answerable")

    def warn_once(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s", NO_MODEL)


def rerank(
    query: str, hits: Sequence[Hit], reranker: Reranker, settings: SearchSettings
) -> tuple[list[Hit], dict[str, Any]]:
    """``hits`` (fused order) with the first ``settings.rerank_k`` reordered; and the stage's
    trace: ``status`` (``reranked`` / ``no model``), ``model``, ``k``, ``ms``, ``moved``."""
    started = time.perf_counter()
    if not reranker.available:
        if settings.rerank == "on":
            raise ConfigError(NO_MODEL.replace("'auto' searches without one", "'on' requires one"))
        reranker.warn_once()
        return list(hits), {"status": "no model", "detail": NO_MODEL}
    head, tail = list(hits[: settings.rerank_k]), list(hits[settings.rerank_k :])
    scores = reranker.score(query, head)
    by_model = sorted(range(len(head)), key=lambda i: (-float(scores[i]), head[i].chunk_id))
    model_rank = {i: r for r, i in enumerate(by_model, start=1)}
    fused_score = [
        1.0 / (settings.rrf_k + i + 1) + settings.rerank_weight / (settings.rrf_k + model_rank[i])
        for i in range(len(head))
    ]
    order = sorted(range(len(head)), key=lambda i: (-fused_score[i], i))
    # Keep scores descending down the whole list: reranked hits sit above the untouched tail.
    floor = tail[0].score if tail else 0.0
    reranked = [
        dataclasses.replace(
            head[i],
            score=float(np.float32(floor + fused_score[i])),
            rerank_score=float(scores[i]),
        )
        for i in order
    ]
    trace = {
        "status": "reranked",
        "model": reranker.fingerprint,
        "k": len(head),
        "moved": sum(1 for r, i in enumerate(order) if r != i),
        "ms": round((time.perf_counter() - started) * 1000, 3),
    }
    return reranked + tail, trace
