"""BM25 over segments with tombstones and shards equals one fts index over the live chunks."""

from __future__ import annotations

from pathlib import Path
from pydoc_data.topics import topics

import duckdb
import numpy as np
import pytest

from indexes.bm25 import load_layers
from indexes.duckdb_store import fts_extension_path
from indexes.faiss_index import VectorIndex
from indexes.segments import LayeredVectors
from tests.indexes.test_bm25 import QUERIES, reference

FTS = (
    "PRAGMA create_fts_index('chunks', 'chunk_id', 'search_text', overwrite=1, "
    "stemmer='porter', stopwords='english', strip_accents=1, lower=1)"
)


def _index(path: Path, rows: list[tuple[int, str]]) -> None:
    con = duckdb.connect(str(path))
    con.execute(f"LOAD '{fts_extension_path()}'")
    con.execute("CREATE TABLE chunks (chunk_id BIGINT, search_text VARCHAR)")
    con.executemany("INSERT INTO chunks VALUES (?, ?)", rows)
    con.execute(FTS)
    con.close()


@pytest.fixture(scope="module")
def layered(tmp_path_factory: pytest.TempPathFactory) -> tuple[duckdb.DuckDBPyConnection, list, set[int]]:
    folder: Path = tmp_path_factory.mktemp("segments")
    paragraphs = [p for text in topics.values() for p in text.split("\n\n") if p.strip()][:900]
    rows = [(10_000 + 7 * i, p) for i, p in enumerate(paragraphs)]
    # Three segments; every fifth chunk of the first two is deleted (replaced or gone).
    parts = [rows[:400], rows[400:700], rows[700:]]
    deleted = {cid for part in parts[:2] for cid, _ in part[::5]}
    con = duckdb.connect()
    con.execute(f"LOAD '{fts_extension_path()}'")
    layers = []
    for n, part in enumerate(parts):
        _index(folder / f"s{n}.duckdb", part)
        con.execute(f"ATTACH '{folder / f's{n}.duckdb'}' AS s{n} (READ_ONLY)")
        layers.append((f"s{n}", n % 2, np.array(sorted(deleted & {c for c, _ in part}), dtype=np.int64)))
    _index(folder / "whole.duckdb", [r for r in rows if r[0] not in deleted])
    whole = duckdb.connect(str(folder / "whole.duckdb"), read_only=True)
    whole.execute(f"LOAD '{fts_extension_path()}'")
    return whole, [con, layers], deleted


@pytest.mark.parametrize("query", QUERIES)
def test_sharded_bm25_over_segments_equals_one_index(layered: tuple, query: str) -> None:
    whole, (con, layers), _ = layered
    postings = load_layers(con, layers)
    assert len(postings.parts) == 2  # two shards, global statistics
    expected = reference(whole, query, 50)
    got = postings.top(con, query, 50)
    assert [c for c, _ in got] == [c for c, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-5)


def test_deleted_chunks_are_never_returned(layered: tuple) -> None:
    _, (con, layers), deleted = layered
    postings = load_layers(con, layers)
    found = {c for c, _ in postings.top(con, "the statement", 10_000)}
    assert found
    assert not found & deleted


def test_layered_vectors_merge_to_the_exact_top_k() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(600, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(600, dtype=np.int64) * 3
    whole = VectorIndex.build(ids, vectors)
    parts = [VectorIndex.build(ids[i::3], vectors[i::3]) for i in range(3)]
    layered = LayeredVectors(parts, 16)
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    allowed = ids[::2]
    for allow in (None, allowed):
        s1, i1 = whole.search(queries, 10, allowed=allow)
        s2, i2 = layered.search(queries, 10, allowed=allow)
        assert i1.tolist() == i2.tolist()
        np.testing.assert_allclose(s1, s2, rtol=1e-6)
