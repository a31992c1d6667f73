"""grounded: a retrieval-grounded knowledge server.

    import grounded
    kb = grounded.open("kb")
    kb.search("...")

Heavy modules load on first use, so ``import grounded`` (and the CLI's ``--help``) stay fast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Nothing in grounded may reach for a model hub: models ship inside packages or local folders.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from grounded.version import __version__

__all__ = ["KnowledgeBase", "Settings", "__version__", "open"]

if TYPE_CHECKING:
    from grounded.config import Settings
    from grounded.kb import KnowledgeBase


def open(path: str | os.PathLike[str] | None = None, *, create: bool = True, **settings: Any) -> KnowledgeBase:
    """Open the knowledge base in ``path`` (created when new); ``settings`` override config."""
    from grounded.kb import open_kb

    return open_kb(None if path is None else os.fspath(path), create=create, **settings)


def __getattr__(name: str) -> Any:
    if name == "KnowledgeBase":
        from grounded.kb import KnowledgeBase

        return KnowledgeBase
    if name == "Settings":
        from grounded.config import Settings

        return Settings
    raise AttributeError(f"module 'grounded' has no attribute {name!r}")
