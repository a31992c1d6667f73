"""The FAISS vector index, with a factory that picks the index type by size.

Vectors are L2-normalised, so inner product is cosine similarity. Small collections get an
exact ``Flat`` index. Large ones get ``IVF,SQ8`` (a quarter of the memory, far fewer vectors
scanned per query); the factory then measures recall@10 against exact search on a sample and
raises ``nprobe`` until recall reaches the target, falling back to exact search when it cannot.
A quality drop is never silent: the measured recall is recorded in :class:`IndexChoice`.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["IndexChoice", "VectorIndex", "build_threads", "faiss_device", "gpu_count", "recall_at_k"]

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

EXACT_LIMIT = 100_000
"""Up to this many vectors, exact search is fast enough (a few ms a query) and is used."""

_load_lock = threading.Lock()
_loaded: tuple[Any, int] | None = None


def _load() -> tuple[Any, int]:
    """The ``faiss`` module and the OpenMP threads it builds with, imported on first use: a
    process that never touches a vector (a sync of mirrored tables) does not pay its ~13 MB of
    resident memory and its import time."""
    global _loaded
    if _loaded is None:
        with _load_lock:
            if _loaded is None:
                import faiss as module

                # Queries run one at a time, each on its own server thread. An OpenMP team per query
                # costs more than it saves and its spinning threads starve the rest of the request: a
                # hybrid search on the demo KB took 36 ms with faiss on 2 threads and 5 ms on 1 (2-core
                # machine). Builds (IVF training, adding, the recall check) still use every core.
                threads = max(1, int(module.omp_get_max_threads()))
                module.omp_set_num_threads(1)
                _loaded = (module, threads)
    return _loaded


class _Faiss:
    """Attribute access on the ``faiss`` module, which :func:`_load` imports on first use.

    faiss's bundled SWIG stubs disagree with its Python API (SearchParameters keywords,
    clustering params), so it is used untyped.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(_load()[0], name)


faiss: Any = _Faiss()


def build_threads() -> int:
    """The OpenMP threads FAISS builds with (every core it found); searches use one."""
    return _load()[1]


GPU_MAX_K = 2048
"""The largest ``k`` FAISS's GPU search takes; deeper searches run on the CPU copy."""

_gpu_lock = threading.Lock()
_gpu_resources: Any = None


def gpu_count() -> int:
    """CUDA devices FAISS can use: 0 with the ``faiss-cpu`` build (it has no GPU code)."""
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(faiss.get_num_gpus())


def faiss_device(setting: str = "auto", *, gpus: int | None = None) -> str:
    """Where FAISS searches: ``cuda`` when ``setting`` allows it and a GPU is there, else ``cpu``.

    ``setting`` is ``[index] device``: ``auto`` (the GPU when there is one), ``cpu`` or ``cuda``
    (a GPU or a clear error, never a silent fall back). ``gpus`` overrides :func:`gpu_count`.
    """
    if setting not in ("auto", "cpu", "cuda"):
        raise ValueError(f"index device must be auto, cpu or cuda, not {setting!r}")
    found = gpu_count() if gpus is None else gpus
    if setting == "cuda" and not found:
        raise RuntimeError(
            '[index] device = "cuda" but FAISS sees no GPU: install the gpu extra '
            "(pip uninstall faiss-cpu && pip install 'grounded[gpu]') on a machine with CUDA, or set device = \"auto\""
        )
    return "cuda" if setting != "cpu" and found else "cpu"


def _resources() -> Any:
    """One set of GPU resources (streams, scratch memory) for every index of the process."""
    global _gpu_resources
    with _gpu_lock:
        if _gpu_resources is None:
            _gpu_resources = faiss.StandardGpuResources()
        return _gpu_resources


@contextmanager
def _all_cores() -> Iterator[None]:
    faiss.omp_set_num_threads(build_threads())
    try:
        yield
    finally:
        faiss.omp_set_num_threads(1)


@dataclass(frozen=True, slots=True)
class IndexChoice:
    """What the factory built and why: the type, its search setting and measured recall."""

    kind: str
    nlist: int = 0
    nprobe: int = 0
    recall_at_10: float = 1.0
    trained_on: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recall_at_k(found: IdArray, truth: IdArray, k: int = 10) -> float:
    """Mean share of each query's true top-``k`` ids that ``found`` also returned."""
    hits = 0
    total = 0
    for row_found, row_true in zip(found, truth, strict=True):
        true_ids = {int(i) for i in row_true[:k] if i >= 0}
        hits += len(true_ids & {int(i) for i in row_found[:k]})
        total += len(true_ids)
    return hits / total if total else 1.0


def _without_self(rows: IdArray, own: IdArray, k: int = 10) -> IdArray:
    """Each row's ids minus the query's own id, cut to ``k``."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, (row, self_id) in enumerate(zip(rows, own, strict=True)):
        kept = [int(x) for x in row if x != self_id][:k]
        out[i, : len(kept)] = kept
    return out


class VectorIndex:
    """A FAISS index over ``int64`` chunk ids.

    >>> idx = VectorIndex.build(np.arange(3, dtype=np.int64), np.eye(3, dtype=np.float32))
    >>> idx.search(np.eye(3, dtype=np.float32)[:1], 1)[1].tolist()
    [[0]]
    """

    def __init__(self, index: Any, choice: IndexChoice) -> None:
        self._index = index
        self.choice = choice
        # A GPU copy for unfiltered searches (see to_device); the CPU index stays the source of
        # truth for saving, removing and filtered searches, which FAISS's GPU indexes do not take.
        self._gpu: Any = None
        self._gpu_search = threading.Lock()  # a GPU index is not safe for concurrent searches

    @property
    def device(self) -> str:
        """``cuda`` when searches run on a GPU copy, ``cpu`` otherwise."""
        return "cpu" if self._gpu is None else "cuda"

    def to_device(self, device: str) -> VectorIndex:
        """Search on ``device`` (``cpu`` or ``cuda``, as :func:`faiss_device` chose) from now on."""
        if device == "cpu":
            self._gpu = None
        elif device == "cuda":
            gpu = faiss.index_cpu_to_gpu(_resources(), 0, self._index)
            if self.choice.kind == "IVF,SQ8":
                faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", self.choice.nprobe)
            self._gpu = gpu
        else:
            raise ValueError(f"device must be cpu or cuda, not {device!r}")
        return self

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), IndexChoice(kind="Flat"))

    @classmethod
    def build(
        cls,
        ids: IdArray,
        vectors: FloatArray,
        *,
        exact_limit: int = EXACT_LIMIT,
        target_recall: float = 0.95,
        seed: int = 0,
    ) -> VectorIndex:
        """Build the index type that suits ``len(ids)`` and check it keeps ``target_recall``."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        n, dim = vectors.shape if vectors.ndim == 2 else (0, 0)
        if n <= exact_limit:
            index = cls.empty(dim or 384)
            if n:
                index.add(ids, vectors)
            return index
        with _all_cores():
            return cls._build_ivf(ids, vectors, target_recall=target_recall, seed=seed)

    @classmethod
    def _build_ivf(cls, ids: IdArray, vectors: FloatArray, *, target_recall: float, seed: int) -> VectorIndex:
        n, dim = vectors.shape
        nlist = int(min(65536, max(64, 2 ** round(math.log2(math.sqrt(n))))))
        rng = np.random.default_rng(seed)
        train_n = min(n, nlist * 64)
        sample = vectors[rng.choice(n, size=train_n, replace=False)]
        index = faiss.index_factory(dim, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(sample)
        index.add_with_ids(vectors, ids)

        # Recall check on a sample of the data used as queries. Each query's own vector is
        # dropped from both lists: it is trivially found and would flatter the recall.
        picks = rng.choice(n, size=min(n, 200), replace=False)
        queries = vectors[picks]
        exact = faiss.IndexFlatIP(dim)
        exact.add(vectors)
        _, truth_rows = exact.search(queries, 11)
        truth = _without_self(ids[truth_rows], ids[picks])
        best = 0.0
        nprobe = 1
        while nprobe <= nlist:
            _, found = index.search(queries, 11, params=faiss.SearchParametersIVF(nprobe=nprobe))
            best = recall_at_k(_without_self(found, ids[picks]), truth)
            if best >= target_recall:
                choice = IndexChoice("IVF,SQ8", nlist=nlist, nprobe=nprobe, recall_at_10=best, trained_on=n)
                return cls(index, choice)
            nprobe *= 2
        # IVF cannot reach the target on this data: exact search it is.
        flat = cls.empty(dim)
        flat.add(ids, vectors)
        return flat

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)
            )
            self._refresh_gpu()

    def remove(self, ids: IdArray) -> int:
        if not len(ids):
            return 0
        removed = int(self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))
        self._refresh_gpu()
        return removed

    def _refresh_gpu(self) -> None:
        if self._gpu is not None:
            self.to_device("cuda")

    def search(self, queries: FloatArray, k: int, *, allowed: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        """Top-``k`` ``(scores, ids)`` per query; ids are -1 where fewer than ``k`` exist.

        ``allowed`` restricts the result to those ids (used for filters and access control).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self._gpu is not None and allowed is None and k <= GPU_MAX_K:
            with self._gpu_search:
                scores, ids = self._gpu.search(queries, k)
            return scores, ids
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64)) if allowed is not None else None
        if self.choice.kind == "IVF,SQ8":
            params: Any = faiss.SearchParametersIVF(nprobe=self.choice.nprobe, sel=selector)
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
        scores, ids = self._index.search(queries, k, params=params)
        return scores, ids

    def save(self, path: Path) -> None:
        """Write atomically: a reader never sees a half-written file."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        faiss.write_index(self._index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, choice: IndexChoice) -> VectorIndex:
        return cls(faiss.read_index(str(path)), choice)

    def memory_bytes(self) -> int:
        """Serialized size, a close proxy for resident memory."""
        return int(faiss.serialize_index(self._index).nbytes)
