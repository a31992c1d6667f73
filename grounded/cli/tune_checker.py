"""``grounded tune checker``: train the entailment checker and answerability gate (``grounded/checks``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from grounded.cli.app import console, handle_errors
from grounded.cli.tune import tune_app


@tune_app.command("checker")
@handle_errors
def checker(
    data: Annotated[
        Path | None, typer.Option(help="Labelled data in the ../shared/data layout (clapnq/, mtrag/): the full recipe.")
    ] = None,
    kb: Annotated[Path | None, typer.Option(help="A knowledge base whose passages add synthetic pairs.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop training after this many minutes.")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads for training.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    force: Annotated[bool, typer.Option(help="Train even when the cache holds this recipe's model.")] = False,
) -> None:
    """Train the checks model (synthetic pairs from the demo corpus and --kb; with --data, ClapNQ and MT-RAG too)."""
    from grounded.checks.recipe import recipe_for
    from grounded.checks.train import train

    recipe = recipe_for(str(data) if data else None, str(kb) if kb else None, threads=threads, seed=seed)
    result = train(recipe, force=force, max_minutes=max_minutes, log=lambda m: console.print(m, highlight=False))
    figures = result.meta.get("eval_int8", {})
    summary = {task: f.get("test", f.get("dev")) for task, f in figures.items()}
    console.print(json.dumps({"thresholds": result.meta.get("thresholds"), "test": summary}, indent=1), highlight=False)
    console.print(f"model: {result.path} ({'trained' if result.trained else 'cached'}, active)", highlight=False)
