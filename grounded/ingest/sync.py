"""Read a connector into the knowledge base: every stream's pages into one new version, published.

Incremental streams resume from their stored cursor (``full=True`` ignores the cursors and
rebuilds the source's mirrored tables). Nothing is published unless every page was accepted: on
any error the last good version keeps serving and the error propagates. A page's cursor is
committed with the page's data, so a rerun after a crash resumes where the last good version
left off (at-least-once delivery, made harmless by content-hash ids).

With ``[scale] engine = "ray"`` the pages are read, chunked and embedded on a Ray cluster
(:mod:`grounded.ingest.ray_engine`) and written here through the same builder, page by page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from connectors.base import Connector, Cursor, LiveKeys, Page, RowBatch, StreamSpec
from grounded.config import source_name_problem
from grounded.errors import InvalidRequest
from grounded.ingest.builder import IngestStats, VersionBuilder
from grounded.ingest.prefetch import read_ahead
from grounded.ingest.prepare import PreparedDocument, with_acl
from grounded.store import KnowledgeStore

if TYPE_CHECKING:
    from grounded.ingest.ray_engine import RayEngine

__all__ = ["ProgressFactory", "sync_connector", "validate_source_name", "with_acl"]

ProgressFactory = Callable[[int | None, str], Any]
"""``progress(total, label)`` returns a bar with ``update(n)`` and ``close()`` (tqdm, rich, ...)."""


def sync_connector(
    store: KnowledgeStore,
    source: str,
    connector: Connector,
    *,
    progress: ProgressFactory | None = None,
    total: int | None = None,
    full: bool = False,
    identity: str | None = None,
    acl: Sequence[str] = (),
) -> IngestStats:
    """Read every stream of ``connector`` as source ``source`` into a new version and publish it.

    ``identity`` (a hash of the source's type and parameters) is kept to notice renames.
    ``acl`` (the source's groups) is stamped on every document, whatever the connector does:
    a document's own ACL can only narrow it (see :func:`grounded.access.effective_acl`).
    """
    validate_source_name(source)
    stats = IngestStats()
    engine = _engine(store)
    bar = progress(total, f"sync {source}") if progress else None
    with VersionBuilder(store.versions, store.embedder, store.settings) as builder:
        if full:
            builder.mirror(source).drop_all()
        everything: set[str] = set()  # with full: every document id read, from all streams
        for spec in connector.streams():
            seen: set[str] = everything if full else set()
            cursor = None if spec.full_scan or full else builder.cursor(source, spec.name)
            builder.begin_stream(source, spec, cursor)
            # Table streams delete by row keys (in the mirror), not by a set of doc ids;
            # a full rebuild emptied the mirror, so it diffs documents by id instead.
            doc_seen = seen if spec.kind == "documents" or full else None
            with _pages(engine, builder, source, connector, spec, cursor, acl) as pages:
                for page, prepared in pages:
                    stats.merge(builder.apply_prepared(source, spec.name, page, prepared, doc_seen))
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
        stats.sentences_embedded = builder.sentences_embedded
    if bar is not None:
        bar.close()
    stats.published = info is not None
    stats.version = info.id if info else store.version
    return stats


def _engine(store: KnowledgeStore) -> RayEngine | None:
    """The Ray engine when ``scale.engine`` is ``ray`` (imported only then)."""
    if store.settings.scale.engine != "ray":
        return None
    from grounded.ingest.ray_engine import RayEngine

    return RayEngine(store.settings)


@contextmanager
def _pages(
    engine: RayEngine | None,
    builder: VersionBuilder,
    source: str,
    connector: Connector,
    spec: StreamSpec,
    cursor: Cursor | None,
    acl: Sequence[str],
) -> Iterator[Iterator[tuple[Page, Mapping[str, PreparedDocument]]]]:
    """A stream's pages with what was prepared for them: nothing locally (the builder chunks and
    embeds), chunked and embedded documents from the Ray engine."""
    if engine is None:
        # The next page is read while this one is written (grounded.ingest.prefetch).
        with read_ahead(connector.read(spec.name, cursor)) as pages:
            yield ((with_acl(page, acl) if acl else page, {}) for page in pages)
        return
    known = builder.store.source_content_hashes(source)
    prepared = engine.prepared_pages(
        connector, spec, cursor, source=source, known=known, acl=acl, sentences=builder.sentences
    )
    yield ((item.page, item.prepared) for item in prepared)


def _progress_units(page: Page) -> int:
    """Records in a page for a progress bar: its rows (not the documents rendered from them), else
    its documents; key lists count nothing."""
    if any(isinstance(r, RowBatch) for r in page.records):
        return sum(len(r.rows) for r in page.records if isinstance(r, RowBatch))
    return sum(1 for r in page.records if not isinstance(r, LiveKeys))


def validate_source_name(name: str) -> None:
    """Refuse a source name that is not letters, digits, ``-``, ``_``, ``.``, or is reserved
    (see :func:`grounded.config.source_name_problem`)."""
    problem = source_name_problem(name)
    if problem is not None:
        raise InvalidRequest(f"{problem}; pass another with --source")
