"""``grounded tune answerability``: fit the answerability model (``grounded/answering/answerability_model.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from grounded.cli.app import console, handle_errors
from grounded.cli.tune import tune_app


@tune_app.command("answerability")
@handle_errors
def answerability(
    data: Annotated[Path, typer.Option(help="MTRAG-UN tasks: a folder with mtragun_*.jsonl (or one holding mtrag/).")],
    work: Annotated[
        Path | None,
        typer.Option(help="Where the per-collection knowledge bases are built and kept (default: beside the models)."),
    ] = None,
    l2: Annotated[float, typer.Option(help="L2 penalty of the logistic heads.")] = 30.0,
    force: Annotated[
        bool, typer.Option(help="Train again even when this recipe and data were trained before.")
    ] = False,
    activate: Annotated[bool, typer.Option(help="Make the new model the one the engine uses.")] = True,
) -> None:
    """Fit the underspecified, partial and unanswerable heads on labelled conversation turns; a minute once the KBs exist."""
    from grounded.answering.answerability_model import answerability_cache
    from grounded.tune.answerability import train_answerability

    model = train_answerability(
        data,
        work or answerability_cache() / "kbs",
        l2=l2,
        force=force,
        activate=activate,
        log=lambda m: console.print(m, highlight=False),
    )
    console.print(json.dumps({"fingerprint": model.fingerprint, **model.meta}, indent=1))
