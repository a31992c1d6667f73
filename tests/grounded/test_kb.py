from __future__ import annotations

from pathlib import Path

import pytest

import grounded
from connectors.base import Document, Page, StreamSpec
from grounded.errors import ConfigError, CorruptKnowledgeBase, InvalidRequest, NoPublishedVersion
from grounded.kb import KnowledgeBase
from indexes.faiss_index import gpu_count
from tests.conftest import write_topics

pytestmark = pytest.mark.slow


def _chunk_ids(kb: KnowledgeBase) -> set[int]:
    return {int(i) for i in kb.snapshot().store.chunk_ids()}


def _vector_count(kb: KnowledgeBase) -> int:
    return kb.snapshot().vectors.ntotal


def test_search_finds_the_topic_in_both_indexes(built_kb_path: Path) -> None:
    kb = grounded.open(built_kb_path, create=False)
    hits = kb.search("context manager __enter__ and __exit__", k=3)
    assert hits[0].key == "with.txt"
    assert hits[0].bm25_rank is not None
    assert hits[0].dense_rank is not None
    text = (built_kb_path.parent / "corpus" / "with.txt").read_text()
    assert text[hits[0].start : hits[0].end] == hits[0].text


def test_search_is_deterministic(built_kb_path: Path) -> None:
    kb = grounded.open(built_kb_path, create=False)
    first = [(h.chunk_id, h.score) for h in kb.search("loop over a sequence", k=8)]
    assert first == [(h.chunk_id, h.score) for h in kb.search("loop over a sequence", k=8)]


@pytest.mark.parametrize("mode", ["bm25", "dense"])
def test_single_mode_search_uses_only_that_side(built_kb_path: Path, mode: str) -> None:
    kb = grounded.open(built_kb_path, create=False)
    hits = kb.search("leave the innermost loop", k=5, mode=mode)  # type: ignore[arg-type]
    assert hits
    if mode == "bm25":
        assert all(h.dense_rank is None and h.bm25_rank is not None for h in hits)
    else:
        assert all(h.bm25_rank is None and h.dense_rank is not None for h in hits)


def test_filters_narrow_results(built_kb_path: Path) -> None:
    kb = grounded.open(built_kb_path, create=False)
    lambda_doc = kb.search("anonymous functions", k=1)[0].doc_id
    hits = kb.search("statement", k=10, filters={"doc_id": lambda_doc})
    assert hits
    assert {h.doc_id for h in hits} == {lambda_doc}
    assert kb.search("statement", k=5, filters={"source": "elsewhere"}) == []
    assert {h.metadata["type"] for h in kb.search("statement", k=5, filters={"metadata": {"type": "txt"}})} == {"txt"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": ""}, "non-empty"),
        ({"query": "x", "k": 0}, "k must be an integer from 1 to 100"),
        ({"query": "x", "k": 101}, "k must be an integer from 1 to 100"),
        ({"query": "x", "filters": {"colour": "red"}}, "unknown filter 'colour'"),
        ({"query": "x", "filters": {"updated_after": "yesterday"}}, "ISO-8601"),
        ({"query": "x" * 2001}, "limit is 2000"),
    ],
)
def test_bad_search_input_is_rejected_clearly(built_kb_path: Path, kwargs: dict[str, object], message: str) -> None:
    kb = grounded.open(built_kb_path, create=False)
    with pytest.raises(InvalidRequest, match=message):
        kb.search(**kwargs)  # type: ignore[arg-type]


def test_reingesting_unchanged_documents_changes_and_embeds_nothing(tmp_path: Path, corpus: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    first = kb.ingest(corpus)
    again = kb.ingest(corpus)
    assert first.published
    assert first.chunks_embedded > 0
    assert not again.published
    assert again.chunks_embedded == 0
    assert again.documents_unchanged == first.documents_added
    assert kb.version == first.version


def test_changed_document_replaces_its_chunks_everywhere(tmp_path: Path, corpus: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    kb.ingest(corpus)
    before = _chunk_ids(kb)
    (corpus / "lambda.txt").write_text("Zanzibar quokkas annotate lambda expressions.\n", encoding="utf-8")
    stats = kb.ingest(corpus)
    assert stats.documents_updated == 1
    assert stats.chunks_embedded == 1  # only the new text went through the model
    after = _chunk_ids(kb)
    assert len(before - after) > 0
    assert len(after - before) == 1
    assert _vector_count(kb) == len(after)
    assert kb.search("zanzibar quokkas", k=1, mode="bm25")[0].key == "lambda.txt"
    assert kb.search("zanzibar quokkas", k=1, mode="dense")[0].key == "lambda.txt"


def test_removed_document_disappears_from_both_indexes(tmp_path: Path, corpus: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    kb.ingest(corpus)
    (corpus / "assert.txt").unlink()
    stats = kb.ingest(corpus)
    assert stats.documents_deleted == 1
    for mode in ("bm25", "dense"):
        hits = kb.search("assert statement AssertionError __debug__", k=50, mode=mode)  # type: ignore[arg-type]
        assert "assert.txt" not in {h.key for h in hits}
    assert _vector_count(kb) == len(_chunk_ids(kb))


class _FailingConnector:
    """Yields one good page, then fails: a sync that dies half-way."""

    name = "failing"

    def streams(self) -> list[StreamSpec]:
        return [StreamSpec(name="docs")]

    def read(self, stream: str, cursor: object) -> object:
        yield Page(records=[Document(key="new", text="A brand new document about zebras.")])
        raise RuntimeError("connection lost")


def test_failed_sync_keeps_the_last_good_version(tmp_path: Path, corpus: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    kb.ingest(corpus, source="reference")
    version, chunks = kb.version, _chunk_ids(kb)
    with pytest.raises(RuntimeError, match="connection lost"):
        kb.sync("zoo", _FailingConnector())  # type: ignore[arg-type]
    assert kb.version == version
    assert _chunk_ids(kb) == chunks
    assert list((tmp_path / "kb" / "staging").iterdir()) == []
    assert kb.ingest(corpus, source="reference").documents_unchanged == len(list(corpus.iterdir()))


def test_unreadable_file_is_reported_and_its_documents_kept(tmp_path: Path, corpus: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    kb.ingest(corpus)
    (corpus / "while.txt").write_bytes(b"\xff\xfe\x00binary")
    stats = kb.ingest(corpus)
    assert any(s.startswith("while.txt") and "binary" in s for s in stats.skipped)
    assert "while.txt" in {h.key for h in kb.search("while loop", k=10)}


def test_empty_knowledge_base_says_how_to_fill_it(tmp_path: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    with pytest.raises(NoPublishedVersion, match="grounded ingest"):
        kb.search("anything")


def test_corrupt_version_is_reported(tmp_path: Path, corpus: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    kb.ingest(corpus)
    store = tmp_path / "kb" / "versions" / str(kb.version) / "store.duckdb"
    store.write_bytes(b"not a database" * 100)
    with pytest.raises(CorruptKnowledgeBase, match="cannot open"):
        grounded.open(tmp_path / "kb", create=False).search("with")


@pytest.mark.parametrize("name", ["fts_main_chunks", "FTS_extra"])
def test_source_names_of_the_full_text_index_are_reserved(tmp_path: Path, corpus: Path, name: str) -> None:
    kb = grounded.open(tmp_path / "kb")
    with pytest.raises(InvalidRequest, match="reserved"):
        kb.ingest(corpus, source=name)
    assert kb.version is None  # nothing was published


def test_ingest_into_a_configured_source_is_refused(tmp_path: Path, corpus: Path) -> None:
    """Issue 23, item 3: `grounded ingest --source NAME` would have dropped NAME's configured ACL."""
    sources = {"private": {"type": "files", "acl": ["staff"], "params": {"path": str(corpus)}}}
    kb = grounded.open(tmp_path / "kb", sources=sources)
    with pytest.raises(InvalidRequest, match=r"'private' is configured in grounded\.toml.*grounded sync private"):
        kb.ingest(corpus, source="private")
    assert kb.version is None  # nothing was written
    # The folder's default name is checked too: `grounded ingest private/` is the same mistake.
    with pytest.raises(InvalidRequest, match="configured"):
        kb.ingest(write_topics(tmp_path / "private", ("pass",)))
    assert kb.ingest(corpus, source="elsewhere").documents_added > 0


def test_ingest_into_a_source_synced_from_config_is_refused(tmp_path: Path, corpus: Path) -> None:
    """A source synced from grounded.toml keeps its data when later unconfigured; ingest must not overwrite it."""
    from grounded.ingest.sources import sync_sources

    sources = {"private": {"type": "files", "acl": ["staff"], "params": {"path": str(corpus)}}}
    kb = grounded.open(tmp_path / "kb", sources=sources)
    assert all(r.ok for r in sync_sources(kb.store, kb.settings))
    unconfigured = grounded.open(tmp_path / "kb", create=False)
    with pytest.raises(InvalidRequest, match="synced from a configured source"):
        unconfigured.ingest(corpus, source="private")
    hits = unconfigured.search("with statement", k=1, acl_groups=[])
    assert not hits  # the documents kept their ACL


def test_stats_report_where_faiss_searches(built_kb_path: Path) -> None:
    kb = grounded.open(built_kb_path, create=False)
    expected = "cuda" if gpu_count() else "cpu"
    assert kb.stats()["devices"]["faiss"] == expected
    assert kb.snapshot().vectors.device == expected
    assert grounded.open(built_kb_path, create=False, index={"device": "cpu"}).stats()["devices"]["faiss"] == "cpu"


@pytest.mark.skipif(gpu_count() > 0, reason="this machine has a GPU that FAISS sees")
def test_insisting_on_a_gpu_without_one_says_how_to_get_one(built_kb_path: Path) -> None:
    kb = grounded.open(built_kb_path, create=False, index={"device": "cuda"})
    with pytest.raises(ConfigError, match=r"grounded\[gpu\]"):
        kb.search("loop over a sequence", k=3)
