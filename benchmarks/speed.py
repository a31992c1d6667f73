"""Speed, measured side by side in one run on this machine; prints one table per part.

    .venv/bin/python benchmarks/speed.py --data ../shared/data/scifact          # all three parts
    .venv/bin/python benchmarks/speed.py --only ingest|http|search|vectors

1. **ingest**: chunks/s of the whole pipeline (``kb.ingest`` of a SciFact sample: parse,
   chunk, embed, DuckDB writes, FAISS + BM25 build, publish) against bare
   ``SentenceTransformer.encode`` of exactly the same chunk texts with the same model object
   and batch size. The bare encoder runs before and after the pipeline; their mean is the
   reference, so drifting load on a shared machine favours neither side.
2. **http**: ``POST /v1/search`` latency (k=10) against ``grounded serve`` on the SciFact KB
   that ``benchmarks/retrieval.py`` builds, one request at a time, each test query once (so the
   query-embedding cache never hits).
3. **search**: in-process retrieval on that KB, each change against its baseline in the same
   run: BM25 through DuckDB's ``match_bm25`` vs the in-memory posting lists
   (:mod:`indexes.bm25`), and hybrid ``kb.search`` with faiss on every core vs on one thread.
4. **vectors**: ``VectorIndex.build`` on 1,000,000 synthetic 384-d vectors: a Gaussian mixture
   (``--clusters`` centres, anisotropic noise with a decaying spectrum in a random basis,
   L2-normalised; seed 0), queried with 1,000 held-out points from the same mixture. Reports
   build time, bytes per vector, recall@10 against exact search and single-query latency.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import add_json_option, write_json
from beir_eval import evaluate, load_qrels, load_queries, percentile, read_corpus

ROOT = Path(__file__).resolve().parent.parent


# Every printed table, for --json.
TABLES: list[dict[str, object]] = []


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    TABLES.append({"columns": list(head), "rows": [list(row) for row in rows]})
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


# -- 1. ingest throughput -------------------------------------------------------------------------


def bench_ingest(data: Path, work: Path, docs: int) -> Path:
    import hashlib

    import grounded
    from grounded.ingest.prepare import search_text as _search_text
    from indexes.chunking import ChunkingConfig, chunk_document, evidence_sentences

    sample_dir = work / "speed-ingest"
    shutil.rmtree(sample_dir, ignore_errors=True)
    (sample_dir / "src").mkdir(parents=True)
    with open(data / "corpus.jsonl", encoding="utf-8") as src:
        lines = [line for _, line in zip(range(docs), src, strict=False)]
    (sample_dir / "src" / "corpus.jsonl").write_text("".join(lines), encoding="utf-8")

    kb = grounded.open(sample_dir / "kb")
    model = kb.embedder.model  # sentence-transformers, loaded before any clock starts
    kb.embedder.embed(["warm up"])  # the configured runtime too (exported once, cached)
    batch = kb.embedder.batch_size
    model.encode(["warm up"] * batch, batch_size=batch)
    # The exact texts the pipeline embeds: title + chunk, as grounded.ingest.builder builds them,
    # and each distinct evidence sentence (title: sentence) it stores with the chunks.
    config = ChunkingConfig(kb.settings.chunking.max_chars, kb.settings.chunking.overlap_sentences)
    texts: list[str] = []
    sentences: dict[str, str] = {}
    for doc_id, title, text in read_corpus(sample_dir / "src"):
        for chunk in chunk_document(doc_id, text, config):
            texts.append(_search_text(title, chunk.text))
            for _, sentence in evidence_sentences(title, chunk.text):
                sentences.setdefault(hashlib.sha256(sentence.encode()).hexdigest(), sentence)
    everything = texts + list(sentences.values())

    def bare(what: list[str]) -> float:
        t0 = time.perf_counter()
        model.encode(what, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
        return time.perf_counter() - t0

    chunk_runs, all_runs = [bare(texts)], [bare(everything)]
    started = time.perf_counter()
    stats = kb.ingest(sample_dir / "src" / "corpus.jsonl", source="speed")
    pipeline_s = time.perf_counter() - started
    chunk_runs.append(bare(texts))
    all_runs.append(bare(everything))
    stored = sorted(
        str(r[0]) for r in kb.snapshot().store.cursor().execute("SELECT search_text FROM chunks").fetchall()
    )
    if stored != sorted(texts) or stats.sentences_embedded != len(sentences):
        raise RuntimeError("the pipeline embedded other texts than the bare encoder; fix the benchmark")
    n = stats.documents_added
    chunk_s, all_s = sum(chunk_runs) / 2, sum(all_runs) / 2
    _table(
        ("what", "texts embedded", "seconds", "docs/s"),
        [
            (
                f"pipeline (kb.ingest, {kb.settings.embed_runtime}): chunks + sentences",
                str(len(everything)),
                f"{pipeline_s:.1f}",
                f"{n / pipeline_s:.2f}",
            ),
            ("bare sentence-transformers: chunks only (mean of before/after)", str(len(texts)), f"{chunk_s:.1f}",
             f"{n / chunk_s:.2f}"),
            ("bare sentence-transformers: chunks + sentences (mean)", str(len(everything)), f"{all_s:.1f}",
             f"{n / all_s:.2f}"),
        ],
    )  # fmt: skip
    print(
        f"pipeline / bare encoder of the same texts = {all_s / pipeline_s:.2f}x (goal >= 1.5x); "
        f"/ bare encoder of the chunks only = {chunk_s / pipeline_s:.2f}x; {n} SciFact documents, "
        f"{len(texts)} chunks, {len(sentences)} distinct evidence sentences\n"
    )
    return sample_dir / "kb"


def bench_evidence(data: Path, kb_dir: Path, k: int = 5) -> None:
    """The ``/v1/query`` evidence stage (``_gather``): sentences looked up as ingest stored them,
    against splitting and embedding them at question time (today's path, and what a knowledge
    base built before sentences were stored still does)."""
    import grounded
    from grounded.answering.evidence import build_pool
    from grounded.answering.types import Citation

    kb = grounded.open(kb_dir, create=False)
    view = kb.store.view()
    queries = list(load_queries(data, load_qrels(data, "test")).values())[:100]
    stored_ms: list[float] = []
    computed_ms: list[float] = []
    same = True
    for text in queries:
        kb.embedder.embed_query(text)  # the question's vector is retrieval's, cached before this stage
        citations = [Citation.from_hit(i, h, None) for i, h in enumerate(view.search(text, k), 1)]
        t0 = time.perf_counter()
        stored = view.sentences([c.chunk_id for c in citations])
        a = build_pool(text, citations, kb.embedder, stored)
        stored_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        b = build_pool(text, citations, kb.embedder)
        computed_ms.append((time.perf_counter() - t0) * 1000)
        same = same and a.vectors.tobytes() == b.vectors.tobytes() and a.spans == b.spans
    _table(
        ("evidence stage, per question", "p50 ms", "p95 ms"),
        [
            ("computed at question time (today)", f"{percentile(computed_ms, 50):.1f}",
             f"{percentile(computed_ms, 95):.1f}"),
            ("stored at ingest, looked up", f"{percentile(stored_ms, 50):.1f}", f"{percentile(stored_ms, 95):.1f}"),
        ],
    )  # fmt: skip
    print(f"{len(queries)} SciFact test questions, k={k} passages each; same vectors both ways: {same}\n")


def bench_encoder(data: Path, kb_dir: Path | None) -> None:
    """Query encoding per variant: p50 per query alone and in batches of 8 and 16, against the
    GEMM limit of this CPU measured in the same run; SciFact nDCG@10 per variant on ``kb_dir``."""
    from _encoders import forward_flops, gemm_gflops, invariant_in_batches, per_query_ms, variants
    from transformers import AutoConfig, AutoTokenizer

    from grounded.experts.embedding import SentenceEmbedder

    qrels = load_qrels(data, "test")
    test = load_queries(data, qrels)
    queries = list(load_queries(data, load_qrels(data, "train")).values())[:320]
    embedder = SentenceEmbedder(runtime="onnx")
    tokenizer = AutoTokenizer.from_pretrained(str(embedder.model_dir), local_files_only=True)
    config = AutoConfig.from_pretrained(str(embedder.model_dir), local_files_only=True)
    flops = [forward_flops(len(ids), config) for ids in tokenizer(queries)["input_ids"]]
    limit = gemm_gflops()
    ideal_ms = float(np.median(flops)) / (limit * 1e9) * 1000
    rows: list[tuple[str, ...]] = []
    quality: list[tuple[str, ...]] = []
    for name, (encode, _) in variants().items():
        encode(queries[:16])  # warm up (export, quantize, first-run allocations)
        cells = [name]
        for batch in (1, 8, 16):
            p50 = percentile(per_query_ms(encode, queries[:160] if batch == 1 else queries, batch), 50)
            cells.append(f"{p50:.2f} ({ideal_ms / p50:.0%})")
        cells.append("yes" if invariant_in_batches(encode, queries) else "no")
        rows.append(tuple(cells))
        if kb_dir is not None and kb_dir.exists():
            quality.append((name, *(f"{x:.4f}" for x in _ndcg(kb_dir, test, qrels, encode))))
    _table(("query encoder, 1 thread", "alone ms/query", "batch 8", "batch 16", "batch-invariant"), rows)
    print(
        f"{len(queries)} distinct SciFact train queries, median {np.median([f / 1e9 for f in flops]):.2f} GFLOP "
        f"each; float32 GEMM limit {limit:.0f} GFLOP/s on one thread (1024^3 torch.mm), so "
        f"{ideal_ms:.2f} ms per query at the limit; (%) = that / measured\n"
    )
    if quality:
        _table(("query encoder", "nDCG@10 hybrid", "nDCG@10 dense"), quality)
        print(f"SciFact test ({len(test)} queries) on {kb_dir.name}: chunk vectors as stored, queries per variant\n")


def _ndcg(kb_dir: Path, queries: dict[str, str], qrels: Any, encode: Any) -> tuple[float, float]:
    import grounded
    from grounded.retrieval.search import fuse

    kb = grounded.open(kb_dir, create=False)
    snapshot = kb.snapshot()
    key_of = dict(
        snapshot.store.cursor().execute("SELECT c.chunk_id, d.key FROM chunks c JOIN documents d USING (doc_id)")
    .fetchall())  # fmt: skip
    vectors = encode(list(queries.values()))
    hybrid: dict[str, list[str]] = {}
    dense_run: dict[str, list[str]] = {}
    for (qid, text), vector in zip(queries.items(), vectors, strict=True):
        bm25 = snapshot.store.bm25(text, kb.settings.search.candidates)
        scores, ids = snapshot.vectors.search(np.asarray(vector, np.float32)[None, :], kb.settings.search.candidates)
        dense = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        for run, ranked in ((hybrid, fuse(bm25, dense, kb.settings.search)), (dense_run, dense)):
            seen: dict[str, None] = {}
            for c, _ in ranked:
                seen.setdefault(key_of[c].rsplit("#", 1)[-1], None)
            run[qid] = list(seen)
    return evaluate(hybrid, qrels)[0], evaluate(dense_run, qrels)[0]


# -- 2. HTTP latency ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_http(data: Path, kb_dir: Path, warmup: int) -> None:
    import httpx

    if not kb_dir.exists():
        sys.exit(f"no SciFact KB at {kb_dir}; run benchmarks/retrieval.py first (or pass --kb)")
    port = _free_port()
    grounded_bin = Path(sys.executable).parent / "grounded"
    # Server logs go to a file: a pipe nobody reads fills after a few hundred request log lines
    # and then blocks the server mid-request (that was the "timed out" of earlier runs).
    log = tempfile.NamedTemporaryFile(prefix="grounded-serve-", suffix=".log", delete=False)  # noqa: SIM115
    server = subprocess.Popen(
        [str(grounded_bin), "serve", "--kb", str(kb_dir), "--port", str(port), "--no-scheduler"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 600
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"grounded serve exited; its log: {Path(log.name).read_text()[-4000:]}")
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("grounded serve did not become healthy in 600 s")
                time.sleep(0.5)
            train = load_queries(data, load_qrels(data, "train"))
            for text in list(train.values())[:warmup]:
                client.post("/v1/search", json={"query": text, "k": 10}).raise_for_status()
            queries = list(load_queries(data, load_qrels(data, "test")).values())
            latencies: list[float] = []
            for text in queries:
                t0 = time.perf_counter()
                response = client.post("/v1/search", json={"query": text, "k": 10})
                latencies.append((time.perf_counter() - t0) * 1000)
                response.raise_for_status()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        os.unlink(log.name)
    _table(
        ("requests", "p50 ms", "p95 ms", "max ms"),
        [
            (
                str(len(latencies)),
                f"{percentile(latencies, 50):.1f}",
                f"{percentile(latencies, 95):.1f}",
                f"{max(latencies):.1f}",
            )
        ],
    )
    print(f"POST /v1/search k=10 hybrid, {len(latencies)} distinct SciFact test queries, {warmup} warm-up (train)\n")


# -- 3. in-process search: BM25 and faiss threads, each against its baseline -------------------


def _timed(fn: Callable[[str], object], queries: list[str]) -> list[float]:
    out: list[float] = []
    for text in queries:
        t0 = time.perf_counter()
        fn(text)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def bench_search(data: Path, kb_dir: Path) -> None:
    import faiss

    import grounded
    from indexes.faiss_index import build_threads

    if not kb_dir.exists():
        sys.exit(f"no SciFact KB at {kb_dir}; run benchmarks/retrieval.py first (or pass --kb)")
    kb = grounded.open(kb_dir)
    snap = kb.snapshot()
    store = snap.store
    queries = list(load_queries(data, load_qrels(data, "test")).values())
    depth = kb.settings.search.candidates
    con = store.cursor()
    sql = (
        "SELECT chunk_id, score FROM (SELECT chunk_id, fts_main_chunks.match_bm25(chunk_id, ?) AS score FROM chunks) "
        "WHERE score IS NOT NULL ORDER BY score DESC, chunk_id LIMIT ?"
    )
    for text in queries:  # every query embedding cached: the rows below time retrieval, not the encoder
        kb.embedder.embed_query(text)
    rows: list[tuple[str, ...]] = []

    def row(name: str, lat: list[float]) -> None:
        rows.append((name, f"{percentile(lat, 50):.2f}", f"{percentile(lat, 95):.2f}"))

    row("BM25: DuckDB match_bm25 (baseline)", _timed(lambda q: con.execute(sql, [q, depth]).fetchall(), queries))
    row("BM25: in-memory posting lists", _timed(lambda q: store.bm25(q, depth), queries))
    faiss.omp_set_num_threads(build_threads())
    row(f"hybrid kb.search, faiss on {build_threads()} threads (baseline)", _timed(lambda q: kb.search(q, 10), queries))
    faiss.omp_set_num_threads(1)
    row("hybrid kb.search, faiss on 1 thread", _timed(lambda q: kb.search(q, 10), queries))
    _table(("in-process, per query", "p50 ms", "p95 ms"), rows)
    counts = store.counts()
    print(
        f"{len(queries)} SciFact test queries, {counts['chunks']:,} chunks, {depth} candidates per side; "
        f"BM25 posting lists hold {store.postings().nbytes / 1e6:.1f} MB\n"  # type: ignore[union-attr]
    )


# -- 4. one million vectors -----------------------------------------------------------------------


def synthetic_vectors(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Clustered, anisotropic, unit-length vectors (see the module docstring)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    spectrum = (np.arange(1, dim + 1, dtype=np.float32) ** -0.5).astype(np.float32)
    spread = (basis.astype(np.float32) * spectrum[None, :]).T  # rows: scaled basis directions
    spread *= 1.2 / np.sqrt((spectrum**2).sum())  # noise norm about 1.2 x the centre's norm
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        assign = rng.integers(0, clusters, hi - lo)
        noise = rng.standard_normal((hi - lo, dim), dtype=np.float32) @ spread
        block = centres[assign] + noise
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[lo:hi] = block
    return out


def bench_vectors(n: int, clusters: int, queries: int) -> None:
    import faiss

    from indexes.faiss_index import VectorIndex, recall_at_k

    t0 = time.perf_counter()
    data = synthetic_vectors(n + queries, 384, clusters, seed=0)
    base, held_out = data[:n], data[n:]
    gen_s = time.perf_counter() - t0
    ids = np.arange(n, dtype=np.int64)

    t0 = time.perf_counter()
    index = VectorIndex.build(ids, base)
    build_s = time.perf_counter() - t0
    size = index.memory_bytes()

    exact = faiss.IndexFlatIP(base.shape[1])
    exact.add(base)
    _, truth = exact.search(held_out, 10)
    del exact
    _, found = index.search(held_out, 10)
    recall = recall_at_k(found, truth)

    from indexes.faiss_index import build_threads

    choice = index.choice
    rows = []
    # The served setting (1 thread) against faiss's default (every core), in the same run.
    for threads in (build_threads(), 1):
        faiss.omp_set_num_threads(threads)
        latencies: list[float] = []
        for q in held_out:
            t1 = time.perf_counter()
            index.search(q[None, :], 10)
            latencies.append((time.perf_counter() - t1) * 1000)
        rows.append(
            (
                f"{choice.kind} nlist={choice.nlist} nprobe={choice.nprobe}",
                str(threads),
                f"{n:,}",
                f"{build_s:.1f}",
                f"{size / n:.0f}",
                f"{recall:.3f}",
                f"{percentile(latencies, 50):.2f}",
                f"{percentile(latencies, 95):.2f}",
            )
        )
    _table(("index", "faiss threads", "vectors", "build s", "bytes/vector", "recall@10", "p50 ms", "p95 ms"), rows)
    print(
        f"synthetic: {clusters} Gaussian clusters, anisotropic noise, unit length, seed 0 (generated in {gen_s:.0f} s); "
        f"recall@10 on {queries} held-out queries vs exact search (build-time sample check said "
        f"{choice.recall_at_10:.3f}); single-query latency\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--kb", type=Path, default=ROOT / ".bench" / "scifact-kb-default")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench")
    parser.add_argument(
        "--only", choices=("ingest", "evidence", "encoder", "http", "search", "vectors"), action="append"
    )
    parser.add_argument("--ingest-docs", type=int, default=400, help="SciFact documents in the ingest sample")
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=1000)
    add_json_option(parser)
    args = parser.parse_args()
    parts = args.only or ["ingest", "evidence", "encoder", "http", "search", "vectors"]
    load = os.getloadavg()
    print(f"# speed on {os.cpu_count()} CPUs; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    sample = args.work.resolve() / "speed-ingest" / "kb"
    if "ingest" in parts:
        sample = bench_ingest(args.data.resolve(), args.work.resolve(), args.ingest_docs)
    if "evidence" in parts:
        bench_evidence(args.data.resolve(), sample)
    if "encoder" in parts:
        bench_encoder(args.data.resolve(), args.kb.resolve())
    if "http" in parts:
        bench_http(args.data.resolve(), args.kb.resolve(), warmup=20)
    if "search" in parts:
        bench_search(args.data.resolve(), args.kb.resolve())
    if "vectors" in parts:
        bench_vectors(args.vectors, args.clusters, args.queries)
    load = os.getloadavg()
    print(f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    write_json(args.json, {"parts": parts, "tables": TABLES})


if __name__ == "__main__":
    main()
