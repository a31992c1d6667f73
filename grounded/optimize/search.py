"""The search: successive halving over question subsets, a noise-tolerant choice, a held-back check.

1. **Candidates** (:meth:`SearchSpace.candidates`): the configured settings (the *baseline*), each
   single change from them, then seeded draws from the grid, up to ``trials``.
2. **Rungs**: every candidate answers the first few search questions; the best third (``eta``)
   by the objective answer more, and so on, until the last rung's survivors (at least three,
   and always the baseline) have answered every search question. Questions are asked in
   turns — one question, every surviving configuration — so a change in the machine's load
   falls on all of them alike.
3. **Choice** on the last rung (:func:`rank`): configurations that break a constraint
   (``--max-p95``, ``--min-answer-rate``, ``--min-abstention``) come last; ``balanced`` also
   requires every quality metric at least the baseline's. Then:

   * ``quality``: the highest quality score (mean of the quality metrics); ties by latency;
   * ``latency`` and ``balanced``: latency in *groups* of ``LATENCY_TOLERANCE`` (20%, after adding
     ``LATENCY_FLOOR_S`` to both p50s): the group of the fastest holds every configuration within
     20% of it; in that group, the highest quality score wins; then the declared order.

   Quality is the same on every run (greedy decoding, the same questions); latency is not, so
   two configurations whose p50 differ by less than the tolerance are equally fast and the
   choice between them is made on quality, which cannot flip on noise.
4. **Held back**: the baseline and the chosen configuration answer the held-back questions
   (never seen by the search) in turns; the report shows both.

Every answer is appended to a journal (``<kb>/optimize/<workload>.jsonl``, one line per
configuration and question) before the next is asked: a search stopped by Ctrl-C or its budget
resumes where it stopped, and a second run on the same inputs replays the journal and gives the
same report.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grounded.answering.engine import GroundingEngine
from grounded.errors import ConfigError, InvalidRequest
from grounded.optimize.measure import QUALITY_METRICS, Measured, Outcome, ask, measure
from grounded.optimize.space import Config, SearchSpace, config_key, default_space
from grounded.optimize.workload import Question, split_workload, workload_digest
from grounded.store import KnowledgeStore

__all__ = [
    "LATENCY_FLOOR_S",
    "LATENCY_TOLERANCE",
    "OBJECTIVES",
    "Constraints",
    "Journal",
    "Progress",
    "Trial",
    "optimize_store",
    "rank",
]

OBJECTIVES = ("quality", "latency", "balanced")
LATENCY_TOLERANCE = 0.2
"""Two p50s closer than this (relative) are equally fast: the choice between them is by quality."""
LATENCY_FLOOR_S = 0.05
"""Added to both p50s before comparing them: a few milliseconds apart is never a difference."""
FINAL_KEEP = 3
"""Configurations kept to the last rung (besides the baseline), for the Pareto front."""

Progress = Callable[[int, int, float], None]
"""``progress(done, total, eta_seconds)`` after each answer (``total`` grows as rungs are added)."""


@dataclass(frozen=True, slots=True)
class Constraints:
    """Limits a configuration must meet to be chosen (``None``: no limit)."""

    max_p95: float | None = None
    min_answer_rate: float | None = None
    min_abstention: float | None = None

    def __post_init__(self) -> None:
        if self.max_p95 is not None and self.max_p95 <= 0:
            raise InvalidRequest(f"--max-p95 must be a positive number of seconds; got {self.max_p95}")
        for name in ("min_answer_rate", "min_abstention"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise InvalidRequest(f"--{name.replace('_', '-')} must be from 0 to 1; got {value}")

    def broken(self, m: Measured) -> list[str]:
        """The constraints ``m`` breaks."""
        out = []
        if self.max_p95 is not None and m.p95 > self.max_p95:
            out.append(f"p95 {m.p95:.2f} s > {self.max_p95}")
        if self.min_answer_rate is not None and (m.answer_rate or 0.0) < self.min_answer_rate:
            out.append(f"answer rate {m.answer_rate} < {self.min_answer_rate}")
        if self.min_abstention is not None and m.abstention is not None and m.abstention < self.min_abstention:
            out.append(f"abstention {m.abstention} < {self.min_abstention}")
        return out

    def to_dict(self) -> dict[str, float | None]:
        return {"max_p95": self.max_p95, "min_answer_rate": self.min_answer_rate, "min_abstention": self.min_abstention}


@dataclass(slots=True)
class Trial:
    """One candidate configuration and how far the search measured it."""

    index: int
    config: Config
    rung: int = 0
    measured: Measured | None = None

    @property
    def key(self) -> str:
        return config_key(self.config)


def _not_worse(m: Measured, base: Measured) -> bool:
    mine = m.quality()
    return all(mine.get(name, -1.0) >= value for name, value in base.quality().items())


def rank(
    trials: Sequence[Trial], baseline: Measured, objective: str, constraints: Constraints
) -> list[tuple[Trial, list[str]]]:
    """``trials`` (all measured on the same questions) best first, each with why it may not be chosen."""
    rows: list[tuple[Trial, list[str]]] = []
    for t in trials:
        assert t.measured is not None
        why = constraints.broken(t.measured)
        if objective == "balanced" and not _not_worse(t.measured, baseline):
            why.append("a quality metric below the baseline's")
        rows.append((t, why))
    ok = [t.measured.p50 for t, why in rows if not why and t.measured is not None]
    fastest = max(min(ok, default=0.0), 1e-6)

    def group(p50: float) -> int:
        ratio = (max(p50, fastest) + LATENCY_FLOOR_S) / (fastest + LATENCY_FLOOR_S)
        return math.floor(math.log(ratio) / math.log(1 + LATENCY_TOLERANCE))

    def key(row: tuple[Trial, list[str]]) -> tuple[Any, ...]:
        t, why = row
        m = t.measured
        assert m is not None
        if why:
            return (1, len(why), -m.score, t.index)
        if objective == "quality":
            return (0, -m.score, group(m.p50), t.index)
        return (0, group(m.p50), -m.score, t.index)

    return sorted(rows, key=key)


class Journal:
    """Every answer of a search, one JSON line each, appended as it is measured."""

    def __init__(self, path: Path, header: Mapping[str, Any], *, restart: bool = False) -> None:
        self.path = path
        self.header = dict(header)
        self.outcomes: dict[tuple[str, str], Outcome] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if restart:
            path.unlink(missing_ok=True)
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            if lines and json.loads(lines[0]) == {"header": self.header}:
                for line in lines[1:]:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        break  # the last line of a run killed while writing it
                    self.outcomes[(row["config"], row["qid"])] = Outcome.from_dict(row["outcome"])
            else:
                path.unlink()
        if not path.exists():
            path.write_text(json.dumps({"header": self.header}) + "\n", encoding="utf-8")
        self.replayed = len(self.outcomes)

    def add(self, key: str, outcome: Outcome) -> None:
        self.outcomes[(key, outcome.qid)] = outcome
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"config": key, "qid": outcome.qid, "outcome": outcome.to_dict()}) + "\n")
            fh.flush()


@dataclass(slots=True)
class _Runner:
    """Asks questions of configurations, through the journal, with progress and a deadline."""

    store: KnowledgeStore
    space: SearchSpace
    journal: Journal
    progress: Progress | None
    deadline: float | None
    engines: dict[str, GroundingEngine] = field(default_factory=dict)
    done: int = 0
    total: int = 0
    measured: int = 0
    spent: float = 0.0

    def engine(self, config: Config) -> GroundingEngine:
        key = config_key(config)
        engine = self.engines.get(key)
        if engine is None:
            engine = GroundingEngine(self.store.with_settings(self.space.settings(self.store.settings, config)))
            # Loading models and the grounder on first use is not the configuration's latency.
            engine.warm_up()
            engine.answer("warm up: what is this about?", use_cache=False)
            self.engines[key] = engine
        return engine

    def run(self, configs: Sequence[Config], questions: Sequence[Question]) -> bool:
        """Answer every question with every configuration (in turns); False when the deadline passed."""
        todo = [(q, c) for q in questions for c in configs if (config_key(c), q.qid) not in self.journal.outcomes]
        self.total = self.done + len(todo)
        for q, c in todo:
            if self.deadline is not None and time.monotonic() > self.deadline:
                return False
            engine = self.engine(c)
            outcome = ask(engine, q)
            self.journal.add(config_key(c), outcome)
            self.done += 1
            self.measured += 1
            self.spent += outcome.seconds
            if self.progress is not None:
                self.progress(self.done, self.total, self.spent / self.measured * (self.total - self.done))
        return True


def _rungs(candidates: int, questions: int, eta: int, min_questions: int) -> list[int]:
    """How many search questions each rung asks (the last: all of them)."""
    rungs = 1
    while candidates > FINAL_KEEP * eta ** (rungs - 1) and math.ceil(questions / eta**rungs) >= min_questions:
        rungs += 1
    return [math.ceil(questions / eta ** (rungs - 1 - r)) for r in range(rungs)]


def _gold_map(store: KnowledgeStore, questions: Sequence[Question]) -> dict[str, frozenset[str]]:
    """Each question's ``doc_ids`` as the knowledge base's document ids (matched by id, key, or the
    part of a key after ``#``, e.g. a BEIR ``_id``)."""
    wanted = {d for q in questions for d in q.doc_ids}
    if not wanted:
        return {}
    rows = store.snapshot().store.cursor().execute("SELECT doc_id, key FROM documents").fetchall()
    names: dict[str, set[str]] = {}
    for doc_id, key in rows:
        for name in (str(doc_id), str(key), str(key).rsplit("#", 1)[-1], str(key).rsplit("/", 1)[-1]):
            names.setdefault(name, set()).add(str(doc_id))
    return {q.qid: frozenset(d for name in q.doc_ids for d in names.get(name, ())) for q in questions if q.doc_ids}


def optimize_store(
    store: KnowledgeStore,
    questions: Sequence[Question],
    *,
    objective: str = "balanced",
    space: SearchSpace | None = None,
    constraints: Constraints | None = None,
    trials: int = 16,
    eta: int = 3,
    min_questions: int = 6,
    budget_s: float | None = None,
    state_dir: Path | None = None,
    restart: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Search ``space`` (default: :func:`default_space`) for the best configuration for
    ``questions`` and return the report (see the module docstring; ``grounded.optimize.report``
    renders it)."""
    if objective not in OBJECTIVES:
        raise InvalidRequest(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if eta < 2:
        raise InvalidRequest(f"eta (the halving factor) must be at least 2; got {eta}")
    if budget_s is not None and budget_s <= 0:
        raise InvalidRequest(f"the budget must be positive; got {budget_s} s")
    constraints = constraints or Constraints()
    started = time.monotonic()
    settings = store.settings
    space = (space or default_space(settings)).with_baseline(settings)
    space.validate(settings)
    tune, held = split_workload(questions)
    version = store.version
    if version is None:
        raise InvalidRequest(f"the knowledge base in {store.path} is empty; ingest documents first")
    if not store.snapshot().store.counts().get("chunks"):
        raise InvalidRequest(f"the knowledge base in {store.path} holds no passages; ingest documents first")
    digest = workload_digest(questions)
    header = {"workload": digest, "version": version, "embed": store.embedder.fingerprint}
    journal = Journal((state_dir or store.path / "optimize") / f"{digest}.jsonl", header, restart=restart)
    deadline = started + budget_s if budget_s is not None else None
    runner = _Runner(store, space, journal, progress, deadline)
    gold = _gold_map(store, questions)

    candidates = [Trial(i, c) for i, c in enumerate(space.candidates(settings, trials, seed=seed))]
    baseline = candidates[0]
    sizes = _rungs(len(candidates), len(tune), eta, min_questions)
    alive = list(candidates)
    rungs: list[dict[str, Any]] = []
    finished = True
    last: list[Trial] = []
    for r, n in enumerate(sizes):
        subset = tune[:n]
        if not runner.run([t.config for t in alive], subset):
            finished = False
            break
        for t in alive:
            t.rung, t.measured = r, _measure(subset, t, journal, gold)
        assert baseline.measured is not None
        ranked = rank(alive, baseline.measured, objective, constraints)
        rungs.append({"questions": n, "configurations": len(alive)})
        last = [t for t, _ in ranked]
        if r == len(sizes) - 1:
            break
        keep = max(FINAL_KEEP, math.ceil(len(alive) / eta))
        alive = last[:keep] + ([baseline] if baseline not in last[:keep] else [])
    if not rungs:
        raise InvalidRequest(
            f"the budget ran out before the first rung ({sizes[0]} questions x {len(candidates)} configurations) "
            "was measured; give more minutes (what was measured is kept: run again to continue)"
        )
    assert baseline.measured is not None
    final = rank(last, baseline.measured, objective, constraints)
    chosen = final[0][0]
    held_ok = runner.run([baseline.config, chosen.config] if chosen is not baseline else [baseline.config], held)
    report: dict[str, Any] = {
        "objective": objective,
        "constraints": constraints.to_dict(),
        "kb_version": version,
        "workload": {
            "digest": digest,
            "questions": len({q.qid for q in questions}),
            "answerable": sum(q.answerable for q in {q.qid: q for q in questions}.values()),
            "search_questions": len(tune),
            "held_out_questions": len(held),
            "generated": sum(q.origin == "generated" for q in questions),
        },
        "space": space.describe(),
        "grid_size": space.size,
        "candidates": len(candidates),
        "rungs": rungs,
        "latency_tolerance": LATENCY_TOLERANCE,
        "latency_floor_s": LATENCY_FLOOR_S,
        "baseline": baseline.config,
        "chosen": chosen.config,
        "changes": {k: [baseline.config[k], v] for k, v in chosen.config.items() if baseline.config[k] != v},
        "chosen_is_baseline": chosen is baseline,
        "search": [
            {
                "config": t.config,
                "changes": {k: v for k, v in t.config.items() if baseline.config[k] != v},
                "questions": rungs[t.rung]["questions"] if t.rung < len(rungs) else 0,
                "rung": t.rung,
                "metrics": t.measured.to_dict() if t.measured else None,
            }
            for t in candidates
        ],
        "final": [{"index": t.index, "not_chosen_because": why} for t, why in final],
        "pareto": [t.index for t in _pareto([t for t, _ in final])],
        "held_out": None,
        "complete": finished and held_ok,
        "answers_replayed": journal.replayed,
        "answers_measured": runner.measured,
        "seconds": round(time.monotonic() - started, 1),
        "journal": str(journal.path),
        "quality_metrics": list(QUALITY_METRICS),
    }
    if held_ok:
        base_held = measure(held, _outcomes(journal, baseline), gold)
        chosen_held = measure(held, _outcomes(journal, chosen), gold)
        report["held_out"] = {
            "questions": len(held),
            "baseline": base_held.to_dict(),
            "chosen": chosen_held.to_dict(),
            "p50_change": round(chosen_held.p50 / base_held.p50 - 1, 4) if base_held.p50 else None,
            "quality_not_worse": _not_worse(chosen_held, base_held),
        }
    return report


def _outcomes(journal: Journal, trial: Trial) -> dict[str, Outcome]:
    return {qid: o for (key, qid), o in journal.outcomes.items() if key == trial.key}


def _measure(
    questions: Sequence[Question], trial: Trial, journal: Journal, gold: Mapping[str, frozenset[str]]
) -> Measured:
    return measure(questions, _outcomes(journal, trial), gold)


def _pareto(trials: Sequence[Trial]) -> list[Trial]:
    """The trials no other beats on both quality score and p50 (best quality first)."""
    front = []
    for t in trials:
        m = t.measured
        assert m is not None
        beaten = any(
            o.measured is not None
            and o.measured.score >= m.score
            and o.measured.p50 <= m.p50
            and (o.measured.score > m.score or o.measured.p50 < m.p50)
            for o in trials
        )
        if not beaten:
            front.append(t)
    return sorted(front, key=lambda t: (-(t.measured.score if t.measured else 0.0), t.index))


def check_objective(objective: str) -> str:
    """``objective`` when it is one of :data:`OBJECTIVES`; else a :class:`ConfigError` listing them."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    return objective
