"""Past one machine: publish cost of a small change, sharded search, Ray ingestion.

    .venv/bin/python benchmarks/scale.py --data ../shared/data/scifact --json .bench/scale.json
    .venv/bin/python benchmarks/scale.py --parts publish --chunks 200000

Parts (``--parts``, default all):

- ``publish``: a synthetic knowledge base of ``--chunks`` one-chunk documents (real chunking,
  DuckDB, fts and FAISS through ``VersionBuilder``; vectors from a fast deterministic stand-in for
  the encoder, clustered so the FAISS factory behaves as on real text). Then 1% of the documents
  change and the next version is published: seconds and bytes written, against copying the
  version (what a writer did before segments: ``copytree`` of store and vectors, fsynced).
- ``shards``: SciFact (``--data``) ingested once; the same chunks and vectors in knowledge bases
  of 1, 2 and 4 shards; every test query's top-10 (hybrid, bm25, dense) compared with the
  unsharded one, and the search latency each adds (p50/p95 of the per-query difference).
- ``ingest``: SciFact ingested locally, then with ``--engine ray`` on a local Ray cluster with 1
  and 2 embedding workers: documents per second, and nDCG@10 of each KB on the test queries.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import add_json_option, write_json
from beir_eval import evaluate, load_qrels, load_queries, percentile

ROOT = Path(__file__).resolve().parent.parent


# -- publish cost -----------------------------------------------------------------------------------


class ClusteredHashEmbedder:
    """A stand-in for the encoder: each text's vector is a cluster centre (from its first word)
    plus noise seeded by its hash, normalised. Deterministic and ~100x faster than MiniLM."""

    fingerprint = "synthetic-clustered-hash-384"
    dim = 384

    def __init__(self, clusters: int = 256) -> None:
        rng = np.random.default_rng(7)
        self.centres = rng.normal(size=(clusters, self.dim)).astype(np.float32)

    def embed(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            noise = np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)
            out[i] = self.centres[seed % len(self.centres)] + 0.6 * noise
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


VOCABULARY = [f"w{i}" for i in range(20_000)]


def _words(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    ranks = np.minimum(rng.zipf(1.2, size=n) - 1, len(VOCABULARY) - 1)
    return [VOCABULARY[r] for r in ranks]


def _document(i: int, revision: int = 0) -> Any:
    from connectors.base import Document

    words = _words(70, seed=i * 7 + revision)
    return Document(key=f"doc-{i}", title=f"Document {i}", text=" ".join(words) + ".")


def _size(paths: list[Path]) -> int:
    total = 0
    seen: set[int] = set()
    for path in paths:
        for f in [path] if path.is_file() else path.rglob("*"):
            if f.is_file() and f.stat().st_ino not in seen:
                seen.add(f.stat().st_ino)
                total += f.stat().st_size
    return total


def _copy_version(version: Any, target: Path) -> tuple[float, int]:
    """What publishing cost before segments: the whole version copied (and fsynced)."""
    started = time.perf_counter()
    sources = [version.path, *(version.segment_path(s["id"]) for s in version.segments)]
    for n, src in enumerate(sources):
        shutil.copytree(src, target / str(n))
    for f in target.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    return time.perf_counter() - started, _size([target])


def publish_cost(chunks: int, work: Path, keep_base: bool) -> dict[str, Any]:
    from connectors.base import Page
    from grounded.config import load_settings
    from grounded.ingest.builder import VersionBuilder
    from indexes.versions import VersionStore

    root = work / "publish-kb"
    reuse = keep_base and (root / "CURRENT").exists()
    if not reuse:
        shutil.rmtree(root, ignore_errors=True)
    settings = load_settings(kb_path=root)
    versions = VersionStore.open(root, create=True, keep=2)
    embedder: Any = ClusteredHashEmbedder()
    page = 20_000
    started = time.perf_counter()
    build_s: float | None = None
    if not reuse:
        with VersionBuilder(versions, embedder, settings) as builder:
            for start in range(0, chunks, page):
                builder.apply_page(
                    "synthetic", "docs", Page([_document(i) for i in range(start, min(chunks, start + page))])
                )
            builder.publish()
        build_s = round(time.perf_counter() - started, 1)
    base = versions.current()
    assert base is not None
    full_bytes = _size([base.path, *(base.segment_path(s["id"]) for s in base.segments)])
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        copy_s, copy_bytes = _copy_version(base, Path(tmp))
    print(f"base: {chunks} chunks, {full_bytes / 2**20:.0f} MiB, built in {build_s} s; copy {copy_s:.1f} s")
    from indexes.faiss_index import IndexChoice, VectorIndex
    from indexes.versions import SEGMENT_STORE, VECTORS_FILE

    largest = max(base.segments, key=lambda seg: int(seg["chunks"]))
    folder = base.segment_path(largest["id"])
    index = VectorIndex.load(folder / VECTORS_FILE, IndexChoice(**largest["index"]))
    memory = {
        "index": largest["index"],
        "vector_index_bytes_per_chunk": round(index.memory_bytes() / index.ntotal, 1),
        "segment_store_bytes_per_chunk": round((folder / SEGMENT_STORE).stat().st_size / index.ntotal, 1),
    }
    print(f"memory: {memory}")

    changed = list(range(0, chunks, 100))  # 1%
    rounds = []
    first = int(base.id) * 10  # a new text for every run, also on a kept base
    for revision in (first + 1, first + 2):
        before = {p.name for p in (root / "segments").iterdir()}
        started = time.perf_counter()
        with VersionBuilder(versions, embedder, settings) as builder:
            builder.apply_page("synthetic", "docs", Page([_document(i, revision) for i in changed]))
            builder.publish()
        seconds = time.perf_counter() - started
        now = versions.current()
        assert now is not None
        new_segments = [root / "segments" / p for p in {p.name for p in (root / "segments").iterdir()} - before]
        written = _size([now.path, *new_segments])
        rounds.append({"seconds": round(seconds, 2), "bytes_written": written, "segments": len(now.segments)})
        print(
            f"1% change #{revision}: {seconds:.2f} s, {written / 2**20:.1f} MiB written, {len(now.segments)} segments"
        )
    return {
        "chunks": chunks,
        "changed_documents": len(changed),
        "build_s": build_s,
        "version_bytes": full_bytes,
        "full_copy_s": round(copy_s, 2),
        "full_copy_bytes": copy_bytes,
        "refreshes": rounds,
        "memory": memory,
        "seconds_vs_copy": round(max(r["seconds"] for r in rounds) / copy_s, 4),
        "bytes_vs_copy": round(max(r["bytes_written"] for r in rounds) / copy_bytes, 4),
    }


# -- SciFact: shards and Ray ---------------------------------------------------------------------


def _run(kb: Any, queries: dict[str, str], mode: str = "hybrid") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for qid, text in queries.items():
        hits = kb.search(text, k=100, mode=mode)
        seen: dict[str, None] = {}
        for h in hits:
            seen.setdefault(h.key.rsplit("#", 1)[-1], None)
        out[qid] = list(seen)
    return out


def _stored_vectors(store_file: Path) -> dict[str, np.ndarray]:
    """``{text hash: embedding}`` from an earlier knowledge base's store (any format)."""
    import duckdb

    with duckdb.connect(str(store_file), read_only=True) as con:
        rows = con.execute("SELECT DISTINCT ON (text_hash) text_hash, embedding FROM chunks").fetchall()
    return {str(h): np.asarray(e, dtype=np.float32) for h, e in rows}


def _base_kb(data: Path, work: Path, vectors_from: Path | None) -> Any:
    import grounded
    from connectors.files import FilesConfig, FilesConnector
    from grounded.ingest.ray_engine import PrecomputedEmbedder
    from grounded.ingest.sync import sync_connector

    path = work / "scifact-1"
    kb = grounded.open(path)
    if kb.version is None:
        vectors = _stored_vectors(vectors_from) if vectors_from else {}
        embedder = PrecomputedEmbedder(kb.store.embedder, vectors)
        connector = FilesConnector(FilesConfig(path=data / "corpus.jsonl"))
        sync_connector(kb.store, "scifact", connector, embedder=embedder)
        print(f"base KB: {len(vectors)} stored vectors reused, {embedder.misses} texts embedded here")
    return kb


def sharded_search(data: Path, work: Path, vectors_from: Path | None) -> dict[str, Any]:
    import grounded
    from grounded.ingest.ray_engine import PrecomputedEmbedder

    base = _base_kb(data, work, vectors_from)
    qrels = load_qrels(data, "test")
    queries = load_queries(data, qrels)
    rows = base.snapshot().store.cursor().execute("SELECT text_hash, embedding FROM chunks").fetchall()
    vectors = {str(h): np.asarray(e, dtype=np.float32) for h, e in rows}
    for text in queries.values():  # warm the query-embedding cache: latencies compare search, not the encoder
        base.store.embedder.embed_query(text)
    result: dict[str, Any] = {"queries": len(queries)}
    for shards in (2, 4):
        path = work / f"scifact-{shards}"
        kb = grounded.open(path, scale={"shards": shards})
        if kb.version is None:
            from connectors.files import FilesConfig, FilesConnector
            from grounded.ingest.sync import sync_connector

            sync_connector(
                kb.store,
                "scifact",
                FilesConnector(FilesConfig(path=data / "corpus.jsonl")),
                embedder=PrecomputedEmbedder(kb.store.embedder, vectors),
            )
        same = {}
        for mode in ("hybrid", "bm25", "dense"):
            agree = total = 0
            for text in queries.values():
                a = [h.chunk_id for h in base.search(text, k=10, mode=mode)]  # type: ignore[arg-type]
                b = [h.chunk_id for h in kb.search(text, k=10, mode=mode)]  # type: ignore[arg-type]
                agree += len(set(a) & set(b))
                total += len(a)
                same[f"{mode}_identical_lists"] = same.get(f"{mode}_identical_lists", 0) + (a == b)
            same[f"{mode}_top10_overlap"] = round(agree / total, 4)
        added = []
        for _ in range(3):
            for text in queries.values():
                t0 = time.perf_counter()
                base.search(text, k=10)
                t1 = time.perf_counter()
                kb.search(text, k=10)
                t2 = time.perf_counter()
                added.append(((t2 - t1) - (t1 - t0)) * 1000)
        unsharded = []
        for text in queries.values():
            t0 = time.perf_counter()
            base.search(text, k=10)
            unsharded.append((time.perf_counter() - t0) * 1000)
        same["added_ms_p50"] = round(percentile(added, 50), 3)
        same["added_ms_p95"] = round(percentile(added, 95), 3)
        same["unsharded_ms_p50"] = round(percentile(unsharded, 50), 3)
        same["ndcg@10"] = round(evaluate(_run(kb, queries), qrels)[0], 4)
        result[f"{shards}_shards"] = same
        print(f"{shards} shards: {same}")
    result["1_shard_ndcg@10"] = round(evaluate(_run(base, queries), qrels)[0], 4)
    postings = base.snapshot().store.postings()
    chunks = base.stats()["chunks"]
    result["bm25_postings_bytes_per_chunk"] = round(postings.nbytes / chunks, 1) if postings else 0
    return result


def ray_ingest(data: Path, work: Path, limit: int | None) -> dict[str, Any]:
    import grounded

    source = data / "corpus.jsonl"
    if limit:
        source = work / "corpus-sample" / "corpus.jsonl"
        source.parent.mkdir(parents=True, exist_ok=True)
        with open(data / "corpus.jsonl", encoding="utf-8") as fh:
            source.write_text("".join(line for _, line in zip(range(limit), fh, strict=False)), encoding="utf-8")
    with open(source, encoding="utf-8") as fh:
        docs = sum(1 for _ in fh)
    qrels = load_qrels(data, "test")
    queries = load_queries(data, qrels)
    out: dict[str, Any] = {"documents": docs}
    import torch

    torch.set_num_threads(1)  # local on one core, as each Ray worker
    for label, engine, workers in (("local", "local", None), ("ray_1", "ray", 1), ("ray_2", "ray", 2)):
        path = work / f"ingest-{label}"
        shutil.rmtree(path, ignore_errors=True)
        kb = grounded.open(path)
        if engine == "ray":
            import ray

            if ray.is_initialized():
                ray.shutdown()
            ray.init(num_cpus=(workers or 1) + 1, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter()
        kb.ingest(source, source="scifact", engine=engine, workers=workers)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        ndcg = evaluate(_run(kb, queries), qrels)[0] if not limit else None
        out[label] = {"seconds": round(seconds, 1), "docs_per_s": round(docs / seconds, 1), "ndcg@10": ndcg}
        print(f"{label}: {out[label]}")
    out["ray_2_vs_ray_1"] = round(out["ray_1"]["seconds"] / out["ray_2"]["seconds"], 3)
    out["ray_1_vs_local"] = round(out["local"]["seconds"] / out["ray_1"]["seconds"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "scale")
    parser.add_argument("--parts", default="publish,shards,ingest", help="comma-separated: publish, shards, ingest")
    parser.add_argument("--chunks", type=int, default=1_000_000, help="size of the synthetic KB (publish)")
    parser.add_argument("--keep-base", action="store_true", help="publish: reuse the synthetic KB of an earlier run")
    parser.add_argument("--ingest-limit", type=int, default=None, help="ingest only the first N SciFact documents")
    parser.add_argument(
        "--vectors-from",
        type=Path,
        default=None,
        help="a store.duckdb of an earlier SciFact KB (same model and chunking): its embeddings seed the shards part",
    )
    add_json_option(parser)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"load_before": os.getloadavg()}
    parts = set(args.parts.split(","))
    if "publish" in parts:
        figures["publish"] = publish_cost(args.chunks, args.work, args.keep_base)
    if "shards" in parts:
        figures["shards"] = sharded_search(args.data, args.work, args.vectors_from)
    if "ingest" in parts:
        figures["ingest"] = ray_ingest(args.data, args.work, args.ingest_limit)
    figures["load_after"] = os.getloadavg()
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
