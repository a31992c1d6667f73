"""``grounded sync [SOURCE...]``: bring configured sources up to date, incrementally."""

from __future__ import annotations

from typing import Annotated

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
    progress_factory,
    scale_overrides,
)


@app.command()
@handle_errors
def sync(
    sources: Annotated[
        list[str] | None, typer.Argument(help="Sources to sync (default: every enabled source in the config).")
    ] = None,
    kb: KBOption = None,
    full: Annotated[bool, typer.Option(help="Ignore cursors and rebuild the sources' mirrored tables.")] = False,
    allow_rename: Annotated[
        bool, typer.Option(help="A renamed source: drop the old name's data and sync under the new name.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    engine: EngineOption = None,
    address: AddressOption = None,
    workers: WorkersOption = None,
) -> None:
    """Sync sources from grounded.toml: changed rows and documents only, deletions propagated."""
    from grounded.ingest.sources import sync_sources

    knowledge = knowledge_base(kb, create=True, **scale_overrides(engine, address, workers))
    results = sync_sources(
        knowledge.store,
        knowledge.settings,
        sources or None,
        full=full,
        allow_rename=allow_rename,
        progress=progress_factory(progress),
    )
    for result in results:
        if result.stats is None:
            err_console.print(f"[bold red]error:[/] {result.error}", highlight=False, soft_wrap=True)
            continue
        s = result.stats
        for problem in s.skipped:
            err_console.print(f"[yellow]skipped:[/] {result.name}: {problem}", highlight=False, soft_wrap=True)
        verb = f"published version {s.version}" if s.published else "nothing changed"
        console.print(
            f"{result.name}: {s.rows_upserted} rows upserted, {s.rows_deleted} deleted; "
            f"{s.documents_added} documents added, {s.documents_updated} updated, {s.documents_deleted} deleted, "
            f"{s.documents_unchanged} unchanged; {s.chunks_embedded} chunks embedded; {verb}",
            highlight=False,
        )
    failed = [r.name for r in results if not r.ok]
    if failed:
        raise typer.Exit(1)
