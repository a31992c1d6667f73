"""BEIR data and metrics, standard library only (the txtai worker imports it from its own venv).

nDCG@k follows BEIR/pytrec_eval: graded gains ``rel / log2(rank + 1)``, the ideal ranking built
from every judged-relevant document. Recall@k is the share of relevant documents found in the
top ``k``. Both are averaged over the queries that have judgements.
"""

from __future__ import annotations

import json
import math
import resource
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = [
    "Qrels",
    "evaluate",
    "load_qrels",
    "load_queries",
    "ndcg_at_k",
    "peak_rss_mib",
    "percentile",
    "read_corpus",
    "recall_at_k",
]

Qrels = dict[str, dict[str, int]]


def load_qrels(data: Path, split: str) -> Qrels:
    """``{query_id: {doc_id: relevance}}`` from ``qrels/<split>.tsv``."""
    qrels: Qrels = {}
    with open(data / "qrels" / f"{split}.tsv", encoding="utf-8") as fh:
        next(fh)  # header
        for line in fh:
            qid, did, rel = line.rstrip("\n").split("\t")
            if int(rel) > 0:
                qrels.setdefault(qid, {})[did] = int(rel)
    return qrels


def load_queries(data: Path, ids: Sequence[str] | set[str] | Mapping[str, object]) -> dict[str, str]:
    """Query texts for ``ids``, in the order of ``queries.jsonl``."""
    wanted = set(ids)
    out: dict[str, str] = {}
    with open(data / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec["_id"] in wanted:
                out[rec["_id"]] = rec["text"]
    return out


def read_corpus(data: Path) -> Iterator[tuple[str, str, str]]:
    """``(doc_id, title, text)`` of every record in ``corpus.jsonl``."""
    with open(data / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            yield str(rec["_id"]), str(rec.get("title") or ""), str(rec.get("text") or "")


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 100) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def evaluate(run: Mapping[str, Sequence[str]], qrels: Qrels) -> tuple[float, float]:
    """Mean ``(nDCG@10, Recall@100)`` of ``run`` (query id -> ranked doc ids) over ``qrels``."""
    ndcg = [ndcg_at_k(run.get(q, []), rel) for q, rel in qrels.items()]
    recall = [recall_at_k(run.get(q, []), rel) for q, rel in qrels.items()]
    return sum(ndcg) / len(ndcg), sum(recall) / len(recall)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
