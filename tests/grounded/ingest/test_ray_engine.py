"""Ingestion on Ray (issue 18): the version is the one a local ingest makes, and a killed worker
never publishes half a change.

A local Ray cluster (two CPUs, no dashboard) is started once per test session. Without ray these
tests skip with how to install it; in CI (``CI=true``) a missing ray fails them.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import grounded
from connectors.sqlite import SQLiteConfig, SQLiteConnector
from grounded.errors import CorruptKnowledgeBase
from grounded.kb import KnowledgeBase
from tests.ci import import_or_skip
from tests.conftest import write_topics

ray = import_or_skip("ray", "install the ray extra: pip install -e '.[ray]'", module_level=True)

QUERIES = ("how does a for loop end", "assert statement", "return a value from a function", "lambda expression")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster for the session: two CPUs (an embedding actor and a read task)."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _corpus(folder: Path) -> Path:
    """Topic files (split by path runs) and a JSONL file (split by line ranges)."""
    from pydoc_data.topics import topics

    write_topics(folder)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for i, paragraph in enumerate(p for p in topics["class"].split("\n\n") if p.strip()):
            out.write(json.dumps({"_id": f"p{i}", "title": f"class, part {i}", "text": paragraph}) + "\n")
    return folder


def _open(path: Path, engine: str, **scale: Any) -> KnowledgeBase:
    return grounded.open(path, scale={"engine": engine, "workers": 1, **scale})


def _dump(kb: KnowledgeBase) -> dict[str, Any]:
    """Everything a version holds that an ingest computes: ids, texts, vectors, search results."""
    store = kb.snapshot().store
    cur = store.cursor()
    docs = cur.execute("SELECT doc_id, key, title, text, content_hash, acl FROM documents ORDER BY doc_id").fetchall()
    chunks = cur.execute(
        "SELECT chunk_id, doc_id, ordinal, start_char, end_char, text FROM chunks ORDER BY chunk_id"
    ).fetchall()
    sentences = cur.execute(
        "SELECT chunk_id, ordinal, start_char, end_char, text_hash FROM sentences ORDER BY chunk_id, ordinal"
    ).fetchall()
    ids, vectors = store.vectors()
    order = np.argsort(ids)
    sentence_vectors = np.array(
        [r[0] for r in cur.execute("SELECT embedding FROM sentences ORDER BY chunk_id, ordinal").fetchall()],
        dtype=np.float32,
    )
    results = {q: [(h.chunk_id, round(h.score, 5)) for h in kb.search(q, k=10)] for q in QUERIES}
    return {
        "docs": docs,
        "chunks": chunks,
        "sentences": sentences,
        "ids": ids[order],
        "vectors": vectors[order],
        "sentence_vectors": sentence_vectors,
        "results": results,
    }


def _assert_same(ray_kb: KnowledgeBase, local_kb: KnowledgeBase) -> None:
    got, want = _dump(ray_kb), _dump(local_kb)
    for key in ("docs", "chunks", "sentences", "results"):
        assert got[key] == want[key], key
    assert np.array_equal(got["ids"], want["ids"])
    np.testing.assert_allclose(got["vectors"], want["vectors"], atol=1e-5)
    np.testing.assert_allclose(got["sentence_vectors"], want["sentence_vectors"], atol=1e-5)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_a_ray_ingest_and_refresh_publish_the_version_a_local_one_does(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus")
    local, on_ray = _open(tmp_path / "local", "local"), _open(tmp_path / "ray", "ray")
    stats = [kb.ingest(corpus, source="docs") for kb in (local, on_ray)]
    assert stats[1].published
    assert stats[1].documents_added == stats[0].documents_added > 20
    assert stats[1].chunks_embedded == stats[0].chunks_embedded
    _assert_same(on_ray, local)
    assert on_ray.stats()["devices"] == {"encoder": "cpu", "faiss": "cpu"}

    # A refresh: one file changed, one removed, one JSONL line changed; only those are re-embedded.
    (corpus / "with.txt").write_text("The with statement wraps a block in a context manager.\n", encoding="utf-8")
    (corpus / "del.txt").unlink()
    lines = (corpus / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    lines[2] = json.dumps({"_id": "p2", "title": "class, part 2", "text": "Classes are created by class statements."})
    (corpus / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    stats = [kb.ingest(corpus, source="docs") for kb in (local, on_ray)]
    assert (stats[1].documents_updated, stats[1].documents_deleted) == (2, 1)
    assert stats[1].chunks_embedded == stats[0].chunks_embedded
    _assert_same(on_ray, local)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_a_killed_ray_worker_leaves_the_last_good_version_serving_and_a_rerun_finishes(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus")
    first = write_topics(tmp_path / "first", ("if",))
    kb = _open(tmp_path / "kb", "ray")
    kb.ingest(first, source="docs")
    good = kb.version
    before = [h.chunk_id for h in kb.search("if statement", k=5)]

    engines: list[Any] = []
    from grounded.ingest import ray_engine

    original = ray_engine.RayEngine.__init__

    def remember(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        engines.append(self)

    killed: list[int] = []

    class KillOnFirstPage:
        """A progress bar (the sync's own interface) that kills the embedding actor after one page."""

        def __init__(self, total: int | None, label: str) -> None:
            pass

        def update(self, n: int) -> None:
            if not killed:
                pid = next(iter(engines[-1].workers_seen))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        def close(self) -> None:
            pass

    ray_engine.RayEngine.__init__ = remember  # type: ignore[method-assign]
    try:
        try:
            kb.ingest(corpus, source="docs", progress=KillOnFirstPage)
            outcome = "recovered"  # Ray restarted the actor and retried its work
        except Exception:
            outcome = "failed"
    finally:
        ray_engine.RayEngine.__init__ = original  # type: ignore[method-assign]
    assert killed, "the ingest embedded no page"
    print(f"worker {killed[0]} killed after the first page: the ingest {outcome}")
    if outcome == "failed":
        assert kb.version == good
        assert [h.chunk_id for h in kb.search("if statement", k=5)] == before
        assert not any((tmp_path / "kb" / "staging").iterdir())
        kb.ingest(corpus, source="docs")
    assert kb.version != good
    local = _open(tmp_path / "local", "local")
    local.ingest(first, source="docs")
    local.ingest(corpus, source="docs")
    _assert_same(kb, local)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_a_database_table_read_in_key_ranges_on_ray_mirrors_and_indexes_as_a_local_sync(tmp_path: Path) -> None:
    from pydoc_data.topics import topics

    paragraphs = [p for name in ("class", "for", "while") for p in topics[name].split("\n\n") if p.strip()]
    con = sqlite3.connect(tmp_path / "topics.db")
    con.execute("CREATE TABLE paragraphs (id INTEGER PRIMARY KEY, topic TEXT, body TEXT)")
    con.executemany("INSERT INTO paragraphs VALUES (?, ?, ?)", [(i, f"part {i}", p) for i, p in enumerate(paragraphs)])
    con.commit()
    con.close()
    config = SQLiteConfig(
        path=tmp_path / "topics.db",
        tables=[{"name": "paragraphs", "document": {"title": "{topic}", "text": "{body}"}}],
        page_size=5,
    )
    source = SQLiteConnector(config)
    assert len(source.splits("paragraphs", 4)) == 4

    # The class goes to the Ray tasks by value (they need not import the tests package).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    local, on_ray = _open(tmp_path / "local", "local"), _open(tmp_path / "ray", "ray")
    stats = [local.sync("db", source), on_ray.sync("db", _ReadsOnlyKeyRanges(config))]
    assert stats[1].rows_upserted == stats[0].rows_upserted == len(paragraphs)
    assert stats[1].documents_added == stats[0].documents_added == len(paragraphs)
    _assert_same(on_ray, local)
    mirrored = [
        kb.snapshot().store.cursor().execute("SELECT id, topic, body FROM db.paragraphs ORDER BY id").fetchall()
        for kb in (local, on_ray)
    ]
    assert mirrored[1] == mirrored[0]
    assert len(mirrored[0]) == len(paragraphs)


class _ReadsOnlyKeyRanges(SQLiteConnector):
    """A table that must be read in key ranges: a whole read (on the driver) fails the test."""

    def read(self, stream: str, cursor: Any) -> Iterator[Any]:
        raise AssertionError("the Ray engine read the whole table instead of its key ranges")


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_shards_searched_by_ray_actors_give_the_local_fan_outs_results(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus")
    local = grounded.open(tmp_path / "kb", index={"shards": 3})
    local.ingest(corpus, source="docs")
    (corpus / "for.txt").write_text("A for loop ends when its iterable is exhausted.\n", encoding="utf-8")
    (corpus / "del.txt").unlink()
    local.ingest(corpus, source="docs")  # a second segment, and dead chunks in the first
    on_ray = grounded.open(tmp_path / "kb", index={"shards": 3}, scale={"search": "ray"})
    vectors = on_ray.snapshot().vectors
    assert type(vectors).__name__ == "RayShardIndex"
    assert vectors.shards == 6
    assert vectors.ntotal == local.snapshot().vectors.ntotal
    assert on_ray.stats()["shard_search"] == "ray"
    for query in QUERIES:
        for mode in ("dense", "hybrid"):
            want = [(h.chunk_id, round(h.score, 5)) for h in local.search(query, k=10, mode=mode)]
            assert [(h.chunk_id, round(h.score, 5)) for h in on_ray.search(query, k=10, mode=mode)] == want

    # A shard file gone from storage: found before any actor starts, and the reader says so.
    next((tmp_path / "kb" / "versions").rglob("vectors.shard1.faiss")).unlink()
    with pytest.raises(CorruptKnowledgeBase, match=r"missing from storage: .*vectors\.shard1\.faiss"):
        grounded.open(tmp_path / "kb", index={"shards": 3}, scale={"search": "ray"}).search("assert statement")


@pytest.mark.usefixtures("ray_cluster")
def test_a_shard_file_an_actor_cannot_read_is_reported_as_a_damaged_knowledge_base(tmp_path: Path) -> None:
    from grounded.retrieval.ray_shards import RayShardIndex, ShardPart
    from indexes.faiss_index import IndexChoice

    damaged = tmp_path / "vectors.shard0.faiss"
    damaged.write_bytes(b"not a faiss index")
    part = ShardPart("000001", damaged, IndexChoice(kind="Flat"), np.zeros(0, dtype=np.int64))
    with pytest.raises(CorruptKnowledgeBase, match="Ray actor could not load"):
        RayShardIndex(ray, [part])
