"""``grounded ingest PATH``: add a file or folder of documents to the knowledge base."""

from __future__ import annotations

from pathlib import Path
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
def ingest(
    path: Annotated[Path, typer.Argument(help="A file or folder: txt, md, rst, html, pdf, jsonl (BEIR corpus).")],
    kb: KBOption = None,
    source: Annotated[
        str | None, typer.Option(help="Source name for these documents (default: the folder's name).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    follow_symlinks: Annotated[
        bool, typer.Option(help="Also read files through symbolic links that lead out of the folder.")
    ] = False,
    engine: EngineOption = None,
    address: AddressOption = None,
    workers: WorkersOption = None,
) -> None:
    """Ingest documents; unchanged ones are skipped, changed ones replaced, removed ones deleted.

    A name that is a configured source (grounded.toml) is refused: `grounded sync NAME` refreshes
    it with its ACL. Symbolic links out of the folder are skipped unless --follow-symlinks.
    """
    from connectors.files import FilesConfig, FilesConnector

    knowledge = knowledge_base(kb, create=True, **scale_overrides(engine, address, workers))
    stats = knowledge.ingest(path, source=source, progress=progress_factory(progress), follow_symlinks=follow_symlinks)
    for link in FilesConnector(FilesConfig(path=path, follow_symlinks=follow_symlinks)).outside_links():
        err_console.print(
            f"[yellow]skipped:[/] {link}: a symbolic link out of the folder (--follow-symlinks reads it)",
            highlight=False,
            soft_wrap=True,
        )
    for problem in stats.skipped:
        err_console.print(f"[yellow]skipped:[/] {problem}", highlight=False, soft_wrap=True)
    verb = f"published version {stats.version}" if stats.published else f"nothing changed (version {stats.version})"
    console.print(
        f"{stats.documents_seen} documents: {stats.documents_added} added, {stats.documents_updated} updated, "
        f"{stats.documents_unchanged} unchanged, {stats.documents_deleted} deleted; "
        f"{stats.chunks_embedded} chunks embedded; {verb}",
        highlight=False,
    )
