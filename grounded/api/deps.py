"""Dependencies shared by the routes (override them in tests with ``app.dependency_overrides``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from grounded.kb import KnowledgeBase

__all__ = ["KBDep", "get_kb"]


def get_kb(request: Request) -> KnowledgeBase:
    """The knowledge base this app serves."""
    kb: KnowledgeBase = request.app.state.kb
    return kb


KBDep = Annotated[KnowledgeBase, Depends(get_kb)]
