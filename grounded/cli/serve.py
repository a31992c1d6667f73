"""``grounded serve``: the REST API on uvicorn, with the source scheduler alongside."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Annotated

import typer

from grounded.cli.app import KBOption, app, handle_errors, knowledge_base


@app.command()
@handle_errors
def serve(
    kb: KBOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default from config: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config: 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default from config: 1).", min=1)] = None,
    scheduler: Annotated[
        bool | None, typer.Option(help="Refresh sources on their schedules in this process (default: on).")
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Serve a non-loopback address although no API key exists: every peer is an admin.",
        ),
    ] = False,
) -> None:
    """Serve the REST API (OpenAPI docs at /docs, web page at /) and run the source schedules.

    Workers are separate processes over the same knowledge base; the scheduler runs once, in
    this process. SIGTERM or Ctrl-C stops accepting connections and lets requests in flight
    finish (up to server.graceful_timeout_s).

    Without any API key every caller is an admin, so binding an address other than loopback
    needs a key (`grounded keys create`) or --insecure-no-auth.
    """
    knowledge = knowledge_base(kb, create=True)
    settings = knowledge.settings
    check_exposure(knowledge, host or settings.server.host, insecure_no_auth=insecure_no_auth)
    count = workers or settings.server.workers
    made: str | None = None
    if count > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before prometheus_client is imported anywhere: every worker then writes its metrics
        # to this folder and /metrics merges them.
        made = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="grounded-metrics-")
    try:
        run_server(knowledge, host=host, port=port, workers=count, scheduler=scheduler)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def check_exposure(knowledge: object, host: str, *, insecure_no_auth: bool) -> None:
    """Refuse (ConfigError, exit 2) to serve ``host`` beyond loopback while no API key exists."""
    from grounded.api.connections import is_loopback
    from grounded.errors import ConfigError
    from grounded.kb import KnowledgeBase
    from grounded.ops.keys import KEYS_FILE, KeyStore

    assert isinstance(knowledge, KnowledgeBase)
    if insecure_no_auth or is_loopback(host) or KeyStore(knowledge.path / KEYS_FILE).has_keys():
        return
    raise ConfigError(
        f"refusing to serve {host} without API keys: every peer that reaches it would be an admin and read "
        f"every source. Create a key first (`grounded keys create --name NAME --groups a,b [--admin]`), bind "
        f"127.0.0.1, or pass --insecure-no-auth if the network itself is trusted"
    )


def run_server(knowledge: object, *, host: str | None, port: int | None, workers: int, scheduler: bool | None) -> None:
    """Run uvicorn over ``knowledge`` with ``workers`` processes and the scheduler thread."""
    import uvicorn

    from grounded.api.connections import uvicorn_options
    from grounded.kb import KnowledgeBase
    from grounded.ops.logs import configure_logging
    from grounded.ops.scheduler import Refresher, Scheduler

    assert isinstance(knowledge, KnowledgeBase)
    settings = knowledge.settings
    configure_logging(settings.server.log_format)
    os.environ["GROUNDED_LOG_CONFIGURED"] = "1"
    os.environ["GROUNDED_KB_PATH"] = str(knowledge.path.resolve())
    if workers > 1:
        os.environ["GROUNDED_WORKER_THREADS"] = "1"
    run_scheduler = settings.server.scheduler if scheduler is None else scheduler
    background = Scheduler(Refresher(knowledge)) if run_scheduler else None
    if background is not None and background.schedules:
        background.start()
    try:
        uvicorn.run(
            "grounded.api.app:app_from_env",
            factory=True,
            host=host or settings.server.host,
            port=port or settings.server.port,
            workers=workers,
            **uvicorn_options(settings.server),
        )
    finally:
        if background is not None:
            background.stop()
