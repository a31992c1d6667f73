"""Versions that scale: what publishing a small change costs on a large knowledge base, and
search over several parts (segments or shards) against one index.

    .venv/bin/python benchmarks/scale.py [--chunks 200000] [--change 0.01] [--shard-chunks 50000] \\
        [--data DIR] [--json OUT]

1. A synthetic knowledge base of ``--chunks`` one-chunk documents (60 words each from a
   Zipf-distributed vocabulary of 30k made-up words) is built with a deterministic hash
   embedder (32-d random vectors: the pipeline without the model's cost; embedding 200k
   chunks with the real model takes hours on 2 cores) and no evidence sentences.
2. ``--change`` of the documents get new text and the next version is published: its seconds
   and the bytes it wrote, against a full copy of the version (what a writer copied into
   ``staging/`` before segments, timed here with ``shutil.copytree``).
3. The segmented version is opened (BM25 merged from both segments) and searched; then a
   compaction merges it into one segment, and BM25 must return the same top 10 on both (the
   dense side too when its indexes are exact; above 100k chunks a segment's index is IVF,
   trained on its own vectors, so hybrid top 10s may differ where IVF misses).
4. Shards: the first ``--shard-chunks`` chunks split by document-id hash into 1, 2 and 4 parts,
   each with its own BM25 (DuckDB fts) and exact FAISS index; BM25 merged with global
   statistics, dense fanned out, fused with RRF. Top-10 overlap with the unsharded index and
   the p50/p95 a query spends more than on the unsharded one. ``--ray-shards``: the dense side of
   2 and 4 shards also searched by Ray actors, one per shard file (``[scale] search = "ray"``).

5. Ingestion (``--scifact DIR``): the first ``--ingest-docs`` documents of SciFact's
   ``corpus.jsonl`` ingested with the real encoder (chunks and evidence sentences) locally on one
   core, then on a local Ray cluster with 1 and 2 embedding workers: docs/s, the scaling factor
   Ray-2 / Ray-1, Ray-1 / local, and the version compared with the local one (top 10 of every
   SciFact test query, nDCG@10 over the queries whose relevant documents were ingested).

``--data DIR`` keeps the knowledge base there (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import add_json_option, write_json  # noqa: E402
from connectors.base import Document, Page  # noqa: E402
from grounded.config import Settings  # noqa: E402
from grounded.ingest.builder import VersionBuilder  # noqa: E402
from grounded.retrieval.ray_cluster import connect_ray  # noqa: E402
from grounded.retrieval.ray_shards import RayShardIndex, ShardPart  # noqa: E402
from grounded.retrieval.search import fuse, search  # noqa: E402
from grounded.retrieval.snapshot import Snapshot  # noqa: E402
from indexes.bm25 import Bm25Postings  # noqa: E402
from indexes.duckdb_store import fts_extension_path  # noqa: E402
from indexes.faiss_index import VectorIndex  # noqa: E402
from indexes.fanout import FanOutIndex  # noqa: E402
from indexes.versions import VersionStore  # noqa: E402


class HashEmbedder:
    """32-d unit vectors seeded by a hash of each text: deterministic, one text = one vector."""

    fingerprint = "bench-hash-embedder-32"
    dim = 32

    def embed(self, texts: list[str], *, progress: bool = False, all_cores: bool = False) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.dim)
        unit: np.ndarray = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit

    def embed_query(self, text: str) -> np.ndarray:
        row: np.ndarray = self.embed([text])[0]
        return row


def _words(n: int, rng: np.random.Generator) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, size=int(rng.integers(4, 10)))) for _ in range(n)]


def _texts(n: int, vocab: list[str], rng: np.random.Generator, length: int = 60) -> list[str]:
    ranks = np.minimum(rng.zipf(1.2, size=(n, length)), len(vocab)) - 1
    return [" ".join(vocab[r] for r in row) for row in ranks]


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _publish(versions: VersionStore, settings: Settings, docs: list[Document], page: int = 5000) -> float:
    started = time.perf_counter()
    with VersionBuilder(versions, HashEmbedder(), settings, sentences=False) as builder:  # type: ignore[arg-type]
        for lo in range(0, len(docs), page):
            builder.apply_page("synthetic", "docs", Page(docs[lo : lo + page]))
        builder.publish()
    return time.perf_counter() - started


def _top(
    snapshot: Snapshot, settings: Settings, queries: list[str], mode: str = "hybrid"
) -> tuple[list[list[int]], list[float]]:
    found: list[list[int]] = []
    took: list[float] = []
    for q in queries:
        started = time.perf_counter()
        hits = search(snapshot, HashEmbedder(), q, k=10, settings=settings.search, mode=mode)  # type: ignore[arg-type]
        took.append((time.perf_counter() - started) * 1000)
        found.append([h.chunk_id for h in hits])
    return found, took


def publish_cost(data: Path, n: int, change: float, queries: list[str], vocab: list[str]) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    settings = Settings(kb_path=data / "kb", keep_versions=3)
    versions = VersionStore.open(data / "kb", create=True, keep=3)
    texts = _texts(n, vocab, rng)
    docs = [Document(key=f"doc{i:07d}", text=t) for i, t in enumerate(texts)]
    first_s = _publish(versions, settings, docs)
    first = versions.current()
    assert first is not None
    full_bytes = _bytes(first.path)
    started = time.perf_counter()
    shutil.copytree(first.path, data / "full-copy")
    copy_s = time.perf_counter() - started
    shutil.rmtree(data / "full-copy")

    changed = rng.choice(n, size=max(1, int(n * change)), replace=False)
    fresh = _texts(len(changed), vocab, rng)
    updates = [Document(key=f"doc{i:07d}", text=t) for i, t in zip(changed.tolist(), fresh, strict=True)]
    refresh_s = _publish(versions, settings, updates)
    second = versions.current()
    assert second is not None
    refresh_bytes = _bytes(second.path)

    started = time.perf_counter()
    segmented = Snapshot.open(second)
    open_s = time.perf_counter() - started
    seg_top, seg_ms = _top(segmented, settings, queries)
    seg_bm25, _ = _top(segmented, settings, queries, "bm25")

    # A full compaction of the same documents: one segment, which must search the same.
    compact = Settings(kb_path=data / "kb", keep_versions=3, index={"compact_ratio": 1e-9})
    touch = [Document(key=updates[0].key, text=updates[0].text + " compacted")]
    compact_s = _publish(versions, compact, touch)
    third = versions.current()
    assert third is not None
    started = time.perf_counter()
    one = Snapshot.open(third)
    open_one_s = time.perf_counter() - started
    one_top, one_ms = _top(one, settings, queries)
    one_bm25, _ = _top(one, settings, queries, "bm25")

    def same(a_rows: list[list[int]], b_rows: list[list[int]]) -> str:
        # The touched document's chunk id changed; compare the others.
        touched = {h for row in a_rows for h in row} ^ {h for row in b_rows for h in row}
        equal = sum(
            [c for c in a if c not in touched] == [c for c in b if c not in touched]
            for a, b in zip(a_rows, b_rows, strict=True)
        )
        return f"{equal}/{len(a_rows)}"

    return {
        "chunks": n,
        "changed_documents": len(changed),
        "first_build_s": round(first_s, 2),
        "full_copy_bytes": full_bytes,
        "full_copy_s": round(copy_s, 3),
        "refresh_s": round(refresh_s, 3),
        "refresh_bytes": refresh_bytes,
        "refresh_bytes_share": round(refresh_bytes / full_bytes, 4),
        "segments": second.segment_ids,
        "open_segmented_s": round(open_s, 2),
        "open_one_segment_s": round(open_one_s, 2),
        "dense_index": {s: c.get("kind") for s, c in second.segment_indexes.items()},
        "search_p50_ms_segmented": round(float(np.percentile(seg_ms, 50)), 2),
        "search_p50_ms_one_segment": round(float(np.percentile(one_ms, 50)), 2),
        "compaction_s": round(compact_s, 2),
        "same_top10_bm25_after_compaction": same(seg_bm25, one_bm25),
        "same_top10_hybrid_after_compaction": same(seg_top, one_top),
    }


def sharded(data: Path, n: int, queries: list[str], vocab: list[str], *, ray: Any = None) -> dict[str, Any]:
    """1, 2 and 4 shards by document-id hash against one index over the same chunks; with
    ``ray``, the dense side of 2 and 4 shards also searched by Ray actors (one per shard file)."""
    rng = np.random.default_rng(2)
    texts = _texts(n, vocab, rng)
    ids = np.arange(1, n + 1, dtype=np.int64) * 7919
    docs = [f"doc{i:07d}" for i in range(n)]
    vectors = HashEmbedder().embed(texts)
    settings = Settings().search
    out: dict[str, Any] = {"chunks": n}
    results: dict[str, tuple[list[list[int]], list[float]]] = {}

    def run(con: duckdb.DuckDBPyConnection, postings: Bm25Postings, dense: Any) -> tuple[list[list[int]], list[float]]:
        found: list[list[int]] = []
        took: list[float] = []
        for q in queries:
            started = time.perf_counter()
            bm25 = postings.top(con, q, settings.candidates)
            scores, hit = dense.search(HashEmbedder().embed_query(q)[None, :], settings.candidates)
            fused = fuse(bm25, [(int(i), float(x)) for i, x in zip(hit[0], scores[0], strict=True) if i >= 0], settings)
            took.append((time.perf_counter() - started) * 1000)
            found.append([c for c, _ in fused[:10]])
        return found, took

    for shards in (1, 2, 4):
        part = np.array([int(hashlib.blake2b(d.encode(), digest_size=4).hexdigest(), 16) % shards for d in docs])
        con = duckdb.connect(":memory:")
        con.execute(f"LOAD '{fts_extension_path()}'")
        indexes = []
        for s in range(shards):
            path = data / f"shard{shards}-{s}.duckdb"
            path.unlink(missing_ok=True)
            with duckdb.connect(str(path)) as shard:
                shard.execute(f"LOAD '{fts_extension_path()}'")
                shard.execute("CREATE TABLE chunks (chunk_id BIGINT, search_text VARCHAR)")
                keep = np.flatnonzero(part == s)
                shard.executemany("INSERT INTO chunks VALUES (?, ?)", [(int(ids[i]), texts[i]) for i in keep])
                shard.execute(
                    "PRAGMA create_fts_index('chunks', 'chunk_id', 'search_text', overwrite=1, "
                    "stemmer='porter', stopwords='english', strip_accents=1, lower=1)"
                )
            con.execute(f"ATTACH '{path}' AS shard{s} (READ_ONLY)")
            indexes.append(VectorIndex.build(ids[keep], vectors[keep]))
        postings = Bm25Postings.merge(con, [(f"shard{s}", "SELECT NULL::BIGINT WHERE false") for s in range(shards)])
        results[f"shards_{shards}"] = run(con, postings, FanOutIndex(indexes))
        if ray is not None and shards > 1:
            parts = []
            for s, index in enumerate(indexes):
                index.save(data / f"shard{shards}-{s}.faiss")
                parts.append(ShardPart("bench", data / f"shard{shards}-{s}.faiss", index.choice, np.zeros(0, np.int64)))
            results[f"ray_shards_{shards}"] = run(con, postings, RayShardIndex(ray, parts))
        con.close()
    base_found, base_ms = results["shards_1"]
    for name, (found, took) in results.items():
        overlap = np.mean([len(set(a) & set(b)) / max(len(a), 1) for a, b in zip(found, base_found, strict=True)])
        added = np.array(took) - np.array(base_ms)
        out[name] = {
            "top10_overlap": round(float(overlap), 4),
            "p50_ms": round(float(np.percentile(took, 50)), 3),
            "p95_ms": round(float(np.percentile(took, 95)), 3),
            "added_p50_ms": round(float(np.percentile(added, 50)), 3),
            "added_p95_ms": round(float(np.percentile(added, 95)), 3),
        }
    return out


def ingestion(data: Path, scifact: Path, docs: int) -> dict[str, Any]:
    """Local vs Ray ingestion of SciFact documents (see the module docstring, 5)."""
    import os

    import ray

    import grounded
    from benchmarks.beir_eval import evaluate, load_qrels, load_queries

    corpus = data / "scifact-ingest" / "corpus.jsonl"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    with (scifact / "corpus.jsonl").open(encoding="utf-8") as src, corpus.open("w", encoding="utf-8") as out:
        for _, line in zip(range(docs), src, strict=False):
            out.write(line)
    ingested = {json.loads(line)["_id"] for line in corpus.read_text(encoding="utf-8").splitlines()}
    qrels = {q: rel for q, rel in load_qrels(scifact, "test").items() if set(rel) <= ingested}
    queries = load_queries(scifact, qrels)
    out: dict[str, Any] = {"documents": len(ingested), "queries": len(queries), "cpus": os.cpu_count()}
    runs: dict[str, dict[str, list[str]]] = {}
    for name, workers in (("local", 0), ("ray_1", 1), ("ray_2", 2)):
        path = data / f"ingest-{name}"
        shutil.rmtree(path, ignore_errors=True)
        cores = os.sched_getaffinity(0)
        if workers:
            ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False)
            kb = grounded.open(path, scale={"engine": "ray", "workers": workers})
        else:
            os.sched_setaffinity(0, {min(cores)})  # one core: the local path's one worker
            kb = grounded.open(path)
        kb.embedder.embed(["warm up"])  # the driver's model load is not ingestion
        started = time.perf_counter()
        stats = kb.ingest(corpus, source="scifact")
        seconds = time.perf_counter() - started
        os.sched_setaffinity(0, cores)
        if workers:
            ray.shutdown()
        run = {}
        for qid, text in queries.items():
            keys = [h.key for h in kb.search(text, k=10)]
            run[qid] = list(dict.fromkeys(k.rsplit("#", 1)[-1] for k in keys))
        runs[name] = run
        ndcg, _ = evaluate(run, qrels)
        out[name] = {
            "seconds": round(seconds, 2),
            "docs_per_s": round(len(ingested) / seconds, 2),
            "chunks_embedded": stats.chunks_embedded,
            "sentences_embedded": stats.sentences_embedded,
            "ndcg10": round(ndcg, 4),
            "same_top10_as_local": runs[name] == runs["local"],
        }
        print(name, out[name], flush=True)
    out["ray_2_over_ray_1"] = round(out["ray_2"]["docs_per_s"] / out["ray_1"]["docs_per_s"], 3)
    out["ray_1_over_local"] = round(out["ray_1"]["docs_per_s"] / out["local"]["docs_per_s"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--shard-chunks", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", type=Path, default=None, help="where to build (default: a temporary directory)")
    parser.add_argument("--scifact", type=Path, default=None, help="SciFact (BEIR) folder: measure ingestion")
    parser.add_argument("--ingest-docs", type=int, default=5183, help="SciFact documents ingested")
    parser.add_argument("--skip-publish", action="store_true", help="only the ingestion part (with --scifact)")
    parser.add_argument(
        "--ray-shards", action="store_true", help="also search the shards on Ray actors (a local cluster, 2 CPUs)"
    )
    add_json_option(parser)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vocab = _words(30_000, rng)
    queries = [" ".join(t.split()[:4]) for t in _texts(args.queries, vocab, rng)]
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        figures: dict[str, Any] = {}
        if args.scifact:
            figures["ingestion"] = ingestion(data, args.scifact, args.ingest_docs)
            print(figures["ingestion"], flush=True)
        if args.skip_publish:
            write_json(args.json, figures)
            return
        figures["publish"] = publish_cost(data, args.chunks, args.change, queries, vocab)
        print(figures["publish"], flush=True)
        if args.shard_chunks:
            ray = connect_ray(Settings(), local_cpus=2) if args.ray_shards else None
            figures["shards"] = sharded(data, args.shard_chunks, queries, vocab, ray=ray)
            print(figures["shards"], flush=True)
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
