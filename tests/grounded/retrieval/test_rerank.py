"""The rerank stage with a real reranker, trained tiny here (one layer, pseudo-queries of the test KB).

Each test module gets its own model cache (``GROUNDED_MODEL_CACHE``), so nothing here reads or
changes the reranker this machine has active.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import grounded
from grounded.checks.rerank import RerankRecipe, active_reranker_dir, train_reranker
from grounded.errors import ConfigError
from grounded.retrieval.rerank import NO_MODEL, Reranker
from grounded.tune.rerank import pseudo_queries
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(600)

QUERIES = (
    "How do I leave the innermost loop early?",
    "What happens when the with block raises an exception?",
    "Which statement skips to the next iteration?",
    "What does the else clause of a loop do?",
)
TINY = RerankRecipe(layers=1, max_tokens=64, batch_size=8, max_train_pairs=96, negatives=2)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.mktemp("models")
        mp.setenv("GROUNDED_MODEL_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def tiny_reranker(model_cache: Path, built_kb_path: Path) -> Path:
    kb = grounded.open(built_kb_path, create=False)
    items = pseudo_queries(kb.store, limit=40)
    path, meta = train_reranker(items, TINY, name="test", log=lambda _: None)
    assert meta["train_pairs"] > 20
    assert active_reranker_dir() == path
    return path


def _open(path: Path, rerank: str, **search: object) -> grounded.KnowledgeBase:
    return grounded.open(path, create=False, search={"rerank": rerank, **search})


def test_reranking_reorders_the_fused_head_deterministically(tiny_reranker: Path, built_kb_path: Path) -> None:
    fused = _open(built_kb_path, "off")
    reranked = _open(built_kb_path, "auto", rerank_k=6)
    changed = 0
    for query in QUERIES:
        before = [h.chunk_id for h in fused.search(query, k=6)]
        first = reranked.search(query, k=6)
        again = reranked.search(query, k=6)
        after = [h.chunk_id for h in first]
        assert after == [h.chunk_id for h in again]
        assert [h.rerank_score for h in first] == [h.rerank_score for h in again]
        assert sorted(after) == sorted(before)  # the same head, reordered
        assert all(h.rerank_score is not None for h in first)
        changed += after != before
    assert changed >= 1


def test_reranking_keeps_the_filters(tiny_reranker: Path, built_kb_path: Path) -> None:
    reranked = _open(built_kb_path, "auto")
    top = reranked.search(QUERIES[0], k=3)
    doc = top[0].doc_id
    only = reranked.search(QUERIES[0], k=10, filters={"doc_id": [doc]})
    assert only
    assert {h.doc_id for h in only} == {doc}
    assert reranked.search(QUERIES[0], k=5, filters={"source": "nowhere"}) == []


def test_a_served_query_records_the_stage(tiny_reranker: Path, built_kb_path: Path) -> None:
    kb = _open(built_kb_path, "auto")
    trace: dict[str, object] = {}
    kb.store.view().search(QUERIES[0], 5, trace=trace)
    stage = trace["rerank"]
    assert isinstance(stage, dict)
    assert stage["status"] == "reranked"
    assert stage["model"] == Reranker(tiny_reranker).fingerprint
    assert stage["ms"] > 0


def test_an_answer_carries_the_stage_in_its_trace_and_timings(
    tiny_reranker: Path,
    built_kb_path: Path,
    fake_backend: str,  # noqa: F811
) -> None:
    kb = grounded.open(
        built_kb_path,
        create=False,
        search={"rerank": "auto"},
        experts={"answer": {"backend": fake_backend, "model": "echo"}},
    )
    answer = kb.ask(QUERIES[0], use_cache=False)
    stage = answer.trace["retrieval"]["rerank"]
    assert stage["status"] == "reranked"
    assert answer.timings["rerank_ms"] == stage["ms"]
    assert answer.timings["rerank_ms"] <= answer.timings["retrieve_ms"]


def test_without_a_model_search_is_unchanged_and_says_why(
    built_kb_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROUNDED_MODEL_CACHE", str(tmp_path / "empty"))
    auto = _open(built_kb_path, "auto")
    assert auto.store.reranker is not None
    assert not auto.store.reranker.available
    assert "grounded tune reranker" in auto.store.reranker.status
    trace: dict[str, object] = {}
    hits = auto.store.view().search(QUERIES[0], 5, trace=trace)
    plain = _open(built_kb_path, "off").search(QUERIES[0], k=5)
    assert [h.chunk_id for h in hits] == [h.chunk_id for h in plain]
    assert trace["rerank"] == {"status": "no model", "detail": NO_MODEL}
    with pytest.raises(ConfigError, match="requires one"):
        _open(built_kb_path, "on").search(QUERIES[0], k=5)
