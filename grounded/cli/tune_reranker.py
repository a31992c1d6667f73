"""``grounded tune reranker``: train the search reranker on a knowledge base's own passages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from grounded.cli.app import console, handle_errors
from grounded.cli.tune import tune_app


@tune_app.command("reranker")
@handle_errors
def reranker(
    kb: Annotated[Path, typer.Option(help="The knowledge base whose passages make the pseudo-queries.")] = Path("kb"),
    queries: Annotated[int, typer.Option(help="Chunks sampled, one pseudo-query each.")] = 800,
    layers: Annotated[int, typer.Option(help="Layers of MiniLM kept (fewer: faster search).")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    force: Annotated[bool, typer.Option(help="Train even when the cache holds this recipe's model.")] = False,
) -> None:
    """Train the reranker (search.rerank) on pseudo-queries from --kb's passages; it becomes the active one."""
    import grounded
    from grounded.checks.rerank import RerankRecipe, train_reranker
    from grounded.tune.rerank import pseudo_queries

    base = grounded.open(kb)
    items = pseudo_queries(base.store, limit=queries, seed=seed)
    path, meta = train_reranker(
        items,
        RerankRecipe(layers=layers, seed=seed),
        name=f"pseudo:{kb.name}",
        force=force,
        log=lambda m: console.print(m, highlight=False),
    )
    console.print(json.dumps({"dev": meta.get("dev")}, indent=1), highlight=False)
    console.print(f"reranker: {path} (active; set search.rerank = 'auto' to use it)", highlight=False)
