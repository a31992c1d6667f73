"""``create_app()``: the FastAPI application factory.

Example::

    import grounded
    from grounded.api import create_app

    app = create_app(grounded.open("kb"))   # serve with: uvicorn.run(app)

``grounded serve --workers N`` gives uvicorn the import string ``grounded.api.app:app_from_env``
(a factory), so every worker process builds its own app over the same knowledge base.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from grounded.api.mcp.http import mount as mount_mcp
from grounded.api.middleware import ServingMiddleware
from grounded.api.problems import install_problem_handlers
from grounded.api.ratelimit import RateLimiter
from grounded.api.routes import conversations, health, openai_compat, query, search, sources, web
from grounded.kb import KnowledgeBase
from grounded.ops.conversations import CONVERSATIONS_FILE, ConversationStore
from grounded.ops.keys import KEYS_FILE, KeyStore
from grounded.ops.scheduler import Refresher
from grounded.version import __version__

__all__ = ["ROUTERS", "app_from_env", "create_app"]

ROUTERS: list[APIRouter] = [
    health.router,
    search.router,
    query.router,
    conversations.router,
    sources.router,
    openai_compat.router,
    web.router,
]

log = logging.getLogger("grounded.api")


def create_app(kb: KnowledgeBase) -> FastAPI:
    """An app serving ``kb``; the embedding model is loaded at start-up, not on the first query."""
    keys = KeyStore(kb.path / KEYS_FILE)
    server = kb.settings.server

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not keys.has_keys():
            log.warning(
                "LOCAL DEVELOPMENT MODE: no API key exists in %s, so every caller is an admin and sees every "
                "source. Create a key with `grounded keys create --name NAME --groups a,b [--admin]` before "
                "exposing this server.",
                keys.path,
            )
        if kb.version is not None:
            kb.snapshot()
            kb.embedder.embed_query("warm up")
        async with app.state.mcp.session_manager.run():  # the /mcp transport's task group
            yield
        # Graceful shutdown: uvicorn stops accepting, lets in-flight requests finish, then we get here.
        app.state.shutting_down = True

    app = FastAPI(
        title="grounded",
        version=__version__,
        description="Retrieval-grounded answers from your own data, every sentence cited.",
        lifespan=lifespan,
    )
    app.state.kb = kb
    app.state.keys = keys
    limits = kb.settings.conversation
    app.state.conversations = ConversationStore(
        kb.path / CONVERSATIONS_FILE, max_turns=limits.max_turns, max_chars=limits.max_chars
    )
    app.state.refresher = Refresher(kb)
    app.state.rate_limiter = RateLimiter(server.rate_limit, server.rate_burst) if server.rate_limit > 0 else None
    app.state.auth_failures = (
        RateLimiter(server.auth_failure_rate, server.auth_failure_burst) if server.auth_failure_rate > 0 else None
    )
    app.state.shutting_down = False
    install_problem_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    mount_mcp(app, kb)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    app.add_middleware(ServingMiddleware, max_body_bytes=server.max_body_bytes, body_timeout_s=server.body_timeout_s)
    return app


def app_from_env() -> FastAPI:
    """The app for ``GROUNDED_KB_PATH`` (and the rest of the settings): uvicorn's worker factory."""
    from grounded.config import load_settings
    from grounded.ops.logs import configure_logging

    settings = load_settings()
    if settings.server.workers > 1 or os.environ.get("GROUNDED_WORKER_THREADS") == "1":
        # Concurrency comes from processes and requests: one BLAS/OpenMP thread per search keeps
        # workers from fighting over cores (measured: dense search 31 ms -> 12 ms under load).
        import faiss

        faiss.omp_set_num_threads(1)
    if os.environ.get("GROUNDED_LOG_CONFIGURED") == "1":
        configure_logging(settings.server.log_format)
    return create_app(KnowledgeBase(settings.kb_path, settings, create=True))
