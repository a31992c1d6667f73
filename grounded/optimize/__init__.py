"""``grounded optimize``: find the best configuration for a workload by measuring it.

The workload (:mod:`~grounded.optimize.workload`), the search space of real settings
(:mod:`~grounded.optimize.space`), the measurements (:mod:`~grounded.optimize.measure`), the
search (:mod:`~grounded.optimize.search`) and the report (:mod:`~grounded.optimize.report`).
See docs/optimize.md.

Example::

    report = kb.optimize(questions="questions.jsonl", objective="balanced")
    report.changes            # {"answer.k": [3, 2], ...}
    report.apply("grounded.toml")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounded.errors import InvalidRequest
from grounded.experts.registry import get_expert
from grounded.optimize.report import apply_config, pareto_rows, summary_rows
from grounded.optimize.search import OBJECTIVES, Constraints, Progress, optimize_store
from grounded.optimize.space import SearchSpace, default_space
from grounded.optimize.workload import Question, generate_questions, question_from_dict, read_questions
from grounded.store import KnowledgeStore

__all__ = ["OBJECTIVES", "Constraints", "OptimizeReport", "Question", "SearchSpace", "default_space", "run_optimize"]


@dataclass(frozen=True, slots=True)
class OptimizeReport:
    """What a search measured and chose (``data`` is the JSON report)."""

    data: dict[str, Any]

    @property
    def chosen(self) -> dict[str, Any]:
        return dict(self.data["chosen"])

    @property
    def changes(self) -> dict[str, list[Any]]:
        """Dimension -> [baseline value, chosen value], for the dimensions the choice changes."""
        return dict(self.data["changes"])

    @property
    def held_out(self) -> dict[str, Any] | None:
        """The baseline and the chosen configuration on the held-back questions."""
        held = self.data.get("held_out")
        return dict(held) if held else None

    def pareto(self) -> list[list[str]]:
        """The Pareto front (quality score vs p50) as rows, the header first."""
        return pareto_rows(self.data)

    def summary(self) -> list[list[str]]:
        return summary_rows(self.data)

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True)

    def to_frame(self) -> Any:
        """Every configuration tried, with its metrics at the last rung it reached (a DataFrame)."""
        import pandas as pd

        rows = [
            {"changes": ", ".join(f"{k}={v}" for k, v in t["changes"].items()) or "(baseline)",
             "questions": t["questions"], **(t["metrics"] or {})}
            for t in self.data["search"]
        ]  # fmt: skip
        return pd.DataFrame(rows)

    def apply(self, path: str | Path = "grounded.toml") -> Path | None:
        """Write the chosen configuration's changes into ``path`` (the old file kept as ``.bak``)."""
        return apply_config(Path(path), {k: v[1] for k, v in self.changes.items()})


def run_optimize(
    store: KnowledgeStore,
    *,
    questions: str | Path | Sequence[Question | Mapping[str, Any]] | None = None,
    generate: int = 0,
    objective: str = "balanced",
    space: Mapping[str, Sequence[Any]] | SearchSpace | None = None,
    constraints: Constraints | None = None,
    budget_minutes: float | None = None,
    trials: int = 16,
    seed: int = 0,
    restart: bool = False,
    state_dir: Path | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> OptimizeReport:
    """The search of ``grounded optimize`` on ``store`` (see :mod:`grounded.optimize.search`).

    ``questions``: a JSONL path or question dicts/objects; ``generate``: that many more written
    from the knowledge base's passages (with unanswerable twins). ``space``: dimensions to search
    instead of the defaults' (``{"answer.k": [1, 2, 3]}``), or a whole :class:`SearchSpace`.
    """
    if objective not in OBJECTIVES:
        raise InvalidRequest(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if isinstance(space, SearchSpace):
        declared = space
    elif space:
        declared = SearchSpace([]).override(space)  # a declared space replaces the default one
    else:
        declared = default_space(store.settings)
    declared.with_baseline(store.settings).validate(store.settings)  # before any question is written
    workload: list[Question] = []
    if isinstance(questions, str | Path):
        workload += read_questions(Path(questions))
    elif questions:
        for q in questions:
            workload.append(q if isinstance(q, Question) else question_from_dict(dict(q), "questions"))
    if generate:
        made, _stats = generate_questions(store, get_expert("answer", store.settings), generate, seed=seed, log=log)
        workload += made
    if not workload:
        raise InvalidRequest("no questions: give a questions file (JSONL) or --generate N")
    return OptimizeReport(
        optimize_store(
            store,
            workload,
            objective=objective,
            space=declared,
            constraints=constraints,
            trials=trials,
            budget_s=budget_minutes * 60 if budget_minutes is not None else None,
            state_dir=state_dir,
            restart=restart,
            seed=seed,
            progress=progress,
        )
    )
