"""Which engine runs a sync: local (the default, one process) or Ray (``[scale] engine = "ray"``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from connectors.base import Connector
from grounded.ingest.builder import IngestStats
from grounded.ingest.sync import ProgressFactory, sync_connector
from grounded.store import KnowledgeStore

__all__ = ["Engine", "run_sync"]

Engine = Literal["local", "ray"]


def run_sync(
    store: KnowledgeStore,
    source: str,
    connector: Connector,
    *,
    engine: Engine | None = None,
    address: str | None = None,
    workers: int | None = None,
    progress: ProgressFactory | None = None,
    total: int | None = None,
    full: bool = False,
    identity: str | None = None,
    acl: Sequence[str] = (),
) -> IngestStats:
    """:func:`~grounded.ingest.sync.sync_connector` on ``engine`` (default: ``[scale] engine``).

    ``address`` and ``workers`` override ``[scale] address`` and ``[scale] workers``. Ray is
    imported only when the Ray engine runs.
    """
    scale = store.settings.scale
    if (engine or scale.engine) == "ray":
        from grounded.ingest.ray_engine import ray_sync

        return ray_sync(
            store,
            source,
            connector,
            address=address or scale.address,
            workers=workers or scale.workers,
            gpus_per_worker=scale.gpus_per_worker,
            progress=progress,
            total=total,
            full=full,
            identity=identity,
            acl=acl,
        )
    return sync_connector(
        store, source, connector, progress=progress, total=total, full=full, identity=identity, acl=acl
    )
