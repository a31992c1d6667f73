"""Versions over shared segments: a refresh writes what changed; shards and compaction keep results exact."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import grounded
from grounded.kb import KnowledgeBase
from indexes.duckdb_store import segment_alias
from indexes.versions import SEGMENT_STORE
from tests.conftest import DEMO_TOPICS, write_topics

pytestmark = pytest.mark.slow

QUERIES = (
    "context manager __enter__ and __exit__",
    "leave the innermost loop early",
    "anonymous functions",
    "assert raises AssertionError",
    "delete a name binding",
    "return value of a function",
)


def _results(kb: KnowledgeBase) -> dict[tuple[str, str], list[tuple[int, float]]]:
    return {
        (mode, q): [(h.chunk_id, h.score) for h in kb.search(q, k=10, mode=mode)]  # type: ignore[arg-type]
        for mode in ("hybrid", "bm25", "dense")
        for q in QUERIES
    }


def _assert_same(got: dict, expected: dict) -> None:
    for key, hits in expected.items():
        assert [c for c, _ in got[key]] == [c for c, _ in hits], key
        np.testing.assert_allclose([s for _, s in got[key]], [s for _, s in hits], rtol=1e-5)


def _sentences(kb: KnowledgeBase) -> list[tuple]:
    """Every live stored sentence (the head's view), embeddings as float32 bytes."""
    rows = (
        kb.snapshot()
        .store.cursor()
        .execute(
            "SELECT chunk_id, ordinal, start_char, end_char, text_hash, embedding FROM sentences "
            "ORDER BY chunk_id, ordinal"
        )
        .fetchall()
    )
    return [(*r[:5], np.asarray(r[5], dtype=np.float32).tobytes()) for r in rows]


def _segment_rows(kb: KnowledgeBase, segment: str, table: str) -> set[int]:
    sql = f"SELECT DISTINCT chunk_id FROM {segment_alias(segment)}.main.{table}"
    return {int(r[0]) for r in kb.snapshot().store.cursor().execute(sql).fetchall()}


def _change(corpus: Path, n: int) -> None:
    (corpus / f"{DEMO_TOPICS[n]}.txt").write_text(f"Rewritten topic number {n}: loops, functions and names.\n")


def test_a_refresh_writes_only_what_changed(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus")
    kb = grounded.open(tmp_path / "kb")
    kb.ingest(corpus, source="ref")
    first = kb.snapshot().version
    base = first.segment_path(first.segments[0]["id"]) / SEGMENT_STORE
    inode, size = base.stat().st_ino, base.stat().st_size
    _change(corpus, 3)
    (corpus / "pass.txt").unlink()
    kb.ingest(corpus, source="ref")
    second = kb.snapshot().version
    assert [s["id"] for s in second.segments] == [first.segments[0]["id"], f"{second.id}-0"]
    assert second.segments[1]["chunks"] == 1  # the rewritten topic only
    assert (base.stat().st_ino, base.stat().st_size) == (inode, size)  # shared, not copied or changed
    assert (second.store_path.stat().st_size) < size
    fresh = grounded.open(tmp_path / "fresh")
    fresh.ingest(corpus, source="ref")
    _assert_same(_results(kb), _results(fresh))


def test_sentences_are_sealed_with_their_chunks_into_the_new_segment(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus")
    kb = grounded.open(tmp_path / "kb")
    kb.ingest(corpus, source="ref")
    _change(corpus, 3)
    (corpus / "pass.txt").unlink()
    stats = kb.ingest(corpus, source="ref")
    base, new = (s["id"] for s in kb.snapshot().version.segments)
    store = kb.snapshot().store
    assert store.cursor().execute("SELECT count(*) FROM main.pending_sentences").fetchone() == (0,)
    assert _segment_rows(kb, new, "sentences") == _segment_rows(kb, new, "chunks")  # with their chunk
    assert (
        0
        < stats.sentences_embedded
        <= len(store.cursor().execute(f"SELECT 1 FROM {segment_alias(new)}.main.sentences").fetchall())
    )  # only the changed text
    live = {int(r[0]) for r in store.cursor().execute("SELECT chunk_id FROM chunks").fetchall()}
    assert {r[0] for r in _sentences(kb)} == live  # the deleted and replaced documents' are masked
    assert _segment_rows(kb, base, "sentences") - live  # ... not rewritten
    fresh = grounded.open(tmp_path / "fresh")
    fresh.ingest(corpus, source="ref")
    assert _sentences(kb) == _sentences(fresh)  # the same bytes as a fresh ingest


def test_sharded_search_equals_unsharded(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus")
    one = grounded.open(tmp_path / "one")
    three = grounded.open(tmp_path / "three", scale={"shards": 3})
    for kb in (one, three):
        kb.ingest(corpus, source="ref")
    assert sorted(s["shard"] for s in three.snapshot().version.segments) == [0, 1, 2]
    for seg in three.snapshot().version.segments:  # each shard's sentences with its chunks
        assert _segment_rows(three, seg["id"], "sentences") == _segment_rows(three, seg["id"], "chunks")
    assert _sentences(three) == _sentences(one)
    _assert_same(_results(three), _results(one))
    _change(corpus, 1)
    for kb in (one, three):
        kb.ingest(corpus, source="ref")
    _assert_same(_results(three), _results(one))


def test_compaction_bounds_segments_and_keeps_results(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus")
    kb = grounded.open(tmp_path / "kb", keep_versions=1, scale={"max_segments": 2})
    kb.ingest(corpus, source="ref")
    pinned = kb.snapshot()  # an old reader, kept across publishes that prune its version
    before = [h.chunk_id for h in kb.search("assert statement", k=5, snapshot=pinned)]
    for n in range(4):
        _change(corpus, n)
        kb.ingest(corpus, source="ref")
        assert len(kb.snapshot().version.segments) <= 2
    assert sorted(os.listdir(tmp_path / "kb" / "segments")) == sorted(s["id"] for s in kb.snapshot().version.segments)
    assert [h.chunk_id for h in kb.search("assert statement", k=5, snapshot=pinned)] == before
    fresh = grounded.open(tmp_path / "fresh")
    fresh.ingest(corpus, source="ref")
    _assert_same(_results(kb), _results(fresh))
    assert _sentences(kb) == _sentences(fresh)  # compaction carried the live sentences along


def test_orphaned_segments_of_a_crashed_writer_are_removed(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus", ("with", "for"))
    kb = grounded.open(tmp_path / "kb")
    kb.ingest(corpus, source="ref")
    orphan = tmp_path / "kb" / "segments" / "999999-0"
    orphan.mkdir()  # as if a writer died after moving its segment, before CURRENT
    (orphan / SEGMENT_STORE).write_bytes(b"half")
    assert kb.search("loop", k=1)
    _change(corpus, 0)
    kb.ingest(corpus, source="ref")
    assert not orphan.exists()
