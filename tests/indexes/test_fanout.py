"""Several exact parts searched as one give one exact index's top k, dense and BM25 alike."""

from __future__ import annotations

from pathlib import Path
from pydoc_data.topics import topics

import duckdb
import numpy as np
import pytest

from indexes.bm25 import Bm25Postings
from indexes.duckdb_store import fts_extension_path
from indexes.faiss_index import VectorIndex
from indexes.fanout import FanOutIndex

FTS = (
    "PRAGMA create_fts_index('chunks', 'chunk_id', 'search_text', overwrite=1, "
    "stemmer='porter', stopwords='english', strip_accents=1, lower=1)"
)


def test_parts_by_id_hash_return_the_top_k_of_one_index() -> None:
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((3000, 24)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(3000, dtype=np.int64) * 13 + 5
    one = VectorIndex.build(ids, vectors)
    parts = FanOutIndex([VectorIndex.build(ids[ids % 4 == s], vectors[ids % 4 == s]) for s in range(4)], workers=2)
    queries = rng.standard_normal((20, 24)).astype(np.float32)
    want_scores, want_ids = one.search(queries, 10)
    got_scores, got_ids = parts.search(queries, 10)
    assert got_ids.tolist() == want_ids.tolist()
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6)
    assert parts.ntotal == 3000


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection]:
    """The same paragraphs as one fts index and as two halves (plus a dead chunk in the first)."""
    root: Path = tmp_path_factory.mktemp("split")
    rows = [(10_000 + 7 * i, p) for i, p in enumerate(p for t in topics.values() for p in t.split("\n\n") if p.strip())]
    rows = rows[:1200]
    dead = rows[3]
    for name, part in (("whole", [r for r in rows if r != dead]), ("a", rows[::2]), ("b", rows[1::2])):
        with duckdb.connect(str(root / f"{name}.duckdb")) as con:
            con.execute(f"LOAD '{fts_extension_path()}'")
            con.execute("CREATE TABLE chunks (chunk_id BIGINT, search_text VARCHAR)")
            con.execute("INSERT INTO chunks SELECT unnest(?), unnest(?)", [[r[0] for r in part], [r[1] for r in part]])
            con.execute(FTS)
    whole = duckdb.connect(str(root / "whole.duckdb"), read_only=True)
    whole.execute(f"LOAD '{fts_extension_path()}'")
    both = duckdb.connect(":memory:")
    both.execute(f"LOAD '{fts_extension_path()}'")
    for name in ("a", "b"):
        both.execute(f"ATTACH '{root / name}.duckdb' AS part_{name} (READ_ONLY)")
    both.execute(f"CREATE TABLE dead AS SELECT {dead[0]}::BIGINT AS chunk_id")
    return whole, both


@pytest.mark.parametrize("query", ["with statement context manager", "exception handler", "naïve café exceptions"])
def test_merged_bm25_scores_equal_one_index_over_the_live_union(
    split: tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection], query: str
) -> None:
    whole, both = split
    expected = Bm25Postings.load(whole).top(whole, query, 30)
    merged = Bm25Postings.merge(
        both, [("part_a", "SELECT chunk_id FROM dead"), ("part_b", "SELECT chunk_id FROM dead")]
    )
    got = merged.top(both, query, 30)
    assert [c for c, _ in got] == [c for c, _ in expected] != []
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-5)
