"""The knowledge base as the pipeline reads it: :class:`KnowledgeStore` and one request's :class:`View`.

The answer engine, the grounding layer, the tools, the scheduler and the API depend on these two
small types, never on the user-facing :class:`~grounded.kb.KnowledgeBase` façade (which is built
on top of a store). A :class:`View` pins one published version for one request and carries the
caller's filters, already narrowed to what the caller may read, so every piece of evidence of
one answer comes from the same version and through the same ACL.

Example::

    store = KnowledgeStore(Path("kb"), load_settings())
    view = store.view(acl_groups=("staff",))          # pinned to the version published now
    hits = view.search("how do I rotate the API key?", k=5)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from grounded.access import readable_sources
from grounded.config import Settings
from grounded.errors import ConfigError, CorruptKnowledgeBase, InvalidRequest, NoPublishedVersion
from grounded.experts.embedding import SentenceEmbedder
from grounded.retrieval import Mode, SearchResults, Snapshot, parse_filters, restrict, search, validate_query
from grounded.retrieval.rerank import Reranker
from grounded.retrieval.snapshot import RemoteParts
from indexes.base import Hit, SearchFilters
from indexes.duckdb_store import StoredSentences
from indexes.faiss_index import faiss_device
from indexes.versions import VersionStore

__all__ = ["KnowledgeStore", "View"]

log = logging.getLogger("grounded.store")


class KnowledgeStore:
    """Settings, the embedder and the published versions of the knowledge base in ``path``.

    Reads always use the latest published version; a search that started on a version finishes
    on it even when a new one is published meanwhile.
    """

    def __init__(self, path: Path, settings: Settings, *, create: bool = True) -> None:
        self.path = Path(path)
        self.settings = settings
        self.versions = VersionStore.open(self.path, create=create, keep=settings.keep_versions)
        self.embedder = SentenceEmbedder.shared(
            settings.embed_model, batch_size=settings.embed_batch_size, runtime=settings.embed_runtime
        )
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._synced: tuple[str, dict[str, datetime | None]] | None = None

    def __repr__(self) -> str:
        return f"KnowledgeStore({str(self.path)!r}, version={self.version!r})"

    def with_settings(self, settings: Settings) -> KnowledgeStore:
        """This store read with other ``settings`` (same directory, versions and open snapshot):
        ``grounded optimize`` runs each configuration it tries through one of these."""
        if settings.embed_model != self.settings.embed_model or settings.kb_path != self.settings.kb_path:
            raise InvalidRequest("with_settings keeps the embedding model and the knowledge base; open another store")
        other = copy.copy(self)
        other.settings = settings
        other._lock = threading.Lock()
        other._snapshot = self.snapshot() if self.versions.current_id() is not None else None
        return other

    @property
    def reranker(self) -> Reranker | None:
        """The rerank stage's model (``search.rerank``): ``None`` when it is off; when no model
        is trained, an absent one whose :attr:`~Reranker.status` says how to train one."""
        if self.settings.search.rerank == "off":
            return None
        return Reranker.shared()

    @property
    def version(self) -> str | None:
        """The published version readers use now, or ``None`` when nothing is published."""
        return self.versions.current_id()

    def snapshot(self) -> Snapshot:
        """The current published version, opened (and reopened when a newer one appears)."""
        current = self.versions.current_id()
        if current is None:
            raise NoPublishedVersion(
                f"the knowledge base in {self.path} is empty; add documents with `grounded ingest PATH`"
            )
        with self._lock:
            if self._snapshot is None or self._snapshot.version.id != current:
                # The old snapshot stays usable by callers that hold it; it closes when released.
                self._snapshot = self._open_snapshot(current)
            return self._snapshot

    def _open_snapshot(self, vid: str) -> Snapshot:
        """Open ``vid``; if writers published and pruned it meanwhile, open the newer current one.

        DuckDB can fail to open a file that a writer in this process closed a moment ago (its
        instance cache is process-wide), so a failed open is retried briefly before it counts.
        """
        for attempt in range(5):
            try:
                return Snapshot.open(self.versions.get(vid), remote=self._remote_parts(), device=self.faiss_device)
            except CorruptKnowledgeBase:
                if attempt == 4:
                    raise
                log.warning("opening version %s failed; retrying", vid, exc_info=True)
                time.sleep(0.05 * (attempt + 1))
                vid = self.versions.current_id() or vid
        raise AssertionError("unreachable")

    @property
    def faiss_device(self) -> str:
        """Where this process searches the vectors it loads: ``cuda`` or ``cpu`` (``[index] device``)."""
        try:
            return faiss_device(self.settings.index.device)
        except RuntimeError as exc:
            raise ConfigError(str(exc)) from exc

    def _remote_parts(self) -> RemoteParts | None:
        """Where a version's vector parts are searched: here, or on Ray actors (``scale.search``)."""
        if self.settings.scale.search != "ray":
            return None
        from grounded.retrieval.ray_cluster import connect_ray
        from grounded.retrieval.ray_shards import RayShardIndex

        ray = connect_ray(self.settings, local_cpus=max(2, self.settings.index.shards))
        return lambda parts: RayShardIndex(ray, parts)

    def view(
        self,
        *,
        acl_groups: Sequence[str] | None = None,
        filters: Mapping[str, Any] | SearchFilters | None = None,
        snapshot: Snapshot | None = None,
    ) -> View:
        """One request's view: ``snapshot`` (default: the current version) pinned, ``filters``
        validated and narrowed to what ``acl_groups`` may read (``None``: unrestricted)."""
        parsed = filters if isinstance(filters, SearchFilters) else parse_filters(filters)
        return View(self, snapshot or self.snapshot(), restrict(parsed, acl_groups))

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        filters: Mapping[str, Any] | SearchFilters | None = None,
        mode: Mode = "hybrid",
        acl_groups: Sequence[str] | None = None,
        snapshot: Snapshot | None = None,
    ) -> SearchResults:
        """The ``k`` best chunks for ``query`` (see :meth:`KnowledgeBase.search`)."""
        query = validate_query(query)
        self.check_k(k)
        started = time.perf_counter()
        view = self.view(acl_groups=acl_groups, filters=filters, snapshot=snapshot)
        hits = view.search(query, k, mode=mode)
        took_ms = round((time.perf_counter() - started) * 1000, 3)
        return SearchResults(hits, query=query, index_version=view.version, mode=mode, took_ms=took_ms)

    def check_k(self, k: object) -> int:
        """``k`` when it is an integer from 1 to ``search.max_k``; else :class:`InvalidRequest`."""
        max_k = self.settings.search.max_k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
            raise InvalidRequest(f"k must be an integer from 1 to {max_k}; got {k!r}")
        return k

    def source_acls(self) -> dict[str, tuple[str, ...]]:
        """Each configured source's ACL groups (``[]``: everyone)."""
        return {name: tuple(s.acl) for name, s in self.settings.sources.items()}

    def synced_at(self, snapshot: Snapshot) -> dict[str, datetime | None]:
        """When each source of ``snapshot`` was last synced (cached per version)."""
        cached = self._synced
        if cached is None or cached[0] != snapshot.version.id:
            synced = {str(s["name"]): s.get("last_synced_at") for s in snapshot.store.sources()}
            cached = (snapshot.version.id, synced)
            self._synced = cached
        return cached[1]


@dataclass(frozen=True, slots=True)
class View:
    """One request's read of the knowledge base: a pinned version, the caller's narrowed filters.

    ``filters.acl_groups`` is the caller's restriction (``None``: unrestricted). Every search,
    lookup and table the tools see for one question goes through the same view.
    """

    store: KnowledgeStore
    snapshot: Snapshot
    filters: SearchFilters

    @property
    def version(self) -> str:
        return self.snapshot.version.id

    @property
    def settings(self) -> Settings:
        return self.store.settings

    @property
    def embedder(self) -> SentenceEmbedder:
        return self.store.embedder

    @property
    def acl_groups(self) -> tuple[str, ...] | None:
        return self.filters.acl_groups

    def search(
        self,
        query: str,
        k: int,
        *,
        mode: Mode = "hybrid",
        source: str | None = None,
        trace: dict[str, Any] | None = None,
    ) -> list[Hit]:
        """The top-``k`` chunks on the pinned version, within the view's filters (and ``source``),
        reranked when ``search.rerank`` says so; ``trace`` receives the rerank stage's record."""
        filters = dataclasses.replace(self.filters, sources=(source,)) if source else self.filters
        return search(
            self.snapshot,
            self.store.embedder,
            query,
            k=k,
            settings=self.store.settings.search,
            filters=filters,
            mode=mode,
            reranker=self.store.reranker,
            trace=trace,
        )

    def document(self, doc_id: str) -> dict[str, Any] | None:
        """One document of the pinned version (``doc_id, source, title, uri, text, updated_at``),
        or ``None`` when it does not exist or the caller may not read it."""
        allowed = self.filters.acl_groups
        row = (
            self.snapshot.store.cursor()
            .execute(
                "SELECT doc_id, source, title, uri, text, updated_at, acl FROM documents WHERE doc_id = ?", [doc_id]
            )
            .fetchone()
        )
        if row is None:
            return None
        doc_id, source, title, uri, text, updated_at, acl = row
        if allowed is not None and acl and not set(acl) & set(allowed):
            return None
        return {"doc_id": doc_id, "source": source, "title": title, "uri": uri, "text": text, "updated_at": updated_at}

    def sentences(self, chunk_ids: Sequence[int]) -> dict[int, StoredSentences]:
        """The evidence sentences ingest stored with these chunks (spans and embeddings); chunks
        of a version built before sentences were stored are missing from the result."""
        return self.snapshot.store.sentences(chunk_ids)

    def readable_sources(self) -> set[str] | None:
        """Names of the configured sources whose data this caller may read (``None``: all)."""
        return readable_sources(self.store.source_acls(), self.filters.acl_groups)

    def synced_at(self) -> dict[str, datetime | None]:
        """When each source of the pinned version was last synced."""
        return self.store.synced_at(self.snapshot)
