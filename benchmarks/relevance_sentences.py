"""How well a checks model tells the sentence that answers a question from its on-topic neighbours.

    python benchmarks/relevance_sentences.py --data ../shared/data --checks DIR [DIR ...] [--json OUT]

The one-sentence relevance (``gate.relevance``: the ``answerable`` head reading the question against
one sentence) picks the answer path's fallback quote and weighs in the answer decision. Its pairs are
ClapNQ's (:func:`~grounded.checks.sources.clapnq_sentence_pairs`): a selected sentence (answers), the
other sentences of its passage closest to the question (on topic, do not answer), the closest sentence
of the nearest question's passage, and the closest sentences of unanswerable questions' passages.
Only the questions of the ``dev`` and ``test`` splits (never trained on) are scored.

Per model and split: AUC of answering against every other sentence and against its passage's other
sentences alone (the hard ones), and the share of answerable questions whose best-scored sentence of
their own passage is one the annotators selected (what the fallback quote needs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grounded.checks.data import Pair
    from grounded.checks.model import CrossEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def similarities(pairs: list[Pair]) -> list[float]:
    """The default embedder's cosine of each pair's question (as a query) to its sentence: the reference ranker."""
    from grounded.experts.embedding import SentenceEmbedder

    embedder = SentenceEmbedder.shared()
    vectors = embedder.embed([p.evidence for p in pairs])
    return [float(v @ embedder.embed_query(p.text)) for v, p in zip(vectors, pairs, strict=True)]


def figures(model: CrossEncoder | None, pairs: list[Pair]) -> dict[str, float | int]:
    """AUCs and the share of questions whose top sentence of their own passage answers (``model`` None:
    ranked by :func:`similarities`)."""
    from grounded.checks.metrics import auc

    if model is None:
        scores: Any = similarities(pairs)
    else:
        scores = model.score([p.text for p in pairs], [p.evidence for p in pairs], "answerable")
    labels = [p.label for p in pairs]
    own = [i for i, p in enumerate(pairs) if p.kind in {"answering_sentence", "beside_sentence"}]
    by_question: dict[str, list[int]] = defaultdict(list)
    for i in own:
        by_question[pairs[i].group].append(i)
    ranked = [ids for ids in by_question.values() if {labels[i] for i in ids} == {0, 1}]
    top = [labels[max(ids, key=lambda i: float(scores[i]))] for ids in ranked]
    return {
        "pairs": len(pairs),
        "auc_all": round(auc(labels, scores), 4),
        "auc_own_passage": round(auc([labels[i] for i in own], [scores[i] for i in own]), 4),
        "questions_ranked": len(ranked),
        "top_sentence_answers": round(sum(top) / max(1, len(top)), 4),
    }


def main(argv: list[str] | None = None) -> int:
    from grounded.checks.data import split_of
    from grounded.checks.model import CrossEncoder
    from grounded.checks.sources import clapnq_sentence_pairs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a folder in the ../shared/data layout (clapnq/)")
    ap.add_argument("--checks", type=Path, nargs="+", required=True, help="trained checks model directories")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    pairs = list(clapnq_sentence_pairs(args.data))
    report: dict[str, dict[str, object]] = {}
    for directory in args.checks:
        model = CrossEncoder(directory)
        report[directory.name] = {
            split: figures(model, [p for p in pairs if split_of(p.group) == split]) for split in ("dev", "test")
        }
        print(directory.name, json.dumps(report[directory.name]), flush=True)
    report["embedding similarity"] = {
        split: figures(None, [p for p in pairs if split_of(p.group) == split]) for split in ("dev", "test")
    }
    print("embedding similarity", json.dumps(report["embedding similarity"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
