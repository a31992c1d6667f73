"""Ingestion on Ray Data: read in parallel tasks, chunk in tasks, embed in an actor pool.

``[scale] engine = "ray"`` (or ``grounded ingest --engine ray``) hands the heavy part of a sync
to a Ray cluster, and nothing else: :func:`grounded.ingest.sync.sync_connector` still decides what
changed, writes every page through :meth:`VersionBuilder.apply_prepared
<grounded.ingest.builder.VersionBuilder.apply_prepared>` and publishes, so the version is the one a
local ingest makes (same ids and texts; the ONNX encoder's vectors are the same bytes in any
batch, the torch runtime's within 1e-5).

The pipeline of one stream::

    splits (SplittableConnector, full read:      pages read here (any other connector, or a read
    runs of files, line or key ranges)          that resumes after a cursor), in windows
            │ read_split in a task                     │
            └──────────────► prepare (task): chunk every document whose content hash is new,
                             split its chunks' evidence sentences
                                   │
                             embed (actor pool, ``workers`` actors, one model load each,
                             one GPU each when CUDA is there): chunk and sentence texts
                                   │  pages, in read order (preserve_order)
                             builder.apply_prepared on the driver, cursor committed per page

A failure anywhere (a worker killed, a task that raises) propagates out of the sync before
anything is published: the last good version keeps serving and a rerun starts over. Ray itself
restarts a dead embedding actor and retries its work first (Ray Data's defaults).

Ray is optional (``pip install 'grounded[ray]'``); a local ingest never imports it.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from connectors.base import Connector, Cursor, Document, Page, Split, SplittableConnector, StreamSpec
from grounded.config import Settings
from grounded.errors import ConfigError
from grounded.experts.embedding import EmbedRuntime, SentenceEmbedder, embedding_device
from grounded.ingest.prepare import PreparedDocument, content_hash, doc_id_for, prepare_document, with_acl
from grounded.retrieval.ray_cluster import connect_ray, require_ray
from indexes.chunking import ChunkingConfig

__all__ = ["PreparedPage", "RayEngine", "require_ray"]

log = logging.getLogger("grounded.ingest.ray")

SPLITS_PER_WORKER = 4
"""Splits per embedding worker: enough that a slow split does not leave the others idle."""


@dataclass(slots=True)
class PreparedPage:
    """A page and its documents prepared (chunked and embedded) by the cluster, keyed by doc id."""

    page: Page
    prepared: dict[str, PreparedDocument]
    worker: int = 0
    """Process id of the embedding actor that embedded it (``grounded`` reports how many took part)."""
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class _Job:
    """What a prepare task needs: picklable, shipped once per task."""

    source: str
    chunking: ChunkingConfig
    acl: tuple[str, ...]
    known: dict[str, str]
    sentences: bool
    connector: Connector | None


def _prepare(row: dict[str, Any], job: _Job) -> list[dict[str, Any]]:
    """A Ray task: read one split (or take one page) and prepare its changed documents."""
    item = pickle.loads(row["item"])
    if isinstance(item, Split):
        if not isinstance(job.connector, SplittableConnector):
            raise ConfigError(f"split {item.index} was made for a connector that cannot read splits")
        pages: Sequence[Page] = list(job.connector.read_split(item))
    else:
        pages = [item]
    out = []
    for page in pages:
        page = with_acl(page, job.acl) if job.acl else page
        prepared: dict[str, PreparedDocument] = {}
        for doc in (r for r in page.records if isinstance(r, Document)):
            doc_id = doc_id_for(job.source, doc.key)
            digest = content_hash(doc)
            if job.known.get(doc_id) != digest:
                prepared[doc_id] = prepare_document(
                    job.source, doc, job.chunking, digest=digest, sentences=job.sentences
                )
        out.append({"page": pickle.dumps(PreparedPage(page, prepared), protocol=pickle.HIGHEST_PROTOCOL)})
    return out


class EmbedWorker:
    """A Ray actor of the embedding pool: loads the model once, embeds the texts of whole pages."""

    def __init__(self, model: str, batch_size: int, runtime: EmbedRuntime, device: str) -> None:
        self.embedder = SentenceEmbedder(model, batch_size=batch_size, runtime=runtime, device=device)
        self.pid = os.getpid()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        pages = [pickle.loads(blob) for blob in batch["page"]]
        texts: dict[str, str] = {}
        for page in pages:
            for doc in page.prepared.values():
                texts.update((c.text_hash, c.search_text) for c in doc.chunks)
                texts.update((s.digest, s.text) for s in doc.sentences)
        order = sorted(texts)
        # One thread per actor: Ray gives each actor one CPU, and the workers are the parallelism.
        matrix = self.embedder.embed([texts[h] for h in order]) if order else np.zeros((0, 0), np.float32)
        vectors = dict(zip(order, matrix, strict=True))
        for page in pages:
            page.worker, page.fingerprint = self.pid, self.embedder.fingerprint
            for doc in page.prepared.values():
                doc.vectors = np.stack([vectors[c.text_hash] for c in doc.chunks]) if doc.chunks else None
                doc.sentence_vectors = {s.digest: vectors[s.digest] for s in doc.sentences}
        return {"page": [pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL) for p in pages]}


class RayEngine:
    """Runs the prepare and embed stages of a sync on a Ray cluster (see the module docstring).

    Example::

        engine = RayEngine(settings)                 # settings.scale: address, workers
        for item in engine.prepared_pages(connector, spec, None, source="docs", known={}):
            builder.apply_prepared("docs", spec.name, item.page, item.prepared)
    """

    def __init__(self, settings: Settings, *, window: int | None = None) -> None:
        self.ray: Any = require_ray()
        self.settings = settings
        self.workers = settings.scale.workers
        self.window = window or SPLITS_PER_WORKER * self.workers
        """Pages read by this process (a connector that cannot split) sent to the cluster at once."""
        self.chunking = ChunkingConfig(settings.chunking.max_chars, settings.chunking.overlap_sentences)
        self.workers_seen: set[int] = set()
        """Process ids of the embedding actors that embedded pages (one per model load)."""
        self._connect()

    def _connect(self) -> None:
        # A local cluster for this ingest: a CPU per embedding actor, one for the read tasks.
        connect_ray(self.settings, local_cpus=self.workers + 1)

    def prepared_pages(
        self,
        connector: Connector,
        spec: StreamSpec,
        cursor: Cursor | None,
        *,
        source: str,
        known: dict[str, str],
        acl: Sequence[str] = (),
        sentences: bool = True,
    ) -> Iterator[PreparedPage]:
        """The pages of ``spec`` in read order, their new documents chunked and embedded.

        ``known`` maps the source's document ids to their content hashes in the version being
        built on, so unchanged documents are neither chunked nor embedded again.
        """
        splittable = isinstance(connector, SplittableConnector) and cursor is None
        job = _Job(source, self.chunking, tuple(acl), known, sentences, connector if splittable else None)
        if splittable:
            assert isinstance(connector, SplittableConnector)
            splits = connector.splits(spec.name, SPLITS_PER_WORKER * self.workers)
            yield from self._run(list(splits), job)
            return
        window: list[object] = []
        for page in connector.read(spec.name, cursor):
            window.append(page)
            if len(window) >= self.window:
                yield from self._run(window, job)
                window = []
        if window:
            yield from self._run(window, job)

    def _run(self, items: Sequence[object], job: _Job) -> Iterator[PreparedPage]:
        if not items:
            return
        ray = self.ray
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        # GPU actors when the cluster has GPUs (asked of Ray, not of this process: the driver may
        # run where there is none).
        device = embedding_device(self.ray.cluster_resources().get("GPU", 0) >= 1)
        dataset = (
            ray.data.from_items(
                [{"item": pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)} for item in items],
                override_num_blocks=len(items),
            )
            .flat_map(_prepare, fn_kwargs={"job": job})
            .map_batches(
                EmbedWorker,
                fn_constructor_args=(
                    self.settings.embed_model,
                    self.settings.embed_batch_size,
                    self.settings.embed_runtime,
                    device,
                ),
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=self.workers),
                num_cpus=1,
                num_gpus=1 if device == "cuda" else 0,
            )
        )
        for row in dataset.iter_rows():
            page: PreparedPage = pickle.loads(row["page"])
            self.workers_seen.add(page.worker)
            yield page
