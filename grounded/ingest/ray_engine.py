"""Distributed ingestion on Ray Data: the embeddings on a Ray cluster, the version built as locally.

    grounded ingest docs/ --engine ray [--address auto] [--workers 2]
    # or, for sync and refresh, in grounded.toml:  [scale] engine = "ray"

Two passes. The first runs on Ray: it reads the connector's documents (one read task per split
where the connector can split: the files connector by file), cuts them into chunks in tasks
exactly as :class:`~grounded.ingest.builder.VersionBuilder` will, drops the chunks whose text the
current version has embedded already, and embeds the rest in a pool of actors, each loading the
model once (on a GPU when the cluster has one and ``gpus_per_worker`` asks for it). The vectors
come back to the driver keyed by the hash of the embedded text. The second pass is the ordinary
local sync through ``VersionBuilder`` with an embedder that answers from those vectors: the
version that comes out has the ids, texts, segments and indexes a local ingest makes, and any
text the first pass did not see is embedded locally, never left out.

Nothing is written before the second pass, so a Ray job that fails (a worker killed beyond what
Ray retries) leaves the last good version serving, and rerunning the command finishes the job.
Ray is an optional dependency (``pip install 'grounded[scale]'``); local ingestion never imports it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from connectors.base import Connector, Cursor, Document
from connectors.files import FilesConnector
from grounded.errors import ConfigError
from grounded.experts.embedding import SentenceEmbedder
from grounded.ingest.builder import IngestStats, search_text, text_hash
from grounded.ingest.sync import ProgressFactory, sync_connector
from grounded.store import KnowledgeStore
from indexes.chunking import ChunkingConfig, chunk_document

__all__ = ["PrecomputedEmbedder", "RayJob", "embed_on_ray", "ray_sync"]

log = logging.getLogger("grounded.ingest.ray")


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError(
            "the ray engine needs Ray: pip install 'grounded[scale]' (or engine = \"local\" in [scale])"
        ) from exc
    return ray


@dataclass(frozen=True, slots=True)
class RayJob:
    """What the Ray pass did: texts embedded on the cluster, workers, seconds."""

    embedded: int
    workers: int
    seconds: float


class PrecomputedEmbedder(SentenceEmbedder):
    """The configured embedder, answering from vectors computed elsewhere (keyed by
    :func:`~grounded.ingest.builder.text_hash`); a text without one goes to ``base``."""

    def __init__(self, base: SentenceEmbedder, vectors: dict[str, np.ndarray]) -> None:
        self.model_dir, self.fingerprint = base.model_dir, base.fingerprint
        self.batch_size = base.batch_size
        self.runtime = base.runtime
        self._device = None
        self._model = None
        self._lock = threading.Lock()
        self._onnx = None
        self.batcher = None
        self.base = base
        self.vectors = vectors
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.base.dim

    def embed(self, texts: Sequence[str], *, progress: bool = False, all_cores: bool = False) -> np.ndarray:
        keys = [text_hash(t) for t in texts]
        missing = [i for i, key in enumerate(keys) if key not in self.vectors]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if missing:
            self.misses += len(missing)
            out[missing] = self.base.embed([texts[i] for i in missing], progress=progress, all_cores=all_cores)
        for i, key in enumerate(keys):
            if key in self.vectors:
                out[i] = self.vectors[key]
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.base.embed_query(text)


def _splits(connector: Connector) -> list[Connector]:
    """Parts of ``connector`` that can be read independently: the files connector by file."""
    if isinstance(connector, FilesConnector) and connector.config.path.is_dir():
        return [FilesConnector(connector.config.model_copy(update={"path": f})) for f in connector.files()]
    return [connector]


def _documents(connector: Connector, cursors: dict[str, Cursor | None]) -> Iterator[dict[str, str]]:
    for spec in connector.streams():
        for page in connector.read(spec.name, cursors.get(spec.name)):
            for record in page.records:
                if isinstance(record, Document):
                    yield {"title": record.title, "text": record.text}


def _chunk_texts(batch: dict[str, np.ndarray], chunking: ChunkingConfig, known: set[str]) -> dict[str, np.ndarray]:
    """Ray task body: documents -> the texts their chunks are embedded with, minus known ones."""
    hashes: list[str] = []
    texts: list[str] = []
    for title, text in zip(batch["title"], batch["text"], strict=True):
        for chunk in chunk_document("0" * 24, str(text), chunking):
            embedded = search_text(str(title), chunk.text)
            key = text_hash(embedded)
            if key not in known:
                hashes.append(key)
                texts.append(embedded)
    return {"text_hash": np.array(hashes, dtype=object), "search_text": np.array(texts, dtype=object)}


class _EmbedActor:
    """Ray actor: loads the embedding model once, then embeds batch after batch."""

    def __init__(self, model: str, batch_size: int, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.embedder = SentenceEmbedder(model, batch_size=batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.embed([str(t) for t in batch["search_text"]])
        return {"text_hash": batch["text_hash"], "embedding": vectors}


def _connect(address: str | None, workers: int) -> None:
    ray = _ray()
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # One CPU per embedding actor, plus one for the read and chunk tasks (they would wait
        # forever behind actors holding every CPU).
        ray.init(num_cpus=max(1, workers) + 1, include_dashboard=False, log_to_driver=False)


def embed_on_ray(
    store: KnowledgeStore,
    source: str,
    connector: Connector,
    *,
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0.0,
    full: bool = False,
) -> tuple[dict[str, np.ndarray], RayJob]:
    """The first pass: ``{text hash: vector}`` for every chunk text the next version needs and
    the current one lacks, computed on Ray (a local cluster of ``workers`` CPUs, or ``address``)."""
    ray = _ray()
    started = time.perf_counter()
    _connect(address, workers)
    known: set[str] = set()
    cursors: dict[str, Cursor | None] = {}
    if store.version is not None:
        snapshot = store.snapshot()
        rows = snapshot.store.cursor().execute("SELECT DISTINCT text_hash FROM chunks").fetchall()
        known = {str(r[0]) for r in rows}
        if not full:
            for spec in connector.streams():
                if not spec.full_scan:
                    cursors[spec.name] = snapshot.store.get_cursor(source, spec.name)
    if not gpus_per_worker:
        # CPU actors hold their CPU for the whole job: leave one for the read and chunk tasks,
        # which would otherwise wait forever behind them.
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(workers, cpus - 1))
    settings = store.settings
    chunking = ChunkingConfig(settings.chunking.max_chars, settings.chunking.overlap_sentences)
    splits = _splits(connector)
    data = ray.data
    ds = data.from_items([{"split": i} for i in range(len(splits))], override_num_blocks=max(1, len(splits)))
    ds = ds.flat_map(lambda row: list(_documents(splits[int(row["split"])], cursors)), num_cpus=0.5)
    ds = ds.map_batches(_chunk_texts, fn_kwargs={"chunking": chunking, "known": known}, batch_size=256, num_cpus=0.5)
    # Blocks of about one embedding batch, so every actor gets work even from one big file.
    batch = max(settings.embed_batch_size, 64)
    ds = ds.repartition(target_num_rows_per_block=batch)
    ds = ds.map_batches(
        _EmbedActor,
        fn_constructor_kwargs={"model": settings.embed_model, "batch_size": settings.embed_batch_size, "threads": 1},
        compute=data.ActorPoolStrategy(size=max(1, workers)),
        batch_size=batch,
        num_cpus=1,
        num_gpus=gpus_per_worker,
    )  # Ray Data restarts a dead actor and retries its batch (max_restarts=-1 is its default)
    vectors: dict[str, np.ndarray] = {}
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        for key, vector in zip(batch["text_hash"], batch["embedding"], strict=True):
            vectors[str(key)] = np.asarray(vector, dtype=np.float32)
    job = RayJob(embedded=len(vectors), workers=workers, seconds=time.perf_counter() - started)
    log.info("ray embedded %d texts on %d workers in %.1f s", job.embedded, workers, job.seconds)
    return vectors, job


def ray_sync(
    store: KnowledgeStore,
    source: str,
    connector: Connector,
    *,
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0.0,
    progress: ProgressFactory | None = None,
    total: int | None = None,
    full: bool = False,
    identity: str | None = None,
    acl: Sequence[str] = (),
) -> IngestStats:
    """:func:`~grounded.ingest.sync.sync_connector`, with the embedding done on Ray first."""
    vectors, _ = embed_on_ray(
        store, source, connector, address=address, workers=workers, gpus_per_worker=gpus_per_worker, full=full
    )
    embedder = PrecomputedEmbedder(store.embedder, vectors)
    stats = sync_connector(
        store,
        source,
        connector,
        progress=progress,
        total=total,
        full=full,
        identity=identity,
        acl=acl,
        embedder=embedder,
    )
    if embedder.misses:
        log.warning("%d chunk texts were not embedded on Ray and were embedded locally", embedder.misses)
    return stats
