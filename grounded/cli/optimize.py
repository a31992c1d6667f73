"""``grounded optimize``: search the settings for the best configuration for a workload, by measuring it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from grounded.cli.app import KBOption, app, console, err_console, fail, handle_errors, knowledge_base

if TYPE_CHECKING:
    from grounded.optimize import OptimizeReport


def _table(rows: list[list[str]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(rows[0]):
        table.add_column(name, justify="left" if i < 2 else "right")
    for row in rows[1:]:
        table.add_row(*row)
    return table


def _print(report: OptimizeReport) -> None:
    data = report.data
    w = data["workload"]
    console.print(
        f"objective {data['objective']}: {data['candidates']} of {data['grid_size']} configurations tried on "
        f"{w['search_questions']} search questions in {len(data['rungs'])} rungs "
        f"({' -> '.join(str(r['configurations']) for r in data['rungs'])} configurations); "
        f"{data['answers_measured']} answers measured, {data['answers_replayed']} replayed from the journal, "
        f"{data['seconds']:.0f} s",
        highlight=False,
        soft_wrap=True,
    )
    console.print(_table(report.pareto(), "Pareto front (last rung; * chosen, = baseline)"))
    held = data.get("held_out")
    if held:
        title = (
            f"judged on {held['questions']} held-back questions the search never saw: p50 "
            f"{100 * (held['p50_change'] or 0):+.0f}%, quality {'not worse' if held['quality_not_worse'] else 'WORSE'}"
        )
        console.print(_table(report.summary(), title))
    changes = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in data["changes"].items())
    console.print(f"chosen: {changes or 'the configured settings (no change)'}", highlight=False, soft_wrap=True)
    if not data["complete"]:
        console.print("[yellow]incomplete:[/] the budget ran out; run again to continue from the journal")


@app.command()
@handle_errors
def optimize(
    questions: Annotated[
        Path | None,
        typer.Option(help='JSONL, one {"question", "answer"?, "doc_ids"?, "answerable"?} per line.'),
    ] = None,
    recorded: Annotated[
        bool, typer.Option(help="Also ask the questions the server recorded (server.record_questions).")
    ] = False,
    generate: Annotated[
        int, typer.Option(help="Also write this many questions from the KB's passages (plus unanswerable twins).")
    ] = 0,
    objective: Annotated[str, typer.Option(help="quality, latency or balanced.")] = "balanced",
    max_p95: Annotated[float | None, typer.Option(help="Refuse configurations slower than this p95 (s).")] = None,
    min_answer_rate: Annotated[
        float | None, typer.Option(help="Refuse configurations answering fewer answerable questions.")
    ] = None,
    min_abstention: Annotated[
        float | None, typer.Option(help="Refuse configurations abstaining on fewer unanswerable questions.")
    ] = None,
    budget_minutes: Annotated[float | None, typer.Option(help="Stop measuring after this many minutes.")] = None,
    trials: Annotated[int, typer.Option(help="Configurations to try (the baseline, single changes, then draws).")] = 16,
    space: Annotated[
        list[str] | None,
        typer.Option(help="Search SETTING=V1,V2,... instead of the default space (repeat for each setting)."),
    ] = None,
    apply: Annotated[bool, typer.Option(help="Write the chosen configuration to --config (old file kept).")] = False,
    config: Annotated[
        Path | None, typer.Option(help="The TOML file --apply writes (default: $GROUNDED_CONFIG or grounded.toml).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON to this file.")] = None,
    restart: Annotated[bool, typer.Option(help="Forget the journal of an earlier run on this workload.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the configurations drawn and the questions written.")] = 0,
    kb: KBOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar with the time left.")] = True,
) -> None:
    """Find the best settings for your questions by measuring them (see docs/optimize.md)."""
    from grounded.cli.app import silence_library_progress
    from grounded.errors import InvalidRequest
    from grounded.ops.recording import recorded_path
    from grounded.optimize import Constraints, Question, run_optimize
    from grounded.optimize.space import parse_values
    from grounded.optimize.workload import read_questions

    declared: dict[str, list[Any]] = {}
    for item in space or []:
        name, values = parse_values(item)
        declared[name] = values
    constraints = Constraints(max_p95, min_answer_rate, min_abstention)
    knowledge = knowledge_base(kb, create=False)
    silence_library_progress()
    bar: Any = None

    def step(done: int, total: int, eta: float) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="optimize", unit="answer", file=sys.stderr, dynamic_ncols=True)
        bar.total = total
        bar.set_postfix_str(f"ETA {eta / 60:.1f} min", refresh=False)
        bar.update(done - bar.n)

    workload: list[Question] = read_questions(questions) if questions is not None else []
    if recorded:
        path = recorded_path(knowledge.path)
        if not path.exists():
            raise InvalidRequest(
                f"no recorded questions in {path}: set server.record_questions (e.g. 0.1) and serve for a while"
            )
        workload += read_questions(path)
    try:
        report = run_optimize(
            knowledge.store,
            questions=workload,
            generate=generate,
            objective=objective,
            space=declared or None,
            constraints=constraints,
            budget_minutes=budget_minutes,
            trials=trials,
            seed=seed,
            restart=restart,
            progress=step if progress else None,
            log=(lambda m: err_console.print(m, highlight=False)) if progress else None,
        )
    except KeyboardInterrupt:
        raise fail(
            "interrupted; every answer measured is in the journal: run the same command to resume", 130
        ) from None
    finally:
        if bar is not None:
            bar.close()
    if json_out is not None:
        json_out.write_text(report.to_json() + "\n", encoding="utf-8")
    _print(report)
    if apply:
        target = config or Path(os.environ.get("GROUNDED_CONFIG", "grounded.toml"))
        if not report.changes:
            console.print(f"{target}: unchanged (the configured settings were chosen)", highlight=False)
            return
        backup = report.apply(target)
        kept = f" (old file kept as {backup})" if backup else ""
        console.print(f"wrote the chosen configuration to {target}{kept}", highlight=False, soft_wrap=True)
    elif report.changes:
        console.print("not applied: run again with --apply to write it to grounded.toml", highlight=False)
