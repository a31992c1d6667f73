"""The REST API: ``create_app()`` builds a FastAPI application over one knowledge base.

``create_app`` loads on first use, so ``grounded.api.schemas`` (shared with the Python client)
imports without the server's modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app"]

if TYPE_CHECKING:
    from grounded.api.app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from grounded.api.app import create_app

        return create_app
    raise AttributeError(f"module 'grounded.api' has no attribute {name!r}")
