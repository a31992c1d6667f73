"""The knowledge base: one directory of published index versions, searched and fed from here.

Example::

    import grounded

    kb = grounded.open("kb")
    kb.ingest("docs/")                      # files, folders, BEIR corpus.jsonl
    for hit in kb.search("how do I open a file?", k=5):
        print(hit.score, hit.title, hit.text[:80])
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.base import Connector, Document, LiveKeys, Page, RowBatch
from connectors.files import FilesConfig, FilesConnector
from grounded.config import Settings, load_settings
from grounded.display import SearchResults
from grounded.errors import CorruptKnowledgeBase, InvalidRequest, NoPublishedVersion
from grounded.experts.embedding import SentenceEmbedder
from grounded.explore import ExploreMixin
from grounded.ingest import IngestStats, VersionBuilder
from grounded.retrieval import Mode, Snapshot, parse_filters, search
from indexes.base import SearchFilters
from indexes.versions import VersionStore

if TYPE_CHECKING:
    from grounded.answer import Answer
    from grounded.engine import GroundingEngine

__all__ = ["MAX_QUERY_CHARS", "KnowledgeBase", "open_kb", "restrict"]

MAX_QUERY_CHARS = 2000

log = logging.getLogger("grounded.kb")

ProgressFactory = Callable[[int | None, str], Any]


class KnowledgeBase(ExploreMixin):
    """Search and ingest over the knowledge base in ``path``.

    Reads always use the latest published version; a search that started on a version finishes
    on it even when a new one is published meanwhile. Exploration helpers (``sources``,
    ``documents``, ``tables``, ``sql``, ``explain``, ``trace``) come from
    :class:`~grounded.explore.ExploreMixin`.
    """

    def __init__(self, path: Path, settings: Settings, *, create: bool = True) -> None:
        self.path = Path(path)
        self.settings = settings
        self.versions = VersionStore.open(self.path, create=create, keep=settings.keep_versions)
        self.embedder = SentenceEmbedder.shared(settings.embed_model, batch_size=settings.embed_batch_size)
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._engine: GroundingEngine | None = None
        self._last_answer: Answer | None = None

    def __repr__(self) -> str:
        return f"KnowledgeBase({str(self.path)!r}, version={self.version!r})"

    # -- reading ------------------------------------------------------------------------------

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
                return Snapshot.open(self.versions.get(vid))
            except CorruptKnowledgeBase:
                if attempt == 4:
                    raise
                log.warning("opening version %s failed; retrying", vid, exc_info=True)
                time.sleep(0.05 * (attempt + 1))
                vid = self.versions.current_id() or vid
        raise AssertionError("unreachable")

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
        """The ``k`` best chunks for ``query`` (hybrid BM25 + dense by default).

        ``acl_groups`` restricts the result to documents without an ACL or sharing one of these
        groups (``None``: no restriction). ``snapshot`` pins the version searched.
        """
        query = validate_query(query)
        max_k = self.settings.search.max_k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
            raise InvalidRequest(f"k must be an integer from 1 to {max_k}; got {k!r}")
        parsed = filters if isinstance(filters, SearchFilters) else parse_filters(filters)
        parsed = restrict(parsed, acl_groups)
        started = time.perf_counter()
        snap = snapshot or self.snapshot()
        hits = search(
            snap,
            self.embedder,
            query,
            k=k,
            settings=self.settings.search,
            filters=parsed,
            mode=mode,
        )
        took_ms = round((time.perf_counter() - started) * 1000, 3)
        return SearchResults(hits, query=query, index_version=snap.version.id, mode=mode, took_ms=took_ms)

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        use_cache: bool = True,
        acl_groups: Sequence[str] | None = None,
    ) -> Answer:
        """A cited, verified answer from the answer expert, or an abstention (see grounded.engine).

        ``acl_groups`` limits the evidence (and the cache entry) to what those groups may read.
        """
        answer = self.engine.answer(question, k=k, filters=filters, use_cache=use_cache, acl_groups=acl_groups)
        self._last_answer = answer  # kb.trace() attaches the engine's draft to this answer only
        return answer

    @property
    def engine(self) -> GroundingEngine:
        """The grounding engine answering :meth:`ask` (created on first use)."""
        with self._lock:
            if self._engine is None:
                from grounded.engine import GroundingEngine

                self._engine = GroundingEngine(self)
            return self._engine

    def stats(self) -> dict[str, Any]:
        """Counts and index details of the current version."""
        snap = self.snapshot()
        return {
            "version": snap.version.id,
            **snap.store.counts(),
            "index": snap.version.manifest.get("index", {}),
            "embed_model": snap.version.manifest.get("embed_model"),
            "created_at": snap.version.manifest.get("created_at"),
        }

    # -- writing ------------------------------------------------------------------------------

    def ingest(
        self,
        path: str | Path,
        *,
        source: str | None = None,
        progress: ProgressFactory | None = None,
    ) -> IngestStats:
        """Ingest a file or folder as source ``source`` (default: the folder's name).

        Re-ingesting unchanged files changes nothing; changed files replace their chunks and
        files gone from the folder are removed from the knowledge base.
        """
        target = Path(path)
        connector = FilesConnector(FilesConfig(path=target))
        connector.check()
        name = source or (target.resolve().name if target.is_dir() else target.resolve().parent.name) or "files"
        return self.sync(name, connector, progress=progress, total=connector.size_hint())

    def sync(
        self,
        source: str,
        connector: Connector,
        *,
        progress: ProgressFactory | None = None,
        total: int | None = None,
        full: bool = False,
        identity: str | None = None,
        acl: Sequence[str] = (),
    ) -> IngestStats:
        """Read every stream of ``connector`` into a new version and publish it.

        Incremental streams resume from their stored cursor (``full=True`` ignores the cursors
        and rebuilds the source's mirrored tables). Nothing is published unless every page was
        accepted: on any error the last good version keeps serving and the error propagates.
        ``identity`` (a hash of the source's type and parameters) is kept to notice renames.
        ``acl`` (the source's groups) is stamped on every document, whatever the connector does:
        a document's own ACL can only narrow it (see :func:`effective_acl`).
        """
        validate_source_name(source)
        stats = IngestStats()
        bar = progress(total, f"sync {source}") if progress else None
        with VersionBuilder(self.versions, self.embedder, self.settings) as builder:
            if full:
                builder.mirror(source).drop_all()
            everything: set[str] = set()  # with full: every document id read, from all streams
            for spec in connector.streams():
                seen: set[str] = everything if full else set()
                cursor = None if spec.full_scan or full else builder.cursor(source, spec.name)
                builder.begin_stream(source, spec)
                for page in connector.read(spec.name, cursor):
                    if acl:
                        page = with_acl(page, acl)
                    # Table streams delete by row keys (in the mirror), not by a set of doc ids;
                    # a full rebuild emptied the mirror, so it diffs documents by id instead.
                    doc_seen = seen if spec.kind == "documents" or full else None
                    stats.merge(builder.apply_page(source, spec.name, page, doc_seen))
                    if bar is not None:
                        bar.update(_progress_units(page))
                stats.merge(builder.end_stream(source, spec))
                if spec.full_scan and spec.kind == "documents" and not full:
                    stats.documents_deleted += builder.delete_unseen(source, seen)
            if full:
                stats.documents_deleted += builder.delete_unseen(source, everything)
            builder.record_source(source, connector.name)
            if identity is not None:
                builder.store.set_meta(f"source_identity:{source}", identity)
            info = builder.publish()
        if bar is not None:
            bar.close()
        stats.published = info is not None
        stats.version = info.id if info else self.version
        return stats


NO_ONE = "grounded:no-one"
"""An ACL group no key can hold: a document whose own ACL shares no group with its source's."""


def effective_acl(source_acl: Sequence[str], doc_acl: Sequence[str]) -> tuple[str, ...]:
    """The groups that may read a document: its source's, narrowed by its own when it has one."""
    if not source_acl:
        return tuple(sorted(set(doc_acl)))
    if not doc_acl:
        return tuple(sorted(set(source_acl)))
    return tuple(sorted(set(source_acl) & set(doc_acl))) or (NO_ONE,)


def with_acl(page: Page, acl: Sequence[str]) -> Page:
    """``page`` with every document's ACL set to :func:`effective_acl` of the source's ``acl``."""
    records = [
        dataclasses.replace(r, acl=effective_acl(acl, r.acl)) if isinstance(r, Document) else r for r in page.records
    ]
    return dataclasses.replace(page, records=records)


def _progress_units(page: Page) -> int:
    """Records in a page for a progress bar: its rows (not the documents rendered from them), else
    its documents; key lists count nothing."""
    if any(isinstance(r, RowBatch) for r in page.records):
        return sum(len(r.rows) for r in page.records if isinstance(r, RowBatch))
    return sum(1 for r in page.records if not isinstance(r, LiveKeys))


def restrict(filters: SearchFilters, acl_groups: Sequence[str] | None) -> SearchFilters:
    """``filters`` narrowed to what ``acl_groups`` may read (an existing restriction is kept)."""
    if acl_groups is None:
        return filters
    groups = tuple(sorted(set(acl_groups)))
    if filters.acl_groups is not None:
        groups = tuple(g for g in groups if g in filters.acl_groups)
    return dataclasses.replace(filters, acl_groups=groups)


def validate_query(query: object) -> str:
    """A non-empty query of bounded length, whitespace-trimmed."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
    return query.strip()


def validate_source_name(name: str) -> None:
    if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise InvalidRequest(
            f"source name {name!r} must be letters, digits, '-', '_' or '.'; pass another with --source"
        )
    if name.lower().startswith("fts_"):
        # A source's tables live in a schema of its name; fts_* schemas belong to the full-text index.
        raise InvalidRequest(
            f"source name {name!r} is reserved (names starting with 'fts_'); pass another with --source"
        )


def open_kb(path: str | Path | None = None, *, create: bool = True, **overrides: Any) -> KnowledgeBase:
    """Open (or create) the knowledge base in ``path`` (default: settings' ``kb_path``)."""
    settings = load_settings(**overrides)
    return KnowledgeBase(Path(path) if path is not None else settings.kb_path, settings, create=create)
