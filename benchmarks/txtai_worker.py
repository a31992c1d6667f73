"""The txtai side of ``benchmarks/retrieval.py``; runs in its own venv (``.bench/txtai-venv``).

txtai is configured as its documentation shows for hybrid search: ``hybrid=True`` (BM25 with
normalised scores + dense vectors, fused by a 50/50 convex combination), with the same
embedding model directory grounded uses. Documents are indexed whole as ``title + text`` (the
BEIR convention), one vector per document. The index is saved and reused, with the ingest time
and memory measured when it was built. Prints one JSON object on stdout.

Usage: ``.bench/txtai-venv/bin/python benchmarks/txtai_worker.py --data D --split test --model M --index DIR``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beir_eval import evaluate, load_qrels, load_queries, peak_rss_mib, percentile, read_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", required=True, help="sentence-transformers model directory")
    parser.add_argument("--index", type=Path, required=True, help="where the txtai index is saved")
    parser.add_argument("--rebuild", action="store_true", help="rebuild even when the index exists")
    args = parser.parse_args()

    from txtai import Embeddings  # type: ignore[import-not-found]

    qrels = load_qrels(args.data, args.split)
    queries = load_queries(args.data, qrels)

    record = args.index / "bench-ingest.json"
    if args.rebuild or not record.exists():
        started = time.perf_counter()
        embeddings = Embeddings(path=args.model, hybrid=True, content=False)
        embeddings.index((doc_id, f"{title} {text}".strip(), None) for doc_id, title, text in read_corpus(args.data))
        embeddings.save(str(args.index))
        info = {
            "ingest_s": time.perf_counter() - started,
            "ingest_peak_rss_mib": peak_rss_mib(),
            "built_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "reused": False,
        }
        record.write_text(json.dumps(info))
    else:
        embeddings = Embeddings()
        embeddings.load(str(args.index))
        info = {**json.loads(record.read_text()), "reused": True}

    latencies: list[float] = []
    for text in queries.values():  # k=10 one query at a time, as a server would see them
        t0 = time.perf_counter()
        embeddings.search(text, 10)
        latencies.append((time.perf_counter() - t0) * 1000)

    qids = list(queries)
    results = embeddings.batchsearch([queries[q] for q in qids], 100)
    run = {q: [str(uid) for uid, _ in hits] for q, hits in zip(qids, results, strict=True)}
    ndcg, recall = evaluate(run, qrels)
    print(
        json.dumps(
            {
                "system": "txtai hybrid",
                "ndcg10": ndcg,
                "recall100": recall,
                "units": embeddings.count(),
                "p50_ms": percentile(latencies, 50),
                "p95_ms": percentile(latencies, 95),
                **info,
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


if __name__ == "__main__":
    main()
