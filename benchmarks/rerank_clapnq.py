"""The reranker on ClapNQ dev: where the gold passage of each answerable question ranks.

    .venv/bin/python benchmarks/rerank_clapnq.py --data ../shared/data/clapnq [--json OUT]

Builds (or reuses) a knowledge base of ``derived_dev_passages.jsonl`` in ``--work`` (the one
``benchmarks/answers.py`` builds has the same layout: pass its folder), asks each answerable
question (150) with hybrid search, then again with the top ``--rerank-k`` reranked by the
active reranker (or ``--rerank-model DIR``), and prints, per system, the share of questions
whose gold passage (the question's first passage, matched by text) is ranked 1st, in the top 3
and top 5, MRR@10 and the time the stage added (p50 / p95). No ClapNQ question or passage is
trained on by the SciFact or pseudo-query recipes, so all 150 are held out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import add_json_option, write_json
from beir_eval import percentile

ROOT = Path(__file__).resolve().parent.parent


def _gold(data: Path) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Answerable ``(question, gold passage text)`` and each corpus text's ``_id``."""
    ids = {}
    with open(data / "derived_dev_passages.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            ids[rec["text"]] = str(rec["_id"])
    with open(data / "dev_answerable.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [(r["input"], r["passages"][0]["text"]) for r in rows], ids


def _figures(ranks: list[int | None], added: list[float] | None) -> dict[str, Any]:
    n = len(ranks)
    out: dict[str, Any] = {
        f"gold@{k}": round(sum(1 for r in ranks if r is not None and r <= k) / n, 4) for k in (1, 3, 5, 10)
    }
    out["mrr10"] = round(sum(1 / r for r in ranks if r is not None and r <= 10) / n, 4)
    if added is not None:
        out["added_p50_ms"], out["added_p95_ms"] = percentile(added, 50), percentile(added, 95)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "clapnq")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "clapnq", help="holds kb/ (built if missing)")
    parser.add_argument("--rerank-model", type=Path, help="a reranker directory (default: the active one)")
    parser.add_argument("--rerank-k", type=int, action="append", help="fused results reranked (repeatable)")
    parser.add_argument("--rerank-weight", type=float, action="append", help="model order's weight (repeatable)")
    add_json_option(parser)
    args = parser.parse_args(argv)

    import grounded
    from grounded.checks.rerank import active_reranker_dir
    from grounded.config import SearchSettings
    from grounded.retrieval.rerank import Reranker, rerank

    directory = args.rerank_model or active_reranker_dir()
    if directory is None:
        sys.exit("no reranker trained: `grounded tune reranker` or benchmarks/retrieval.py --train-rerank")
    kb = grounded.open(args.work / "kb", search={"rerank": "off"})
    if kb.version is None:
        corpus = args.work / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        if not (corpus / "corpus.jsonl").exists():
            (corpus / "corpus.jsonl").symlink_to((args.data / "derived_dev_passages.jsonl").resolve())
        kb.ingest(corpus, source="clapnq")
    questions, ids = _gold(args.data)
    reranker = Reranker(Path(directory))
    ks = args.rerank_k or [SearchSettings().rerank_k]
    weights = args.rerank_weight or [SearchSettings().rerank_weight]
    depth = max(20, *ks)
    fused = {q: list(kb.search(q, k=depth)) for q, _ in questions}
    reranker.score("warm up", fused[questions[0][0]][:1])

    def rank(hits: Sequence[Any], gold_text: str) -> int | None:
        seen: list[str] = []
        for h in hits:
            key = h.key.rsplit("#", 1)[-1]
            if key not in seen:
                seen.append(key)
        gold = ids.get(gold_text)
        return seen.index(gold) + 1 if gold in seen else None

    rows = [{"system": "hybrid", **_figures([rank(fused[q], g) for q, g in questions], None)}]
    for k in ks:
        for w in weights:
            settings = kb.settings.search.model_copy(update={"rerank": "auto", "rerank_k": k, "rerank_weight": w})
            ranks, added = [], []
            for q, g in questions:
                t0 = time.perf_counter()
                hits, _ = rerank(q, fused[q], reranker, settings)
                added.append((time.perf_counter() - t0) * 1000)
                ranks.append(rank(hits, g))
            rows.append({"system": f"hybrid + rerank k={k} w={w:g}", **_figures(ranks, added)})
    head = ("system", "gold@1", "gold@3", "gold@5", "gold@10", "MRR@10", "added p50/p95 ms")
    print("| " + " | ".join(head) + " |\n|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        added_cell = f"{r['added_p50_ms']:.1f} / {r['added_p95_ms']:.1f}" if "added_p50_ms" in r else "—"
        cells = [r["system"], *(f"{r[f'gold@{k}']:.3f}" for k in (1, 3, 5, 10)), f"{r['mrr10']:.3f}", added_cell]
        print("| " + " | ".join(cells) + " |")
    print(f"\nClapNQ dev: {len(questions)} answerable questions; reranker {reranker.fingerprint}")
    write_json(args.json, {"questions": len(questions), "model": reranker.fingerprint, "rows": rows})


if __name__ == "__main__":
    main()
