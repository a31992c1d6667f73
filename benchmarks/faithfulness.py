"""Faithfulness benchmark: does the checker flag the answers humans judged unfaithful?

    python benchmarks/faithfulness.py --data ../shared/data/mtrag/human_evaluations_dev.json [--json OUT]

Reads any file of the MT-RAG human-evaluation layout (``documents``, ``tasks`` with context
``document_id``s, ``evaluations`` with ``model_response`` and per-annotator ``faithfulness``
on 1-4). A response is *unfaithful* when the median faithfulness is <= 2. Each response is
split into sentences; each sentence is scored against the task's passages, and the response
score aggregates them as the model's calibration chose on its dev responses (the lowest
sentence score, or the mean). Side by side, in the same run:

* ``checker``: the active entailment checker (``grounded/checks``), flagging a response when its
  score is below the response threshold stored with the model (chosen on the model's dev
  split when it was trained, never on this file);
* ``lexical``: today's verifier (``grounded/answering/verify.py``, default settings): a response is
  flagged when any sentence fails ``check_support`` against all the task's passages; its
  score is the lowest sentence's margin (word share / min_word_support, similarity /
  min_sentence_similarity, 0 when a number or name is missing).

Prints balanced accuracy, AUC (of flagging unfaithful), recall of each class, per answering
model, and the checker's CPU time per claim (one thread; several windows a claim), for the whole file and for
each half of its conversations (:func:`grounded.checks.sources.human_halves`): a model calibrated
with this file in its data folder chose its response aggregation and threshold on half A, so half B
is the held-out figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np


@dataclass(frozen=True, slots=True)
class Judged:
    task_id: str
    model_id: str
    response: str
    passages: tuple[tuple[str, str], ...]  # (title, text)
    unfaithful: int
    median_faithfulness: float


def load(path: Path) -> list[Judged]:
    """The judged responses of an MT-RAG human-evaluation file, with their passages."""
    data = json.loads(path.read_text(encoding="utf-8"))
    docs = {d["document_id"]: (str(d.get("title") or ""), str(d["text"])) for d in data["documents"]}
    tasks = {t["task_id"]: t for t in data["tasks"]}
    out = []
    for e in data["evaluations"]:
        task = tasks[e["task_id"]]
        marks = [float(v["value"]) for v in e["annotations"]["faithfulness"].values()]
        median = statistics.median(marks)
        passages = tuple(docs[c["document_id"]] for c in task["contexts"] if c["document_id"] in docs)
        out.append(Judged(e["task_id"], e["model_id"], e["model_response"], passages, int(median <= 2), median))
    return out


def figures(unfaithful: Sequence[int], flagged: Sequence[int], risk: Sequence[float]) -> dict[str, float]:
    """Balanced accuracy and recalls of the flag, AUC of ``risk`` (higher = more likely unfaithful)."""
    from grounded.checks.metrics import auc, balanced_accuracy, recall

    return {
        "balanced_accuracy": round(balanced_accuracy(unfaithful, flagged), 4),
        "auc": round(auc(unfaithful, risk), 4),
        "recall_unfaithful": round(recall(unfaithful, flagged, 1), 4),
        "recall_faithful": round(recall(unfaithful, flagged, 0), 4),
    }


def lexical_scores(items: Sequence[Judged]) -> tuple[list[int], list[float]]:
    """Today's verifier: (flagged, risk) per response."""
    from grounded.answering.evidence import EvidencePool, build_pool
    from grounded.answering.types import Citation
    from grounded.answering.verify import check_support
    from grounded.checks.text import split_sentences
    from grounded.config import AnswerSettings
    from grounded.experts.embedding import SentenceEmbedder

    settings = AnswerSettings()
    embedder = SentenceEmbedder.shared()
    flagged, risk = [], []
    pools: dict[str, EvidencePool] = {}  # the responses of one task share its passages: embed them once
    for item in items:
        citations = [
            Citation(i + 1, i + 1, f"d{i}", title, "", 0, len(text), text, "bench", None, 0.0)
            for i, (title, text) in enumerate(item.passages)
        ]
        sentences = split_sentences(item.response)
        if not sentences or not citations:
            flagged.append(0)
            risk.append(0.0)
            continue
        if item.task_id not in pools:
            # The pool's question similarity is unused by check_support; any text will do.
            pools[item.task_id] = build_pool(sentences[0], citations, embedder)
        pool = pools[item.task_id]
        vectors = embedder.embed(sentences)
        ids = tuple(c.id for c in citations)
        margins, supported = [], []
        for sentence, vector in zip(sentences, vectors, strict=True):
            check = check_support(sentence, vector, ids, pool, settings)
            supported.append(check.supported)
            margins.append(
                0.0
                if check.missing
                else min(
                    check.word_support / settings.min_word_support, check.similarity / settings.min_sentence_similarity
                )
            )
        flagged.append(int(not all(supported)))
        risk.append(-min(margins))
    return flagged, risk


def checker_scores(
    items: Sequence[Judged], model_dir: Path | None = None, *, combine: bool = True
) -> tuple[list[int], list[float], dict[str, Any]]:
    """The checker (the active model, or ``model_dir``): (flagged, risk) per response, and its
    timing. ``combine``: the model's logit with the lexical features, as the checker serves it
    when the model has a combination; otherwise the model's probability alone."""
    from grounded.checks.checker import EntailmentChecker, aggregate, claim_scores, claims_of
    from grounded.checks.model import CrossEncoder
    from grounded.checks.store import active_model_dir

    model = CrossEncoder(model_dir or active_model_dir())
    checker = EntailmentChecker(model, combine=combine)
    model.score(["warm-up"], ["the model loads on first use; not timed"])
    flagged, risk, pair_ms = [], [], []
    for item in items:
        texts = [t for _, t in item.passages]
        sentences = claims_of(item.response)
        if not sentences:  # a refusal, a question back or a list's bare markers: nothing to check
            flagged.append(0)
            risk.append(-1.0)
            continue
        start = time.thread_time()  # CPU time of this thread: what a claim costs one core, whatever the load
        # The served verdict: plain text, the joint and per-passage windows, model, lexical features, fragments.
        scores = claim_scores(checker.model, [(item.response, tuple(texts))], checker.combination)[0]
        pair_ms.append((time.thread_time() - start) * 1000 / len(sentences))
        score = aggregate(scores, checker.aggregation)
        flagged.append(int(score < checker.response_threshold))
        risk.append(-score)
    timing = {
        "claim_cpu_ms_mean": round(float(np.mean(pair_ms)), 2) if pair_ms else None,
        "model": model.fingerprint,
        "combined": checker.combination is not None,
        "response_threshold": checker.response_threshold,
        "aggregation": checker.aggregation,
        "threads": model.threads,
    }
    return flagged, risk, timing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mtrag/human_evaluations_dev.json"))
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--model", type=Path, help="a trained checks model directory (default: the active one)")
    ap.add_argument("--no-lexical", action="store_true", help="skip today's verifier (faster)")
    args = ap.parse_args(argv)
    from grounded.checks.sources import human_halves

    if not args.data.is_file():
        print(f"error: {args.data} not found (an MT-RAG human-evaluation file)", file=sys.stderr)
        return 2
    items = load(args.data)
    labels = [i.unfaithful for i in items]
    print(f"{len(items)} judged responses, {sum(labels)} unfaithful (median faithfulness <= 2)")
    report: dict[str, Any] = {"responses": len(items), "unfaithful": sum(labels)}
    systems: dict[str, tuple[list[int], list[float]]] = {}
    c_flag, c_risk, timing = checker_scores(items, args.model)
    systems["checker"] = (c_flag, c_risk)
    report["checker_timing"] = timing
    if timing["combined"]:  # the same model without the lexical features, side by side
        m_flag, m_risk, m_timing = checker_scores(items, args.model, combine=False)
        systems["model_only"] = (m_flag, m_risk)
        report["model_only_timing"] = m_timing
    if not args.no_lexical:
        systems["lexical"] = lexical_scores(items)
    models = sorted({i.model_id for i in items})
    sides = human_halves([i.task_id for i in items])
    parts = {"all": list(range(len(items)))} | {
        f"half {h}": [k for k, side in enumerate(sides) if side == h] for h in "AB"
    }
    print(
        "half A: its conversations choose the checker's response aggregation and threshold when the model is "
        "calibrated with this file in its data folder; half B: never chosen on"
    )
    print(
        f"{'system':<10} {'part':<7} {'n':>4} {'bal.acc':>8} {'AUC':>7} {'rec.unf':>8} {'rec.faith':>9}   "
        "per answering model (bal.acc)"
    )
    for name, (flag, risk) in systems.items():
        report[name] = {}
        for part, idx in parts.items():
            f = figures([labels[k] for k in idx], [flag[k] for k in idx], [risk[k] for k in idx])
            per = {}
            for m in models:
                sub = [k for k in idx if items[k].model_id == m]
                per[m] = figures([labels[k] for k in sub], [flag[k] for k in sub], [risk[k] for k in sub])
            entry = {**f, "responses": len(idx), "per_model": per}
            if part == "all":
                report[name].update(entry)
            else:
                report[name][part.replace(" ", "_")] = entry
            per_text = ", ".join(f"{m} {v['balanced_accuracy']:.3f}" for m, v in per.items())
            print(
                f"{name:<10} {part:<7} {len(idx):>4} {f['balanced_accuracy']:>8.3f} {f['auc']:>7.3f} "
                f"{f['recall_unfaithful']:>8.3f} {f['recall_faithful']:>9.3f}   {per_text}"
            )
    print(f"checker: {timing}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
