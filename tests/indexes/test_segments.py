"""Segmented versions: a refresh writes what changed, reads the union, and searches as one index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

import grounded
from connectors.base import Deletion, Document, Page
from grounded.errors import CorruptKnowledgeBase
from grounded.ingest.builder import VersionBuilder, doc_id_for
from grounded.kb import KnowledgeBase
from tests.conftest import write_topics

FIRST = ("with", "for", "while", "if", "lambda", "assert")
QUERIES = ("break out of the loop", "with statement context manager", "anonymous functions", "elephants", "naïve café")


def _refresh(corpus: Path) -> None:
    """Add three topics, change one, delete one, then replace one again: three kinds of change."""
    write_topics(corpus, ("del", "pass", "break"))
    (corpus / "if.txt").write_text((corpus / "if.txt").read_text() + "\nElephants never leave a loop early.\n")
    (corpus / "assert.txt").unlink()


def _search(kb: KnowledgeBase, mode: str) -> list[list[tuple[int, float]]]:
    return [[(h.chunk_id, h.score) for h in kb.search(q, k=10, mode=mode)] for q in QUERIES]  # type: ignore[arg-type]


def _same(a: list[list[tuple[int, float]]], b: list[list[tuple[int, float]]]) -> bool:
    return all(
        [c for c, _ in x] == [c for c, _ in y] and all(abs(s - t) < 1e-5 for (_, s), (_, t) in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[KnowledgeBase, KnowledgeBase]:
    """The same corpus as three segments (ingest, refresh, refresh) and as one fresh build."""
    root = tmp_path_factory.mktemp("segments")
    corpus = write_topics(root / "corpus", FIRST)
    segmented = grounded.open(root / "kb", index={"compact_ratio": 100.0})
    segmented.ingest(corpus, source="ref")
    _refresh(corpus)
    segmented.ingest(corpus, source="ref")
    (corpus / "lambda.txt").write_text("lambda: anonymous functions and their closures, replaced.")
    segmented.ingest(corpus, source="ref")
    fresh = grounded.open(root / "fresh")
    fresh.ingest(corpus, source="ref")
    return segmented, fresh


def test_a_refresh_writes_only_what_changed(kbs: tuple[KnowledgeBase, KnowledgeBase]) -> None:
    segmented, _ = kbs
    version = segmented.versions.current()
    assert version is not None
    assert version.segment_ids == ["000001", "000002", "000003"]
    with duckdb.connect(str(version.store_path), read_only=True) as con:
        own = {str(r[0]) for r in con.execute("SELECT key FROM documents").fetchall()}
        dead = con.execute("SELECT count(*) FROM dead").fetchone()
    assert own == {"lambda.txt"}  # the third version's own segment: the one changed document
    assert dead == (3,)  # if.txt and assert.txt in the first segment, lambda.txt in it too


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
def test_segmented_search_equals_one_index_over_the_same_documents(
    kbs: tuple[KnowledgeBase, KnowledgeBase], mode: str
) -> None:
    segmented, fresh = kbs
    got, expected = _search(segmented, mode), _search(fresh, mode)
    assert any(got)
    assert _same(got, expected), (got, expected)


def test_filters_on_a_segmented_version_see_only_live_documents(kbs: tuple[KnowledgeBase, KnowledgeBase]) -> None:
    segmented, fresh = kbs
    for keys in (["if.txt", "lambda.txt", "for.txt"], ["assert.txt"]):  # changed, unchanged; deleted
        filters = {"doc_id": [doc_id_for("ref", key) for key in keys]}
        got = [(h.chunk_id, h.key) for h in segmented.search("loop", k=10, filters=filters)]
        assert got == [(h.chunk_id, h.key) for h in fresh.search("loop", k=10, filters=filters)]
        assert bool(got) == ("for.txt" in keys)


def test_the_union_counts_each_live_document_once(kbs: tuple[KnowledgeBase, KnowledgeBase]) -> None:
    segmented, fresh = kbs
    assert segmented.snapshot().store.counts() == fresh.snapshot().store.counts()
    rows = segmented.snapshot().store.cursor().execute("SELECT key FROM documents ORDER BY key").fetchall()
    assert [r[0] for r in rows] == sorted(p.name for p in (segmented.path.parent / "corpus").iterdir())


def test_too_many_segments_are_compacted_with_the_same_results(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus", FIRST)
    kb = grounded.open(tmp_path / "kb", index={"max_segments": 2, "compact_ratio": 100.0}, keep_versions=1)
    kb.ingest(corpus, source="ref")
    _refresh(corpus)
    kb.ingest(corpus, source="ref")
    (corpus / "lambda.txt").write_text("lambda: anonymous functions and their closures, replaced.")
    kb.ingest(corpus, source="ref")
    version = kb.versions.current()
    assert version is not None
    assert version.segment_ids == ["000001", "000003"]  # the second merged into the third
    assert sorted(p.name for p in (tmp_path / "kb" / "segments").iterdir()) == ["000001"]
    fresh = grounded.open(tmp_path / "fresh")
    fresh.ingest(corpus, source="ref")
    assert _same(_search(kb, "hybrid"), _search(fresh, "hybrid"))


def test_pruning_keeps_a_segment_while_a_kept_version_reads_it(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus", FIRST)
    kb = grounded.open(tmp_path / "kb", keep_versions=1, index={"compact_ratio": 100.0})
    kb.ingest(corpus, source="ref")
    held = kb.snapshot()  # a reader on the first version
    _refresh(corpus)
    kb.ingest(corpus, source="ref")
    assert kb.versions.list_ids() == ["000002"]
    assert (tmp_path / "kb" / "segments" / "000001" / "store.duckdb").exists()
    assert len(kb.search("elephants", k=3)) == 3
    assert len(kb.store.search("assert statement", k=3, snapshot=held)) == 3  # the old reader still reads
    # A full compaction leaves nothing for a kept version to read in segments/.
    kb2 = grounded.open(tmp_path / "kb", keep_versions=1, index={"compact_ratio": 0.01})
    (corpus / "for.txt").write_text("for loops, rewritten")
    kb2.ingest(corpus, source="ref")
    assert kb2.versions.current().segment_ids == ["000003"]  # type: ignore[union-attr]
    assert list((tmp_path / "kb" / "segments").iterdir()) == []


def test_a_refresh_that_stops_before_publishing_leaves_the_last_version(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus", FIRST)
    kb = grounded.open(tmp_path / "kb")
    kb.ingest(corpus, source="ref")
    before = _search(kb, "hybrid")

    def interrupted() -> None:
        with VersionBuilder(kb.versions, kb.embedder, kb.settings) as builder:
            builder.apply_page("ref", "files", Page([Document("with.txt", "replaced"), Deletion("for.txt")]))
            raise KeyboardInterrupt  # as a Ctrl-C between the last page and publish

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert kb.version == "000001"
    assert list((tmp_path / "kb" / "staging").iterdir()) == []
    assert _same(_search(grounded.open(tmp_path / "kb", create=False), "hybrid"), before)
    kb.ingest(corpus, source="ref")  # the next writer starts from the last good version
    assert kb.version == "000001"  # nothing changed since


def test_a_knowledge_base_of_format_1_opens_and_its_next_write_adds_a_segment(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus", FIRST)
    root = tmp_path / "kb"
    grounded.open(root).ingest(corpus, source="ref")
    # As grounded wrote it before segments: format 1, no segments in the manifest or the store.
    (root / "KB_FORMAT").write_text(json.dumps({"format": "grounded-kb", "version": 1}))
    manifest_path = root / "versions" / "000001" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["segments"]
    manifest_path.write_text(json.dumps(manifest))
    with duckdb.connect(str(root / "versions" / "000001" / "store.duckdb")) as con:
        con.execute("DELETE FROM meta WHERE key IN ('segments', 'segment_id')")
    old = grounded.open(root, create=False, index={"compact_ratio": 100.0})
    assert len(old.search("context manager", k=3)) == 3
    _refresh(corpus)
    old.ingest(corpus, source="ref")
    assert old.versions.current().segment_ids == ["000001", "000002"]  # type: ignore[union-attr]
    assert json.loads((root / "KB_FORMAT").read_text())["version"] == 2
    fresh = grounded.open(tmp_path / "fresh")
    fresh.ingest(corpus, source="ref")
    assert _same(_search(old, "hybrid"), _search(fresh, "hybrid"))
    shutil.rmtree(tmp_path / "fresh")


def test_segmented_bm25_scores_equal_one_index(kbs: tuple[KnowledgeBase, KnowledgeBase]) -> None:
    segmented, fresh = kbs
    for query in QUERIES:
        got = segmented.snapshot().store.bm25(query, 20)
        expected = fresh.snapshot().store.bm25(query, 20)
        assert [c for c, _ in got] == [c for c, _ in expected]
        assert all(abs(s - t) <= 1e-5 * max(1.0, abs(t)) for (_, s), (_, t) in zip(got, expected, strict=True))


def test_a_missing_segment_is_reported_as_a_damaged_knowledge_base(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus", FIRST[:2])
    kb = grounded.open(tmp_path / "kb", index={"compact_ratio": 100.0})
    kb.ingest(corpus, source="ref")
    write_topics(corpus, ("pass",))
    kb.ingest(corpus, source="ref")
    (tmp_path / "kb" / "versions" / "000001" / "vectors.faiss").unlink()
    with pytest.raises(CorruptKnowledgeBase, match="segment 000001"):
        grounded.open(tmp_path / "kb", create=False).search("for loop")
