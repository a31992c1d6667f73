"""``grounded tune toolgate``: fit the tool gate that decides "no tool fits" (``grounded/tools/gate.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from grounded.cli.app import console, handle_errors
from grounded.cli.tune import tune_app


@tune_app.command("toolgate")
@handle_errors
def toolgate(
    data: Annotated[
        Path, typer.Option(help="Labelled tool data in the ../shared/data/tools layout (bfcl/, metatool/).")
    ],
    source: Annotated[
        list[str] | None,
        typer.Option(help="Training sets: bfcl (its even half only), metatool (repeat the option for both)."),
    ] = None,
    work: Annotated[
        Path | None,
        typer.Option(help="Where the training tool indexes are built and kept (default: beside the gates)."),
    ] = None,
    metatool_queries: Annotated[
        int, typer.Option(help="MetaTool queries sampled (each with and without its tool).")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed (the MetaTool sample).")] = 0,
    activate: Annotated[bool, typer.Option(help="Make the new gate the one tool retrieval uses.")] = True,
) -> None:
    """Fit the tool gate (tools.gate) on labelled questions; seconds once the tool indexes are built."""
    from grounded.tools.gate import gate_cache
    from grounded.tune.toolgate import train_gate

    gate, meta = train_gate(
        data,
        work or gate_cache() / "indexes",
        sources=tuple(source or ["bfcl"]),
        metatool_limit=metatool_queries,
        seed=seed,
        activate=activate,
        log=lambda m: console.print(m, highlight=False),
    )
    console.print(json.dumps({"weights": dict(zip(gate.features, gate.weights, strict=True)), **meta}, indent=1))
