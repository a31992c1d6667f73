"""``grounded tune answerability``: fit the answerability model on labelled conversation turns.

MTRAG-UN (``mtragun_*.jsonl``, the layout of ``../shared/data/mtrag``) labels the last user turn
of each task ANSWERABLE, PARTIAL, UNANSWERABLE or UNDERSPECIFIED. Each turn's features
(:func:`~grounded.answering.turn_features.turn_features`) are computed by the engine's own
path, rewrite, retrieval and evidence pool, on one knowledge base per collection built from the
union of the tasks' reference passages (in ``work``, kept: a second run reuses them), so the
model learns on exactly the numbers it reads when serving.

Splits are **by conversation**: MTRAG-UN branches one dialogue into several tasks (the same first
turn, other conversation ids), so the group is the first user turn and the split a hash of it
(:func:`~grounded.checks.data.split_of`, salt ``answerability``): 60% train (the heads are
fitted there), 20% dev (each head's threshold is chosen there, for balanced accuracy), 20% test
(reported, never used to choose anything). Heads: ``underspecified`` on every turn;
``partial`` on the answerable and partial turns; ``unanswerable`` on every turn that is not
underspecified (the engine asks those back before it would abstain).

The model's fingerprint hashes the recipe and the training files, so the same recipe on the
same data is trained once and found again in the model cache.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grounded.answering.answerability_model import FEATURE_NAMES, AnswerabilityModel, Head, answerability_cache
from grounded.answering.conversation import Turn
from grounded.answering.turn_features import TurnFeatures
from grounded.checks.data import Split, split_of
from grounded.errors import ConfigError

if TYPE_CHECKING:
    from grounded.kb import KnowledgeBase

__all__ = [
    "PARTIAL_FEATURES",
    "RECIPE_VERSION",
    "UNDERSPECIFIED_FEATURES",
    "LabelledTurn",
    "collection_kbs",
    "conversation_group",
    "fit_model",
    "head_figures",
    "load_tasks",
    "task_split",
    "task_turn",
    "train_answerability",
]

RECIPE_VERSION = "answerability-v2"

# Chosen on dev (AUC), never on test: every feature of the first recipe for underspecified (the evidence tells
# too: many passages matching equally well; `quantity_unmet` lowered its dev AUC from 0.80 to 0.73), the
# question's shape and coverage for partial and unanswerable (with `quantity_unmet`, dev AUC partial 0.70 -> 0.71,
# unanswerable 0.85 -> 0.86); L2 = 30 (0.1-30 tried: the strongest penalty generalised best on dev for the first
# two heads, with about 20 positives each to learn from; unanswerable dev AUC 0.85 / 0.86 / 0.86 / 0.85 at
# L2 1 / 10 / 30 / 100).
L2 = 30.0
UNDERSPECIFIED_FEATURES: tuple[str, ...] = tuple(f for f in FEATURE_NAMES if f != "quantity_unmet")
PARTIAL_FEATURES: tuple[str, ...] = (
    "user_turns", "rewritten", "names", "content_words", "new_words", "parts", "quantity", "best_sentence",
    "top3_sentences", "passage_agreement", "covered", "covered_top", "missing_keys", "quantity_unmet",
)  # fmt: skip
UNANSWERABLE_FEATURES: tuple[str, ...] = PARTIAL_FEATURES
DEV_SHARE = 0.2
TEST_SHARE = 0.2
SALT = "answerability"


class LabelledTurn:
    """One task's turn: its features, its class, its split."""

    __slots__ = ("features", "label", "split", "task_id")

    def __init__(self, task_id: str, label: str, split: Split, features: TurnFeatures) -> None:
        self.task_id, self.label, self.split, self.features = task_id, label, split, features


def load_tasks(data: Path) -> list[dict[str, Any]]:
    """Every task of the ``mtragun_*.jsonl`` files in ``data`` (or ``data/mtrag``), in file order."""
    folder = Path(data) / "mtrag" if (Path(data) / "mtrag").is_dir() else Path(data)
    files = sorted(folder.glob("mtragun_*.jsonl"))
    if not files:
        raise ConfigError(f"no mtragun_*.jsonl in {folder}; expected MTRAG-UN tasks (../shared/data/mtrag)")
    tasks: list[dict[str, Any]] = []
    for path in files:
        with open(path, encoding="utf-8") as fh:
            tasks.extend(json.loads(line) for line in fh if line.strip())
    return tasks


def task_turn(task: dict[str, Any]) -> tuple[str, list[Turn]]:
    """``(question, history)``: the last user turn and the turns before it."""
    turns = [Turn("user" if t["speaker"] == "user" else "assistant", t["text"]) for t in task["input"]]
    while turns and turns[-1].role != "user":
        turns.pop()
    return turns[-1].text, turns[:-1]


def task_label(task: dict[str, Any]) -> str:
    value = task.get("answerability") or ""
    return str(value[0] if isinstance(value, list) and value else value)


def conversation_group(task: dict[str, Any]) -> str:
    """The dialogue a task belongs to: its first user turn (branches of one dialogue share it)."""
    first = next((t["text"] for t in task["input"] if t["speaker"] == "user"), task.get("conversation_id", ""))
    return "mtrag:" + " ".join(str(first).lower().split())


def task_split(task: dict[str, Any]) -> Split:
    """The task's split (by its dialogue; see the module docstring)."""
    return split_of(conversation_group(task), DEV_SHARE, TEST_SHARE, salt=SALT)


def collection_kbs(
    tasks: Sequence[dict[str, Any]], work: Path, log: Callable[[str], None] = print, **settings: Any
) -> dict[str, KnowledgeBase]:
    """One knowledge base per ``Collection`` from the union of its tasks' reference passages, in ``work``
    (``settings`` override the configuration, as in ``grounded.open``)."""
    from grounded.kb import open_kb

    passages: dict[str, dict[str, str]] = defaultdict(dict)
    for task in tasks:
        for c in task["contexts"]:
            passages[task["Collection"]][c["document_id"]] = c["text"]
    kbs: dict[str, KnowledgeBase] = {}
    for domain, docs in sorted(passages.items()):
        corpus = Path(work) / domain / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        with open(corpus / "corpus.jsonl", "w", encoding="utf-8") as fh:
            for doc_id, text in sorted(docs.items()):
                fh.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
        kb = open_kb(Path(work) / domain / "kb", **settings)
        if kb.version is None:
            started = time.perf_counter()
            kb.ingest(corpus, source=domain)
            log(f"{domain}: {len(docs)} passages indexed in {time.perf_counter() - started:.0f} s")
        kbs[domain] = kb
    return kbs


def labelled_turns(tasks: Sequence[dict[str, Any]], kbs: dict[str, Any]) -> list[LabelledTurn]:
    """Each task's features through its collection's engine (rewrite, retrieval, evidence; no writing)."""
    out: list[LabelledTurn] = []
    for task in tasks:
        question, history = task_turn(task)
        features = kbs[task["Collection"]].engine.turn_features(question, history=history)
        out.append(LabelledTurn(str(task["task_id"]), task_label(task), task_split(task), features))
    return out


def _auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return None
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def head_figures(head: Head, rows: Sequence[LabelledTurn], positive: Callable[[LabelledTurn], bool]) -> dict[str, Any]:
    """``n``, positives, recall (positives said yes), specificity (negatives said no), balanced accuracy, AUC."""
    if not rows:
        return {"n": 0}
    p = head.probabilities([r.features for r in rows])
    y = np.array([positive(r) for r in rows], dtype=bool)
    yes = p >= head.threshold
    recall = float(yes[y].mean()) if y.any() else None
    specificity = float((~yes[~y]).mean()) if (~y).any() else None
    balanced = (recall + specificity) / 2 if recall is not None and specificity is not None else None
    auc = _auc(p, y)
    return {
        "n": len(rows), "positives": int(y.sum()), "recall": _r(recall), "specificity": _r(specificity),
        "balanced_accuracy": _r(balanced), "auc": _r(auc),
    }  # fmt: skip


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _threshold(
    head: Head, rows: Sequence[LabelledTurn], positive: Callable[[LabelledTurn], bool], min_specificity: float = 0.0
) -> float:
    """The cut with the best balanced accuracy on ``rows`` (dev) among those that keep at least
    ``min_specificity`` of the negatives (none does: the most specific cut); ties go to the one nearest 0.5."""
    p = head.probabilities([r.features for r in rows])
    y = np.array([positive(r) for r in rows], dtype=bool)
    if not y.any() or y.all():
        return 0.5
    best: tuple[bool, float, float, float] = (False, -1.0, 0.0, 0.5)
    for t in np.round(np.arange(0.05, 0.951, 0.025), 3):
        yes = p >= t
        specificity = float((~yes[~y]).mean())
        score = (float(yes[y].mean()) + specificity) / 2
        allowed = specificity >= min_specificity
        best = max(best, (allowed, round(score if allowed else specificity, 9), -abs(float(t) - 0.5), float(t)))
    return best[3]


_Rule = Callable[[LabelledTurn], bool]
_HEADS: dict[str, tuple[tuple[str, ...], _Rule, _Rule, float]] = {
    # head: (features, which turns it learns on, which of those are positive, least dev specificity)
    # A needless clarifying question costs an answerable turn its whole answer, so the underspecified cut must keep
    # 90% of the other dev turns (balanced accuracy alone chose a cut that asked back on 40% of the held-out
    # answerable turns, docs/benchmarks.md); a needless "partial" only adds a sentence to an answer.
    "underspecified": (UNDERSPECIFIED_FEATURES, lambda r: True, lambda r: r.label == "UNDERSPECIFIED", 0.9),
    "partial": (PARTIAL_FEATURES, lambda r: r.label in ("ANSWERABLE", "PARTIAL"), lambda r: r.label == "PARTIAL", 0.0),
    # A needless refusal costs an answerable turn its answer too: the same 90% floor as underspecified.
    "unanswerable": (
        UNANSWERABLE_FEATURES,
        lambda r: r.label != "UNDERSPECIFIED",
        lambda r: r.label == "UNANSWERABLE",
        0.9,
    ),
}
OPTIONAL_HEADS = frozenset({"unanswerable"})
"""Heads left out (rather than an error) when the training turns have no positive for them."""


def fit_model(
    rows: Sequence[LabelledTurn], *, fingerprint: str, l2: float = L2, meta: dict[str, Any] | None = None
) -> AnswerabilityModel:
    """Fit the heads on the train rows, choose their thresholds on dev, report every split."""
    heads: dict[str, Head] = {}
    figures: dict[str, Any] = {}
    for name, (features, eligible, positive, floor) in _HEADS.items():
        mine = [r for r in rows if eligible(r)]
        train = [r for r in mine if r.split == "train"]
        dev = [r for r in mine if r.split == "dev"]
        labels = [positive(r) for r in train]
        if name in OPTIONAL_HEADS and not any(labels):
            continue
        if not any(labels) or all(labels):
            raise ConfigError(f"the {name} head needs both kinds of turn in its training split; got {len(train)} turns")
        head = Head.fit([r.features for r in train], labels, features, l2=l2)
        head = head.with_threshold(_threshold(head, dev, positive, floor))
        heads[name] = head
        figures[name] = {
            split: head_figures(head, [r for r in mine if r.split == split], positive)
            for split in ("train", "dev", "test")
        }
    info = {**(meta or {}), "figures": figures}
    return AnswerabilityModel(heads["underspecified"], heads["partial"], fingerprint, info, heads.get("unanswerable"))


def recipe_fingerprint(files: Sequence[Path], recipe: dict[str, Any]) -> str:
    """Hash of the recipe and the training files' bytes: the model's name in the cache."""
    h = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    for path in sorted(files):
        h.update(path.name.encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def train_answerability(
    data: Path,
    work: Path,
    *,
    l2: float = L2,
    force: bool = False,
    activate: bool = True,
    log: Callable[[str], None] = print,
) -> AnswerabilityModel:
    """Fit the answerability model on the MTRAG-UN tasks in ``data``; save it into the model cache.

    A model with the same fingerprint (recipe + data) already in the cache is returned as it is,
    unless ``force``."""
    from grounded.config import Settings

    folder = Path(data) / "mtrag" if (Path(data) / "mtrag").is_dir() else Path(data)
    files = sorted(folder.glob("mtragun_*.jsonl"))
    settings = Settings()
    recipe = {
        "version": RECIPE_VERSION, "l2": l2, "heads": {k: [*v[0], v[3]] for k, v in _HEADS.items()},
        "features": list(FEATURE_NAMES), "split": [SALT, DEV_SHARE, TEST_SHARE], "k": settings.answer.k,
        "embed": settings.embed_model, "rewrite": [settings.conversation.rewrite, settings.conversation.rewrite_turns],
    }  # fmt: skip
    tasks = load_tasks(data)
    fingerprint = recipe_fingerprint(files, recipe)
    existing = answerability_cache() / fingerprint
    if not force and existing.is_dir():
        try:
            model = AnswerabilityModel.load(existing)
        except ConfigError:
            pass
        else:
            log(f"answerability model {fingerprint} already trained on this data and recipe: {existing}")
            if activate:
                model.save(activate=True)
            return model
    kbs = collection_kbs(tasks, work, log)
    started = time.perf_counter()
    rows = labelled_turns(tasks, kbs)
    log(f"{len(rows)} turns' features in {time.perf_counter() - started:.0f} s")
    splits = {s: sum(r.split == s for r in rows) for s in ("train", "dev", "test")}
    meta = {"recipe": recipe, "data": [p.name for p in files], "turns": len(rows), "splits": splits}
    model = fit_model(rows, fingerprint=fingerprint, l2=l2, meta=meta)
    path = model.save(activate=activate)
    log(f"answerability model {fingerprint}: {path}{' (active)' if activate else ''}")
    return model
