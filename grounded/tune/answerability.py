"""``grounded tune answerability``: fit the answerability model on labelled conversation turns.

MTRAG-UN (``mtragun_*.jsonl``, the layout of ``../shared/data/mtrag``) labels the last user turn
of each task ANSWERABLE, PARTIAL, UNANSWERABLE or UNDERSPECIFIED. Each turn's features
(:func:`~grounded.answering.turn_features.turn_features`) are computed by the engine's own
path, rewrite, retrieval and evidence pool, on one knowledge base per collection built from the
union of the tasks' reference passages (in ``work``, kept: a second run reuses them), so the
model learns on exactly the numbers it reads when serving.

Splits are **by conversation**: MTRAG-UN branches one dialogue into several tasks (the same first
turn, other conversation ids), so the group is the first user turn and the split a hash of it
(:func:`~grounded.checks.data.split_of`, salt ``answerability``): 60% train and 20% dev, on which
the heads are fitted and their thresholds chosen, and 20% test (reported, never used to choose
anything). Heads: ``underspecified`` on every turn; ``partial`` on the answerable and partial
turns; ``unanswerable`` on every turn that is not underspecified (the engine asks those back
before it would abstain).

**Cross-fitting** (recipes ``answerability-v3`` and ``-v4``): MTRAG-UN is small (298 train and dev turns, of
which 22 partial and 31 underspecified), so the heads are fitted on train and dev together and
their thresholds chosen on *out-of-fold* probabilities: five folds by dialogue, each turn scored by
heads fitted on the other four. The three thresholds are chosen **together**, on the cascade the
engine runs (underspecified, then unanswerable, then partial, then the gate): the cut that hands the
least-handled class its largest share, keeping at least ``ANSWERABLE_FLOOR`` of the answerable
turns answered and, since recipe ``answerability-v4``, labelling at most ``PARTIAL_CAP`` of them
partial (each such answer ends "the sources do not mention ...") (:func:`joint_thresholds`). A
turn no head claims goes to the gate and the writer,
which answer about ``GATE_ANSWERS`` of the answerable turns and refuse about ``GATE_REFUSES`` of
the unanswerable ones that reach them (the rules' held-out shares with the trained checks).

The model's fingerprint hashes the recipe and the training files, so the same recipe on the
same data is trained once and found again in the model cache.
"""

from __future__ import annotations

import hashlib
import itertools
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

RECIPE_VERSION = "answerability-v4"

# Chosen on dev (AUC), never on test: every feature of the first recipe for underspecified (the evidence tells
# too: many passages matching equally well; `quantity_unmet` lowered its dev AUC from 0.80 to 0.73), the
# question's shape and coverage for partial and unanswerable (with `quantity_unmet`, dev AUC partial 0.70 -> 0.71,
# unanswerable 0.85 -> 0.86); L2 = 30 (0.1-30 tried: the strongest penalty generalised best on dev for the first
# two heads, with about 20 positives each to learn from; unanswerable dev AUC 0.85 / 0.86 / 0.86 / 0.85 at
# L2 1 / 10 / 30 / 100). Third recipe, chosen on the out-of-fold probabilities of train and dev: `yes_no` and
# `opinion` for partial and unanswerable (cross-validated AUC partial 0.710 -> 0.731, unanswerable 0.832 -> 0.849;
# for underspecified they, or a reference in the first two turns, did not help: 0.854 -> 0.848-0.852).
L2 = 30.0
UNDERSPECIFIED_FEATURES: tuple[str, ...] = tuple(
    f for f in FEATURE_NAMES if f not in ("quantity_unmet", "yes_no", "opinion")
)
PARTIAL_FEATURES: tuple[str, ...] = (
    "user_turns", "rewritten", "names", "content_words", "new_words", "parts", "quantity", "best_sentence",
    "top3_sentences", "passage_agreement", "covered", "covered_top", "missing_keys", "quantity_unmet", "yes_no",
    "opinion",
)  # fmt: skip
UNANSWERABLE_FEATURES: tuple[str, ...] = PARTIAL_FEATURES
DEV_SHARE = 0.2
TEST_SHARE = 0.2
SALT = "answerability"
FOLDS = 5
ANSWERABLE_FLOOR = 0.75
"""The least share of answerable train and dev turns the chosen thresholds leave answered (the goal is 70%)."""
PARTIAL_CAP = 0.45
"""The most share of answerable train and dev turns the chosen thresholds may label partial: each such answer ends
"the sources do not mention ...". Uncapped (``answerability-v3``) the chosen cut labels 48% of them partial (out of
fold); 0.45 is the smallest cap that costs the least-handled class at most one turn (cross-validated on train and
dev: 44% labelled partial, partial handled 54.5% -> 50.0%; 0.40 costs two partial turns, 0.30 three)."""
GATE_ANSWERS = 0.85
GATE_REFUSES = 0.4
"""What the gate and the writer do with a turn no head claims: answer an answerable one, refuse an unanswerable one
(about the rules' shares on held-out MTRAG-UN with the trained checks, 78.9% and 41.7%)."""


class LabelledTurn:
    """One task's turn: its features, its class, its split, its dialogue (``group``: the task id if not given)."""

    __slots__ = ("features", "group", "label", "split", "task_id")

    def __init__(self, task_id: str, label: str, split: Split, features: TurnFeatures, group: str = "") -> None:
        self.task_id, self.label, self.split, self.features = task_id, label, split, features
        self.group = group or task_id


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
        out.append(
            LabelledTurn(str(task["task_id"]), task_label(task), task_split(task), features, conversation_group(task))
        )
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
    y = np.array([positive(r) for r in rows], dtype=np.bool_)
    return _figures(head.probabilities([r.features for r in rows]), y, head.threshold)


def _figures(p: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    if not len(y):
        return {"n": 0}
    yes = p >= threshold
    recall = float(yes[y].mean()) if y.any() else None
    specificity = float((~yes[~y]).mean()) if (~y).any() else None
    balanced = (recall + specificity) / 2 if recall is not None and specificity is not None else None
    auc = _auc(p, y)
    return {
        "n": len(y), "positives": int(y.sum()), "recall": _r(recall), "specificity": _r(specificity),
        "balanced_accuracy": _r(balanced), "auc": _r(auc),
    }  # fmt: skip


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


_Rule = Callable[[LabelledTurn], bool]
_HEADS: dict[str, tuple[tuple[str, ...], _Rule, _Rule]] = {
    # head: (features, which turns it learns on, which of those are positive); the thresholds are chosen together
    # (joint_thresholds): a needless clarifying question or refusal costs an answerable turn its whole answer, a
    # needless "partial" only adds a sentence to an answer.
    "underspecified": (UNDERSPECIFIED_FEATURES, lambda r: True, lambda r: r.label == "UNDERSPECIFIED"),
    "partial": (PARTIAL_FEATURES, lambda r: r.label in ("ANSWERABLE", "PARTIAL"), lambda r: r.label == "PARTIAL"),
    "unanswerable": (UNANSWERABLE_FEATURES, lambda r: r.label != "UNDERSPECIFIED", lambda r: r.label == "UNANSWERABLE"),
}
OPTIONAL_HEADS = frozenset({"unanswerable"})
"""Heads left out (rather than an error) when the training turns have no positive for them."""


def fit_model(
    rows: Sequence[LabelledTurn], *, fingerprint: str, l2: float = L2, meta: dict[str, Any] | None = None
) -> AnswerabilityModel:
    """Fit the heads on the train and dev rows, choose their thresholds together on out-of-fold probabilities
    (:func:`joint_thresholds`), report the cross-validated and the test figures (see the module docstring)."""
    fitted = [r for r in rows if r.split != "test"]
    test = [r for r in rows if r.split == "test"]
    heads: dict[str, Head] = {}
    out_of_fold: dict[str, np.ndarray] = {}
    for name, (features, eligible, positive) in _HEADS.items():
        mine = [r for r in fitted if eligible(r)]
        labels = [positive(r) for r in mine]
        if name in OPTIONAL_HEADS and not any(labels):
            continue
        if not any(labels) or all(labels):
            raise ConfigError(f"the {name} head needs both kinds of turn in its training rows; got {len(mine)} turns")
        heads[name] = Head.fit([r.features for r in mine], labels, features, l2=l2)
        out_of_fold[name] = _out_of_fold(fitted, features, eligible, positive, l2)
    thresholds = joint_thresholds(fitted, out_of_fold)
    heads = {name: head.with_threshold(thresholds[name]) for name, head in heads.items()}
    figures: dict[str, Any] = {}
    for name, head in heads.items():
        _features, eligible, positive = _HEADS[name]
        picked = [i for i, r in enumerate(fitted) if eligible(r)]
        y = np.array([positive(fitted[i]) for i in picked], dtype=np.bool_)
        figures[name] = {
            "fitted": head_figures(head, [fitted[i] for i in picked], positive),
            "cross-validated": _figures(out_of_fold[name][picked], y, head.threshold),
            "test": head_figures(head, [r for r in test if eligible(r)], positive),
        }
    handled = _cascade(_classes(fitted), out_of_fold, thresholds)
    info = {**(meta or {}), "figures": figures, "cross-validated handled": dict(zip(_CLASSES, handled, strict=True))}
    return AnswerabilityModel(heads["underspecified"], heads["partial"], fingerprint, info, heads.get("unanswerable"))


def _fold(row: LabelledTurn) -> int:
    return int(hashlib.sha256(f"{SALT}:fold:{row.group}".encode()).hexdigest()[:8], 16) % FOLDS


def _out_of_fold(
    rows: Sequence[LabelledTurn], features: Sequence[str], eligible: _Rule, positive: _Rule, l2: float
) -> np.ndarray:
    """Every row's probability by a head fitted on the eligible rows of the other folds (folds by dialogue)."""
    folds = np.array([_fold(r) for r in rows])
    out = np.full(len(rows), 0.5)
    for k in range(FOLDS):
        held = np.flatnonzero(folds == k)
        train = [r for r, f in zip(rows, folds, strict=True) if f != k and eligible(r)]
        labels = [positive(r) for r in train]
        if not len(held) or not any(labels) or all(labels):
            continue  # a fold whose other folds hold one kind of turn only: no opinion (0.5)
        head = Head.fit([r.features for r in train], labels, features, l2=l2)
        out[held] = head.probabilities([rows[int(i)].features for i in held])
    return out


_CLASSES = ("ANSWERABLE", "PARTIAL", "UNANSWERABLE", "UNDERSPECIFIED")
_GRID = np.round(np.arange(0.3, 0.951, 0.025), 3)


def _classes(rows: Sequence[LabelledTurn]) -> np.ndarray:
    return np.array([_CLASSES.index(r.label) if r.label in _CLASSES else -1 for r in rows], dtype=np.int64)


def _verdicts(p: dict[str, np.ndarray], t: dict[str, float], n: int) -> tuple[np.ndarray, ...]:
    """``(underspecified, unanswerable, partial, gate)``: which of ``n`` rows each step of the engine's order of
    decisions takes under thresholds ``t``; a missing head never says yes."""
    never = np.zeros(n, dtype=bool)
    says = {h: p[h] >= t[h] if h in p else never for h in ("underspecified", "unanswerable", "partial")}
    return _in_order(says["underspecified"], says["unanswerable"], says["partial"])


def _in_order(u: np.ndarray, a: np.ndarray, part: np.ndarray) -> tuple[np.ndarray, ...]:
    a = a & ~u
    part = part & ~u & ~a
    return u, a, part, ~u & ~a & ~part


def _partial_share(y: np.ndarray, p: dict[str, np.ndarray], t: dict[str, float]) -> float:
    """The share of the answerable rows the partial head claims (each such answer ends "the sources do not
    mention ..."); 0 with no answerable row."""
    return _share_partial(y == 0, _verdicts(p, t, len(y)))


def _share_partial(answerable: np.ndarray, verdicts: tuple[np.ndarray, ...]) -> float:
    return float(verdicts[2][answerable].mean()) if answerable.any() else 0.0


def _cascade(y: np.ndarray, p: dict[str, np.ndarray], t: dict[str, float]) -> list[float | None]:
    """The share of each class's rows (``y``: indexes into ``_CLASSES``) handled by the engine's order of decisions
    under thresholds ``t`` (``None``: no row of that class); a missing head never says yes."""
    return _handled(y, _verdicts(p, t, len(y)))


def _handled(y: np.ndarray, verdicts: tuple[np.ndarray, ...]) -> list[float | None]:
    u, a, part, gate = verdicts
    known = y >= 0
    # What handles each class's row: answered (partial or through the gate), partial, refused, asked back.
    per_class = np.stack([part + gate * GATE_ANSWERS, part * 1.0, a + gate * GATE_REFUSES, u * 1.0])
    handled = per_class[y[known], np.flatnonzero(known)]
    sums = np.bincount(y[known], weights=handled, minlength=len(_CLASSES))
    counts = np.bincount(y[known], minlength=len(_CLASSES))
    return [round(float(sums[c] / counts[c]), 4) if counts[c] else None for c in range(len(_CLASSES))]


def joint_thresholds(
    rows: Sequence[LabelledTurn], probabilities: dict[str, np.ndarray], *, partial_cap: float | None = None
) -> dict[str, float]:
    """The heads' thresholds, chosen together on ``rows`` (their out-of-fold ``probabilities``): among the cuts
    that keep ``ANSWERABLE_FLOOR`` of the answerable rows answered and label at most ``partial_cap`` of them
    partial (default ``PARTIAL_CAP``), the one whose least-handled class fares best, then the most handled in all,
    then the cuts nearest 0.5 (none keeps both: the one answering most)."""
    cap = PARTIAL_CAP if partial_cap is None else partial_cap
    y = _classes(rows)
    answerable = y == 0
    never = np.zeros(len(y), dtype=bool)
    says = {  # each head's verdicts at each cut of the grid, worked out once
        h: [probabilities[h] >= t if h in probabilities else never for t in _GRID]
        for h in ("underspecified", "unanswerable", "partial")
    }
    best: tuple[Any, ...] | None = None
    chosen: dict[str, float] = {}
    for (iu, tu), (ia, ta), (ip, tp) in itertools.product(enumerate(_GRID), repeat=3):
        verdicts = _in_order(says["underspecified"][iu], says["unanswerable"][ia], says["partial"][ip])
        handled = _handled(y, verdicts)
        shares = [s for s in handled if s is not None]
        answered = handled[0]
        share = _share_partial(answerable, verdicts)
        keeps = (answered is None or answered >= ANSWERABLE_FLOOR) and share <= cap
        key = (
            keeps, round(min(shares), 6) if keeps else round(answered or 0.0, 6), round(sum(shares), 6),
            -round(abs(tu - 0.5) + abs(ta - 0.5) + abs(tp - 0.5), 6),
        )  # fmt: skip
        if best is None or key > best:
            best = key
            chosen = {"underspecified": float(tu), "unanswerable": float(ta), "partial": float(tp)}
    return chosen


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
        "version": RECIPE_VERSION, "l2": l2, "heads": {k: list(v[0]) for k, v in _HEADS.items()},
        "cross-fit": [FOLDS, ANSWERABLE_FLOOR, PARTIAL_CAP, GATE_ANSWERS, GATE_REFUSES],
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
