"""``grounded serve``: the REST API on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from grounded.cli.app import KBOption, app, handle_errors, open_kb


@app.command()
@handle_errors
def serve(
    kb: KBOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default from config: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config: 8000).")] = None,
) -> None:
    """Serve the REST API (OpenAPI docs at /docs)."""
    import uvicorn

    from grounded.api.app import create_app

    knowledge = open_kb(kb, create=True)
    settings = knowledge.settings
    application = create_app(knowledge)
    uvicorn.run(
        application,
        host=host or settings.server.host,
        port=port or settings.server.port,
        log_level="info",
    )
