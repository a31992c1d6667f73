"""The knowledge base as users hold it: search, ask, ingest and explore in one object.

:class:`KnowledgeBase` is a façade: it holds a :class:`~grounded.store.KnowledgeStore` (what
the pipeline reads) and puts the pipeline's stages behind a few methods. Nothing inside the
pipeline depends on it.

Example::

    import grounded

    kb = grounded.open("kb")
    kb.ingest("docs/")                      # files, folders, BEIR corpus.jsonl
    for hit in kb.search("how do I open a file?", k=5):
        print(hit.score, hit.title, hit.text[:80])
    print(kb.ask("how do I open a file?").text)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.base import Connector
from connectors.files import FilesConfig, FilesConnector
from grounded.config import Settings, load_settings
from grounded.experts.embedding import SentenceEmbedder
from grounded.ingest.builder import IngestStats
from grounded.ingest.sources import refuse_configured_source
from grounded.ingest.sync import ProgressFactory, sync_connector, validate_source_name
from grounded.notebook.explore import ExploreMixin
from grounded.retrieval import Mode, SearchResults, Snapshot
from grounded.store import KnowledgeStore
from indexes.base import SearchFilters
from indexes.versions import VersionStore

if TYPE_CHECKING:
    # Imported where they are used: a process that only syncs or searches (``grounded sync``, a
    # scheduler) never loads the answering engine, its tools and the optimizer (issue 25, item 4).
    from grounded.answering.conversation import Turn
    from grounded.answering.engine import Draft, GroundingEngine
    from grounded.answering.types import Answer
    from grounded.optimize import OptimizeReport

__all__ = ["KnowledgeBase", "open_kb"]


class KnowledgeBase(ExploreMixin):
    """Search, ask and ingest over the knowledge base in ``path``.

    Reads always use the latest published version; a search that started on a version finishes
    on it even when a new one is published meanwhile. Exploration helpers (``sources``,
    ``documents``, ``tables``, ``sql``, ``explain``, ``trace``) come from
    :class:`~grounded.notebook.explore.ExploreMixin`.
    """

    def __init__(self, path: Path, settings: Settings, *, create: bool = True) -> None:
        self.store = KnowledgeStore(path, settings, create=create)
        self._lock = threading.Lock()
        self._engine: GroundingEngine | None = None
        self._last_answer: Answer | None = None

    def __repr__(self) -> str:
        return f"KnowledgeBase({str(self.path)!r}, version={self.version!r})"

    # -- what the store holds -----------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def settings(self) -> Settings:
        return self.store.settings

    @property
    def versions(self) -> VersionStore:
        return self.store.versions

    @property
    def embedder(self) -> SentenceEmbedder:
        return self.store.embedder

    @property
    def version(self) -> str | None:
        """The published version readers use now, or ``None`` when nothing is published."""
        return self.store.version

    def snapshot(self) -> Snapshot:
        """The current published version, opened (and reopened when a newer one appears)."""
        return self.store.snapshot()

    # -- reading ------------------------------------------------------------------------------------

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
        return self.store.search(query, k, filters=filters, mode=mode, acl_groups=acl_groups, snapshot=snapshot)

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        use_cache: bool = True,
        acl_groups: Sequence[str] | None = None,
        history: Iterable[Turn | Mapping[str, Any] | tuple[str, str]] | None = None,
    ) -> Answer:
        """A cited, verified answer from the answer expert, or an abstention (see grounded.answering).

        ``acl_groups`` limits the evidence (and the cache entry) to what those groups may read.
        ``history`` is the conversation so far, oldest first, as ``{"role", "content"}`` dicts,
        ``(role, text)`` pairs or :class:`~grounded.answering.conversation.Turn`; a follow-up is
        answered from its standalone rewrite (``answer.rewrite``)::

            first = kb.ask("what does the with statement do?")
            kb.ask("and what does it call on exit?", history=[("user", first.question), ("assistant", first.text)])
        """
        answer = self.engine.answer(
            question, k=k, filters=filters, use_cache=use_cache, acl_groups=acl_groups, history=history
        )
        self._last_answer = answer  # kb.trace() attaches the engine's draft to this answer only
        return answer

    def _draft(self) -> Draft | None:
        return self.engine.last_draft

    @property
    def engine(self) -> GroundingEngine:
        """The grounding engine answering :meth:`ask` (created on first use)."""
        from grounded.answering.engine import GroundingEngine

        with self._lock:
            if self._engine is None:
                self._engine = GroundingEngine(self.store)
            return self._engine

    def optimize(
        self,
        questions: str | Path | Sequence[Mapping[str, Any]] | None = None,
        *,
        generate: int = 0,
        objective: str = "balanced",
        space: Mapping[str, Sequence[Any]] | None = None,
        max_p95: float | None = None,
        min_answer_rate: float | None = None,
        min_abstention: float | None = None,
        budget_minutes: float | None = None,
        trials: int = 16,
        seed: int = 0,
        restart: bool = False,
    ) -> OptimizeReport:
        """Search the settings for the best configuration for ``questions`` (a JSONL path or
        ``{"question", "answer"?, "doc_ids"?, "answerable"?}`` dicts), by measuring it; see
        ``grounded optimize`` and docs/optimize.md. Nothing is written to ``grounded.toml`` unless
        you call ``report.apply()``::

            report = kb.optimize("questions.jsonl", objective="balanced", space={"answer.k": [1, 2, 3]})
            report.changes, report.held_out
        """
        from grounded.optimize import Constraints, run_optimize

        return run_optimize(
            self.store,
            questions=questions,
            generate=generate,
            objective=objective,
            space=space,
            constraints=Constraints(max_p95, min_answer_rate, min_abstention),
            budget_minutes=budget_minutes,
            trials=trials,
            seed=seed,
            restart=restart,
        )

    def stats(self) -> dict[str, Any]:
        """Counts and index details of the current version."""
        snap = self.snapshot()
        return {
            "version": snap.version.id,
            **snap.store.counts(),
            "index": snap.version.manifest.get("index", {}),
            "embed_model": snap.version.manifest.get("embed_model"),
            "created_at": snap.version.manifest.get("created_at"),
            # Where the encoder runs and where the open version's vectors are searched (chosen at run
            # time, docs/scale.md#gpus).
            "devices": {"encoder": self.embedder.device, "faiss": snap.vectors.device},
            "shards": max((len(s) for s in snap.version.segment_shards.values()), default=1),
            # "ray": the vector parts are searched by Ray actors, not held by this process.
            "shard_search": self.settings.scale.search,
        }

    # -- writing ------------------------------------------------------------------------------------

    def ingest(
        self,
        path: str | Path,
        *,
        source: str | None = None,
        progress: ProgressFactory | None = None,
        follow_symlinks: bool = False,
    ) -> IngestStats:
        """Ingest a file or folder as source ``source`` (default: the folder's name).

        Re-ingesting unchanged files changes nothing; changed files replace their chunks and
        files gone from the folder are removed from the knowledge base. A name that is a
        configured (or synced) source is refused with :class:`~grounded.errors.InvalidRequest`:
        the source's ACL and connector would be lost; ``grounded sync`` refreshes it. Symbolic links
        that lead out of the folder are not followed unless ``follow_symlinks``.
        """
        target = Path(path)
        connector = FilesConnector(FilesConfig(path=target, follow_symlinks=follow_symlinks))
        connector.check()
        name = source or (target.resolve().name if target.is_dir() else target.resolve().parent.name) or "files"
        validate_source_name(name)
        refuse_configured_source(self.store, name)
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
        """Read every stream of ``connector`` into a new version and publish it
        (see :func:`grounded.ingest.sync.sync_connector`)."""
        return sync_connector(
            self.store, source, connector, progress=progress, total=total, full=full, identity=identity, acl=acl
        )


def open_kb(path: str | Path | None = None, *, create: bool = True, **overrides: Any) -> KnowledgeBase:
    """Open (or create) the knowledge base in ``path`` (default: settings' ``kb_path``)."""
    settings = load_settings(**overrides)
    return KnowledgeBase(Path(path) if path is not None else settings.kb_path, settings, create=create)
