"""Evidence sentences are computed at ingest and only looked up when answering; knowledge bases
built before sentences were stored still answer (the same answer), and their next ingest adds them."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pytest

import grounded
from grounded.answering.evidence import build_pool
from grounded.answering.types import Citation
from grounded.kb import KnowledgeBase
from indexes.chunking import evidence_sentences
from tests.conftest import write_topics
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

QUESTION = "What does the pass statement do?"


def _open(path: Path, backend: str) -> KnowledgeBase:
    return grounded.open(path, create=False, experts={"answer": {"backend": backend, "model": "echo"}})


@pytest.fixture
def old_layout_kb(built_kb_path: Path, tmp_path: Path) -> Path:
    """A copy of the shared knowledge base as an older grounded wrote it: no sentences table."""
    root = tmp_path / "kb"
    shutil.copytree(built_kb_path, root, ignore=shutil.ignore_patterns("*.lock"))
    store_file = root / "versions" / (root / "CURRENT").read_text().strip() / "store.duckdb"
    with duckdb.connect(str(store_file)) as con:
        con.execute("DROP TABLE sentences")
    return root


def test_ingest_stores_each_chunks_sentences_as_question_time_would_embed_them(built_kb_path: Path) -> None:
    kb = grounded.open(built_kb_path, create=False)
    store = kb.snapshot().store
    rows = store.cursor().execute("SELECT c.chunk_id, d.title, c.text FROM chunks c JOIN documents d USING (doc_id)")
    chunks = rows.fetchall()
    stored = store.sentences([c[0] for c in chunks])
    assert set(stored) == {c[0] for c in chunks}
    for chunk_id, title, text in chunks[:20]:
        expected = evidence_sentences(title, text)
        assert stored[chunk_id].spans == tuple(span for span, _ in expected)
        fresh = kb.embedder.embed([sentence for _, sentence in expected])
        assert stored[chunk_id].vectors.tobytes() == fresh.tobytes()


def test_answering_embeds_no_stored_sentence(
    built_kb_path: Path,
    fake_backend: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kb = _open(built_kb_path, fake_backend)
    embedded: list[str] = []
    real = kb.embedder.embed

    def spy(texts: Sequence[str], **kw: bool) -> np.ndarray:
        embedded.extend(texts)
        return real(texts, **kw)

    monkeypatch.setattr(kb.embedder, "embed", spy)
    answer = kb.ask(QUESTION, use_cache=False)
    assert not answer.abstained
    evidence = {text for c in answer.citations for _, text in evidence_sentences(c.title, c.text)}
    assert evidence
    assert not evidence & set(embedded)  # the question and the draft's sentences only


def test_a_knowledge_base_without_stored_sentences_gives_the_same_answer(
    built_kb_path: Path,
    old_layout_kb: Path,
    fake_backend: str,  # noqa: F811
) -> None:
    stored = _open(built_kb_path, fake_backend).ask(QUESTION, use_cache=False)
    computed = _open(old_layout_kb, fake_backend).ask(QUESTION, use_cache=False)
    assert computed.canonical_json() == stored.canonical_json()


def test_the_next_ingest_stores_sentences_for_every_older_chunk(old_layout_kb: Path, tmp_path: Path) -> None:
    kb = grounded.open(old_layout_kb, create=False)
    stats = kb.ingest(write_topics(tmp_path / "more", ("global",)), source="more")
    assert stats.sentences_embedded > 0
    store = kb.snapshot().store
    ids = [int(r[0]) for r in store.cursor().execute("SELECT chunk_id FROM chunks").fetchall()]
    assert set(store.sentences(ids)) == set(ids)


def test_a_blank_passage_beside_stored_ones_adds_no_sentence(built_kb_path: Path) -> None:
    kb = grounded.open(built_kb_path, create=False)
    view = kb.store.view()
    hit = view.search(QUESTION, 1)[0]
    blank = Citation(1, 0, "", "tool", "", 0, 0, "  ", "tool", None, 1.0, provenance={"tool": "calculate"})
    passage = Citation.from_hit(2, hit, None)
    pool = build_pool(QUESTION, [blank, passage], kb.embedder, view.sentences([hit.chunk_id]))
    assert set(pool.owners) == {2}
    assert pool.vectors.tobytes() == view.sentences([hit.chunk_id])[hit.chunk_id].vectors.tobytes()
