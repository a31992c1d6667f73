"""``grounded refresh [SOURCE]`` and ``grounded scheduler``: refresh sources now, or on schedule."""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer

from grounded.cli.app import (
    AddressOption,
    EngineOption,
    KBOption,
    WorkersOption,
    app,
    console,
    err_console,
    handle_errors,
    knowledge_base,
    scale_overrides,
)


@app.command()
@handle_errors
def refresh(
    source: Annotated[str | None, typer.Argument(help="The source to refresh (default: every enabled one).")] = None,
    kb: KBOption = None,
    full: Annotated[bool, typer.Option(help="Ignore cursors and rebuild the source's mirrored tables.")] = False,
    engine: EngineOption = None,
    address: AddressOption = None,
    workers: WorkersOption = None,
) -> None:
    """Refresh now, with the scheduler's lock, retries and job history (see GET /v1/jobs)."""
    from grounded.errors import ConfigError
    from grounded.ops.scheduler import Refresher

    knowledge = knowledge_base(kb, create=True, **scale_overrides(engine, address, workers))
    sources = knowledge.settings.sources
    if not sources:
        raise ConfigError("no sources are configured; add a [sources.NAME] table to grounded.toml")
    names = [source] if source else sorted(n for n, s in sources.items() if s.enabled)
    refresher = Refresher(knowledge)
    failed = 0
    for name in names:
        job = refresher.refresh(name, trigger="manual", full=full)
        if job.status == "succeeded":
            console.print(
                f"{name}: job {job.id} succeeded in {job.duration_s:.1f} s, version {job.version}", highlight=False
            )
        else:
            failed += 1
            err_console.print(
                f"[bold red]error:[/] {name}: job {job.id} {job.status} after {job.attempts} attempt(s): {job.error}",
                highlight=False,
                soft_wrap=True,
            )
    if failed:
        raise typer.Exit(1)


@app.command()
@handle_errors
def scheduler(kb: KBOption = None) -> None:
    """Run the source schedules in the foreground (without the API) until Ctrl-C or SIGTERM."""
    from grounded.ops.logs import configure_logging
    from grounded.ops.scheduler import Refresher, Scheduler

    knowledge = knowledge_base(kb, create=True)
    configure_logging(knowledge.settings.server.log_format)
    runner = Scheduler(Refresher(knowledge))
    if not runner.schedules:
        err_console.print('[yellow]no source has a schedule[/]; set `schedule = "15m"` on a [sources.NAME] table')
        raise typer.Exit(2)

    def stop(*_: Any) -> None:
        runner.stop(timeout=0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.run_forever()
