"""grounded: a retrieval-grounded knowledge server.

    import grounded
    kb = grounded.open("kb")
    kb.search("...")

    remote = grounded.open("http://127.0.0.1:8000", api_key="gk_...")   # the same search/ask, served
    client = grounded.Client("http://127.0.0.1:8000", api_key="gk_...") # the REST API, typed

Heavy modules load on first use, so ``import grounded`` (and the CLI's ``--help``) stay fast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, overload

# Nothing in grounded may reach for a model hub: models ship inside packages or local folders.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from grounded.version import __version__

__all__ = ["AsyncClient", "Client", "KnowledgeBase", "RemoteKnowledgeBase", "Settings", "__version__", "open"]

if TYPE_CHECKING:
    from grounded.client import AsyncClient, Client, RemoteKnowledgeBase
    from grounded.config import Settings
    from grounded.kb import KnowledgeBase


@overload
def open(path: os.PathLike[str] | None = None, *, create: bool = True, **settings: Any) -> KnowledgeBase: ...
@overload
def open(path: str, *, create: bool = True, **settings: Any) -> KnowledgeBase | RemoteKnowledgeBase: ...


def open(
    path: str | os.PathLike[str] | None = None, *, create: bool = True, **settings: Any
) -> KnowledgeBase | RemoteKnowledgeBase:
    """Open the knowledge base in ``path`` (created when new); ``settings`` override config.

    An ``http://`` or ``https://`` URL opens the knowledge base a ``grounded serve`` serves
    there instead: a :class:`~grounded.client.RemoteKnowledgeBase` whose ``search`` and ``ask``
    return what a local one returns. It takes ``api_key=`` (default ``$GROUNDED_API_KEY``) and
    ``timeout=``; typed code that only opens directories can pass a ``pathlib.Path``.
    """
    if isinstance(path, str) and path.startswith(("http://", "https://")):
        from grounded.client import RemoteKnowledgeBase

        unknown = sorted(set(settings) - {"api_key", "timeout"})
        if unknown:
            from grounded.errors import InvalidRequest

            raise InvalidRequest(
                f"a served knowledge base takes only api_key= and timeout=; got {', '.join(unknown)} "
                "(settings belong to the server's grounded.toml)"
            )
        return RemoteKnowledgeBase(path, **settings)
    from grounded.kb import open_kb

    return open_kb(None if path is None else os.fspath(path), create=create, **settings)


def __getattr__(name: str) -> Any:
    if name == "KnowledgeBase":
        from grounded.kb import KnowledgeBase

        return KnowledgeBase
    if name in ("Client", "AsyncClient", "RemoteKnowledgeBase"):
        import grounded.client

        return getattr(grounded.client, name)
    if name == "Settings":
        from grounded.config import Settings

        return Settings
    raise AttributeError(f"module 'grounded' has no attribute {name!r}")
