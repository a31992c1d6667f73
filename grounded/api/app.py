"""``create_app()``: the FastAPI application factory.

Example::

    import grounded
    from grounded.api import create_app

    app = create_app(grounded.open("kb"))   # serve with: uvicorn.run(app)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

import grounded
from grounded.api.problems import install_problem_handlers
from grounded.api.routes import health, query, search
from grounded.kb import KnowledgeBase

__all__ = ["ROUTERS", "create_app"]

ROUTERS: list[APIRouter] = [health.router, search.router, query.router]


def create_app(kb: KnowledgeBase) -> FastAPI:
    """An app serving ``kb``; the embedding model is loaded at start-up, not on the first query."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if kb.version is not None:
            kb.snapshot()
            kb.embedder.embed_query("warm up")
        yield

    app = FastAPI(
        title="grounded",
        version=grounded.__version__,
        description="Retrieval-grounded answers from your own data, every sentence cited.",
        lifespan=lifespan,
    )
    app.state.kb = kb
    install_problem_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
