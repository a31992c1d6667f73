"""``grounded tune toolgate``: labelled questions for the tool gate (:mod:`grounded.tools.gate`).

A question is labelled by whether some tool in its pool fits it; its features are what the
tool index (:class:`~grounded.tools.index.ToolIndex`, the one serving uses) returns for it, so
the gate learns on exactly the numbers it will read. Two public sets in the layout of
``../shared/data/tools``:

* **BFCL v4** (``bfcl/``: every ``BFCL_v4_*.json``, gold calls in ``possible_answer/``): every
  function of every file is pooled into one registry (982 tools for the five non-live files).
  Questions of the answerable categories fit a tool; ``irrelevance`` questions fit none. Only
  the *even* positions of every file are read for training (``positions="even"``): the odd
  ones are what ``benchmarks/tools_at_scale.py`` reports on. Each question is asked twice: of
  the whole pool and of its own functions only (BFCL's native setting, a handful of tools),
  so the gate is fitted on a large registry and a small one alike.
* **MetaTool** (``metatool/``: ``plugin_des.json``, ``all_clean_data_even.csv``): each sampled
  query fits its tool in the full pool of 199; the same query with its tool removed from the
  pool is a "no tool fits" example made synthetically (noisy: a near-duplicate plugin may still
  fit, which the fitted weights average over).

:func:`train_gate` builds the tool indexes in ``work`` (kept: a second run reuses them), fits
the gate and saves it into the model cache, where it becomes the active one.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from grounded.errors import ConfigError
from grounded.tools.base import AnyTool
from grounded.tools.gate import FEATURES, RelevanceFeatures, ToolGate
from grounded.tools.schema import SchemaTool

__all__ = [
    "LabelledQuestion",
    "bfcl_questions",
    "gate_features",
    "metatool_questions",
    "question_text",
    "read_jsonl",
    "train_gate",
]

Positions = Literal["even", "odd", "all"]


@dataclass(frozen=True, slots=True)
class LabelledQuestion:
    """One question, the tools it may be offered (``None``: the whole registry), whether one fits."""

    question: str
    fits: bool
    pool: tuple[str, ...] | None
    source: str
    category: str = ""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def question_text(item: Mapping[str, Any]) -> str:
    """A BFCL item's question: the last user turn of its first conversation."""
    turns = item["question"][0] if item["question"] and isinstance(item["question"][0], list) else item["question"]
    users = [m["content"] for m in turns if m.get("role") == "user"]
    return str(users[-1] if users else turns[-1]["content"])


def _take(position: int, positions: Positions) -> bool:
    return positions == "all" or (position % 2 == 0) == (positions == "even")


def bfcl_questions(
    root: Path, positions: Positions = "even", *, own_pools: bool = True
) -> tuple[dict[str, AnyTool], list[LabelledQuestion]]:
    """BFCL's pooled registry and its labelled questions at ``positions`` of every file."""
    files = sorted(Path(root).glob("BFCL_v4_*.json"))
    if not files:
        raise ConfigError(f"no BFCL_v4_*.json in {root}; expected the BFCL v4 files (and possible_answer/)")
    pool: dict[str, AnyTool] = {}
    out: list[LabelledQuestion] = []
    for path in files:
        category = path.stem.removeprefix("BFCL_v4_")
        for position, item in enumerate(read_jsonl(path)):
            own = tuple(str(f["name"]) for f in item["function"])
            for function in item["function"]:
                name = str(function["name"])
                pool.setdefault(
                    name, SchemaTool(name, str(function.get("description", "")), function.get("parameters") or {})
                )
            if not _take(position, positions):
                continue
            fits = category != "irrelevance"
            question = question_text(item)
            out.append(LabelledQuestion(question, fits, None, "bfcl", category))
            if own_pools:
                out.append(LabelledQuestion(question, fits, own, "bfcl-own", category))
    return pool, out


def metatool_questions(
    root: Path, *, limit: int = 2000, seed: int = 0
) -> tuple[dict[str, AnyTool], list[LabelledQuestion]]:
    """MetaTool's 199 tools and ``limit`` sampled queries, each with and without its tool."""
    descriptions: dict[str, str] = json.loads((Path(root) / "plugin_des.json").read_text(encoding="utf-8"))
    tools: dict[str, AnyTool] = {name: SchemaTool(name, text, {}) for name, text in sorted(descriptions.items())}
    with (Path(root) / "all_clean_data_even.csv").open(encoding="utf-8") as fh:
        rows = [(r["Query"], r["Tool"]) for r in csv.DictReader(fh) if r["Tool"] in tools]
    random.Random(seed).shuffle(rows)
    names = tuple(tools)
    out: list[LabelledQuestion] = []
    for query, gold in rows[:limit]:
        out.append(LabelledQuestion(query, True, None, "metatool"))
        out.append(LabelledQuestion(query, False, tuple(n for n in names if n != gold), "metatool-dropped"))
    return tools, out


def gate_features(index: Any, questions: Sequence[LabelledQuestion]) -> list[RelevanceFeatures]:
    """Each question's features from ``index`` (a :class:`~grounded.tools.index.ToolIndex`),
    over its pool; questions are embedded in one batch (the features do not depend on it)."""
    texts = sorted({q.question for q in questions})
    vectors = dict(zip(texts, index.embedder.embed(texts), strict=True))
    return [index.retrieve(q.question, 5, allowed_names=q.pool, vector=vectors[q.question]).features for q in questions]


def _index(tools: Mapping[str, AnyTool], where: Path) -> Any:
    from grounded.config import Settings
    from grounded.experts.embedding import SentenceEmbedder
    from grounded.tools.index import ToolIndex

    settings = Settings()
    embedder = SentenceEmbedder.shared(settings.embed_model, batch_size=settings.embed_batch_size)
    index = ToolIndex(where, settings, embedder)
    index.update(tools)
    return index


def train_gate(
    data: Path,
    work: Path,
    *,
    sources: Sequence[str] = ("bfcl",),
    metatool_limit: int = 2000,
    features: Sequence[str] = tuple(FEATURES),
    l2: float = 1.0,
    seed: int = 0,
    activate: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[ToolGate, dict[str, Any]]:
    """Fit the gate on ``sources`` (``bfcl``: its even half; ``metatool``) of ``data``; save it.

    Returns the gate and its training figures (per source: questions, and the share the gate
    decides rightly on its own training questions)."""
    rows: list[RelevanceFeatures] = []
    labelled: list[LabelledQuestion] = []
    for source in sources:
        if source == "bfcl":
            tools, questions = bfcl_questions(Path(data) / "bfcl", "even")
        elif source == "metatool":
            tools, questions = metatool_questions(Path(data) / "metatool", limit=metatool_limit, seed=seed)
        else:
            raise ConfigError(f"unknown tool-gate training source {source!r}; known: 'bfcl', 'metatool'")
        log(f"{source}: {len(tools)} tools, {len(questions)} labelled questions")
        rows += gate_features(_index(tools, Path(work) / source), questions)
        labelled += questions
    meta: dict[str, Any] = {
        "sources": list(sources),
        "data": str(data),
        "bfcl_positions": "even" if "bfcl" in sources else None,
        "metatool_limit": metatool_limit if "metatool" in sources else None,
        "seed": seed,
        "l2": l2,
        "questions": len(labelled),
        "fits": sum(q.fits for q in labelled),
    }
    gate = ToolGate.fit(rows, [q.fits for q in labelled], features=features, l2=l2, meta=meta)
    decided = gate.probabilities(rows) >= gate.threshold
    by_source: dict[str, dict[str, Any]] = {}
    for q, says in zip(labelled, decided, strict=True):
        row = by_source.setdefault(q.source, {"questions": 0, "right": 0})
        row["questions"] += 1
        row["right"] += bool(says) == q.fits
    meta["train_accuracy"] = {s: round(r["right"] / r["questions"], 4) for s, r in by_source.items()}
    gate = dataclasses.replace(gate, meta=meta)  # the fingerprint is the parameters' alone
    path = gate.save(activate=activate)
    log(f"tool gate {gate.fingerprint}: {path}{' (active)' if activate else ''}")
    return gate, meta
