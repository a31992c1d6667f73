"""Read a connector into the knowledge base: every stream's pages into one new version, published.

Incremental streams resume from their stored cursor (``full=True`` ignores the cursors and
rebuilds the source's mirrored tables). Nothing is published unless every page was accepted: on
any error the last good version keeps serving and the error propagates. A page's cursor is
committed with the page's data, so a rerun after a crash resumes where the last good version
left off (at-least-once delivery, made harmless by content-hash ids).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from connectors.base import Connector, Document, LiveKeys, Page, RowBatch
from grounded.access import effective_acl
from grounded.config import source_name_problem
from grounded.errors import InvalidRequest
from grounded.ingest.builder import IngestStats, VersionBuilder
from grounded.ingest.prefetch import read_ahead
from grounded.store import KnowledgeStore

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
    bar = progress(total, f"sync {source}") if progress else None
    with VersionBuilder(store.versions, store.embedder, store.settings) as builder:
        if full:
            builder.mirror(source).drop_all()
        everything: set[str] = set()  # with full: every document id read, from all streams
        for spec in connector.streams():
            seen: set[str] = everything if full else set()
            cursor = None if spec.full_scan or full else builder.cursor(source, spec.name)
            builder.begin_stream(source, spec, cursor)
            # The next page is read while this one is written (grounded.ingest.prefetch).
            with read_ahead(connector.read(spec.name, cursor)) as pages:
                for page in pages:
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
        stats.sentences_embedded = builder.sentences_embedded
    if bar is not None:
        bar.close()
    stats.published = info is not None
    stats.version = info.id if info else store.version
    return stats


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


def validate_source_name(name: str) -> None:
    """Refuse a source name that is not letters, digits, ``-``, ``_``, ``.``, or is reserved
    (see :func:`grounded.config.source_name_problem`)."""
    problem = source_name_problem(name)
    if problem is not None:
        raise InvalidRequest(f"{problem}; pass another with --source")
