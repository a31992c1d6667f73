"""``[index] shards = N``: a segment's vectors split by document-id hash into N FAISS files,
searched side by side and merged exactly, so search equals the unsharded knowledge base's."""

from __future__ import annotations

from pathlib import Path

import pytest

import grounded
from grounded.kb import KnowledgeBase
from tests.conftest import write_topics

QUERIES = ("how does a for loop end", "assert statement", "return a value from a function", "while condition")
TOPICS = ("with", "for", "while", "assert", "return", "pass")


def _results(kb: KnowledgeBase) -> dict[tuple[str, str], list[tuple[int, float]]]:
    return {
        (mode, q): [(h.chunk_id, round(h.score, 5)) for h in kb.search(q, k=10, mode=mode)]
        for mode in ("hybrid", "dense", "bm25")
        for q in QUERIES
    }


@pytest.mark.slow
def test_sharded_search_equals_unsharded_top_k(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus", TOPICS)
    kbs = {n: grounded.open(tmp_path / f"kb{n}", index={"shards": n}) for n in (1, 2, 4)}
    for kb in kbs.values():
        kb.ingest(corpus, source="docs")
    # A refresh: a second segment (one document changed, one deleted), its older one's dead chunks
    # removed from every shard.
    (corpus / "for.txt").write_text("The for statement iterates over the items of a sequence.\n", encoding="utf-8")
    (corpus / "pass.txt").unlink()
    for kb in kbs.values():
        kb.ingest(corpus, source="docs")
    want = _results(kbs[1])
    for n, kb in kbs.items():
        assert kb.stats()["shards"] == n
        assert _results(kb) == want, f"{n} shards"
    files = sorted(p.name for p in (tmp_path / "kb4" / "versions" / kbs[4].version).glob("vectors*.faiss"))
    assert files == [f"vectors.shard{k}.faiss" for k in range(4)]
