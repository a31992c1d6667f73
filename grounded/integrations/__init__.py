"""Framework integrations: LangChain (:mod:`.langchain`) and LlamaIndex (:mod:`.llamaindex`).

Each is an optional extra (``pip install 'grounded[langchain]'``, ``'grounded[llamaindex]'``);
importing a module whose framework is missing raises an ImportError that names the extra.
Both give a retrieved chunk the same metadata (:func:`citation_metadata`), so a citation looks
the same whichever framework carried it: the document id and title, its URI, the source, and
the character offsets of the passage in the document's text.
"""

from __future__ import annotations

from typing import Any

from grounded.answering.types import Citation
from indexes.base import Hit

__all__ = ["citation_metadata", "missing_extra"]


def citation_metadata(item: Hit | Citation, index_version: str | None) -> dict[str, Any]:
    """Where a passage comes from: JSON-ready, flat (LangChain and LlamaIndex filter on flat keys)."""
    meta: dict[str, Any] = {
        "chunk_id": str(item.chunk_id),
        "doc_id": item.doc_id,
        "title": item.title,
        "uri": item.uri,
        "source": item.source,
        "start": item.start,
        "end": item.end,
        "score": item.score,
        "index_version": index_version,
    }
    if isinstance(item, Hit):
        meta["updated_at"] = item.updated_at.isoformat() if item.updated_at else None
    else:
        meta["citation"] = item.id
        meta["synced_at"] = item.synced_at.isoformat() if item.synced_at else None
    return meta


def missing_extra(extra: str, exc: ImportError) -> ImportError:
    """The ImportError to raise when an integration's framework is not installed."""
    return ImportError(
        f"grounded.integrations.{extra} needs the {extra} extra ({exc.name or exc} is missing): "
        f"pip install 'grounded[{extra}]'"
    )
