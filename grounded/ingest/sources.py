"""Sync the configured sources into the knowledge base, each into its own published version.

Sources are independent: one that fails (bad password, unreachable host, missing table) is
reported with its name and what to fix, the others still sync, and the failing one keeps the data
of its last good sync, because a version is only published after every page of it was accepted.

Example::

    kb = grounded.open("kb")
    for result in sync_sources(kb.store, kb.settings):
        print(result.name, "ok" if result.ok else result.error)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from connectors.base import SizedConnector
from connectors.registry import build_connector
from grounded.config import Settings, SourceConfig
from grounded.errors import ConfigError, GroundedError, InvalidRequest
from grounded.ingest.builder import IngestStats, VersionBuilder
from grounded.ingest.sync import ProgressFactory, sync_connector, validate_source_name
from grounded.store import KnowledgeStore
from indexes.duckdb_store import DuckDBStore

__all__ = [
    "SourceResult",
    "refuse_configured_source",
    "remove_source",
    "source_identity",
    "sync_source",
    "sync_sources",
]


@dataclass(slots=True)
class SourceResult:
    """How syncing one source went."""

    name: str
    type: str
    stats: IngestStats | None = None
    error: str | None = None
    error_kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def source_identity(config: SourceConfig) -> str:
    """A hash of what the source reads (type and parameters), to recognise it under a new name."""
    payload = json.dumps([config.type, config.params], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _known_identities(store: KnowledgeStore) -> dict[str, str]:
    """``{source name: identity}`` recorded in the current published version."""
    version = store.versions.current()
    if version is None:
        return {}
    db = DuckDBStore.open(version.store_path, read_only=True)
    try:
        rows = (
            db.cursor()
            .execute(
                "SELECT substr(key, length('source_identity:') + 1), value FROM meta "
                "WHERE starts_with(key, 'source_identity:')"
            )
            .fetchall()
        )
    finally:
        db.close()
    return {str(name): str(identity) for name, identity in rows}


def _check_rename(name: str, config: SourceConfig, configured: Sequence[str], known: dict[str, str]) -> str | None:
    """The old name when ``name`` looks like a renamed source whose data is still in the KB."""
    if name in known:
        return None
    identity = source_identity(config)
    for old, old_identity in sorted(known.items()):
        if old_identity == identity and old not in configured:
            return old
    return None


def refuse_configured_source(store: KnowledgeStore, name: str) -> None:
    """Refuse to ingest files as ``name`` when it is a configured or synced source.

    ``grounded ingest`` writes documents without a source's configuration: no ACL, another
    connector. Into a configured source that would publish its documents to everyone and replace
    what ``grounded sync`` read, so the caller must pick another name (or sync the source).
    """
    config = store.settings.sources.get(name)
    if config is not None:
        raise InvalidRequest(
            f"source {name!r} is configured in grounded.toml ({config.type}"
            f"{', acl ' + str(config.acl) if config.acl else ''}); ingesting files into it would drop its "
            f"configuration (its ACL included) and replace what `grounded sync` read. Run `grounded sync {name}` "
            f"to refresh it, or pass another name with --source"
        )
    if name in _known_identities(store):
        raise InvalidRequest(
            f"source {name!r} was synced from a configured source (`grounded sync`); ingesting files into it "
            f"would replace its documents. Pass another name with --source"
        )


def remove_source(store: KnowledgeStore, name: str) -> IngestStats:
    """Remove all of a source's data (documents, mirrored tables, cursors) in a new version."""
    stats = IngestStats()
    with VersionBuilder(store.versions, store.embedder, store.settings) as builder:
        stats.documents_deleted = builder.remove_source(name)
        info = builder.publish()
        stats.sentences_embedded = builder.sentences_embedded
    stats.published = info is not None
    stats.version = info.id if info else store.version
    return stats


def sync_source(
    store: KnowledgeStore,
    name: str,
    config: SourceConfig,
    *,
    configured: Sequence[str] = (),
    full: bool = False,
    allow_rename: bool = False,
    progress: ProgressFactory | None = None,
) -> IngestStats:
    """Sync one source; raises a :class:`GroundedError` that names the source on failure."""
    validate_source_name(name)
    connector = build_connector(config.type, config.params, source=name)
    old = _check_rename(name, config, configured, _known_identities(store))
    if old is not None:
        if not allow_rename:
            raise ConfigError(
                f"source {name!r} reads the same {config.type} data as {old!r}, which is in the knowledge base "
                f"but no longer configured: it looks renamed. Rename it back to {old!r} to keep syncing "
                f"incrementally, or run `grounded sync {name} --allow-rename` to drop {old!r}'s data and "
                f"sync it afresh as {name!r}"
            )
        remove_source(store, old)
    connector.check()
    total = connector.size_hint() if isinstance(connector, SizedConnector) else None
    return sync_connector(
        store,
        name,
        connector,
        progress=progress,
        total=total,
        full=full,
        identity=source_identity(config),
        acl=config.acl,
    )


def sync_sources(
    store: KnowledgeStore,
    settings: Settings,
    names: Sequence[str] | None = None,
    *,
    full: bool = False,
    allow_rename: bool = False,
    progress: ProgressFactory | None = None,
) -> list[SourceResult]:
    """Sync ``names`` (default: every enabled source) one after another; failures do not stop the rest."""
    sources = settings.sources
    if not sources:
        raise ConfigError(
            "no sources are configured; add a [sources.NAME] table to grounded.toml (or the file in GROUNDED_CONFIG)"
        )
    if names:
        unknown = [n for n in names if n not in sources]
        if unknown:
            raise ConfigError(f"unknown source(s) {unknown}; configured sources: {', '.join(sorted(sources))}")
        selected = list(dict.fromkeys(names))
    else:
        selected = sorted(n for n, s in sources.items() if s.enabled)
    results: list[SourceResult] = []
    for name in selected:
        config = sources[name]
        result = SourceResult(name=name, type=config.type)
        try:
            result.stats = sync_source(
                store,
                name,
                config,
                configured=list(sources),
                full=full,
                allow_rename=allow_rename,
                progress=progress,
            )
        except GroundedError as exc:
            message = str(exc)
            prefix = f"source {name!r}"
            result.error = message if message.startswith(prefix) else f"{prefix} ({config.type}): {message}"
            result.error_kind = type(exc).__name__
        results.append(result)
    return results
