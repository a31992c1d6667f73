"""In-memory BM25 posting lists against DuckDB's own match_bm25 on the same fts index."""

from __future__ import annotations

from pathlib import Path
from pydoc_data.topics import topics

import duckdb
import numpy as np
import pytest

from indexes.bm25 import Bm25Postings, ascii_tokens
from indexes.duckdb_store import fts_extension_path

QUERIES = (
    "with statement context manager __exit__",
    "Break out of the innermost loop!",
    "lambda",
    "the and of or",  # stopwords only: nothing matches
    "naïve café exceptions",  # accents are stripped like the index's
    "zzzz-not-a-word",
    "return finally return",  # a repeated term counts once, as in match_bm25
    "C++ & Java's `code`: e-mail foo_bar 3rd\ttry\x0bvertical|pipe\\slash",  # the tokenizer's edges
)


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path: Path = tmp_path_factory.mktemp("bm25") / "fts.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f"LOAD '{fts_extension_path()}'")
    con.execute("CREATE TABLE chunks (chunk_id BIGINT, search_text VARCHAR)")
    # Paragraphs of real reference text; ids far from 0..n so docid and chunk id differ.
    paragraphs = [p for text in topics.values() for p in text.split("\n\n") if p.strip()][:1500]
    con.executemany("INSERT INTO chunks VALUES (?, ?)", [(10_000 + 7 * i, p) for i, p in enumerate(paragraphs)])
    con.execute(
        "PRAGMA create_fts_index('chunks', 'chunk_id', 'search_text', overwrite=1, "
        "stemmer='porter', stopwords='english', strip_accents=1, lower=1)"
    )
    return con


def reference(con: duckdb.DuckDBPyConnection, query: str, k: int) -> list[tuple[int, float]]:
    rows = con.execute(
        "SELECT chunk_id, score FROM (SELECT chunk_id, fts_main_chunks.match_bm25(chunk_id, ?) AS score "
        "FROM chunks) WHERE score IS NOT NULL ORDER BY score DESC, chunk_id LIMIT ?",
        [query, k],
    ).fetchall()
    return [(int(c), float(s)) for c, s in rows]


@pytest.mark.parametrize("query", QUERIES)
def test_scores_match_duckdb_match_bm25(con: duckdb.DuckDBPyConnection, query: str) -> None:
    postings = Bm25Postings.load(con)
    expected = reference(con, query, 50)
    got = postings.top(con, query, 50)
    assert [c for c, _ in got] == [c for c, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-5)


def test_every_matching_chunk_is_scored(con: duckdb.DuckDBPyConnection) -> None:
    postings = Bm25Postings.load(con)
    assert len(postings.top(con, "statement", 100_000)) == len(reference(con, "statement", 100_000)) > 50


def test_allowed_restricts_to_those_chunks_in_score_order(con: duckdb.DuckDBPyConnection) -> None:
    postings = Bm25Postings.load(con)
    full = reference(con, "exception handler", 1000)
    allowed = np.array([c for c, _ in full[1::3]], dtype=np.int64)
    got = postings.top(con, "exception handler", 5, allowed)
    assert [c for c, _ in got] == [c for c, _ in full[1::3]][:5]


def test_custom_k1_and_b_match_match_bm25_parameters(con: duckdb.DuckDBPyConnection) -> None:
    postings = Bm25Postings.load(con, k1=0.9, b=0.4)
    rows = con.execute(
        "SELECT chunk_id, score FROM (SELECT chunk_id, fts_main_chunks.match_bm25(chunk_id, ?, k := 0.9, b := 0.4) "
        "AS score FROM chunks) WHERE score IS NOT NULL ORDER BY score DESC, chunk_id LIMIT 20",
        ["generator expression"],
    ).fetchall()
    assert [c for c, _ in postings.top(con, "generator expression", 20)] == [int(c) for c, _ in rows]


def test_empty_index_scores_nothing(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "empty.duckdb"))
    con.execute(f"LOAD '{fts_extension_path()}'")
    con.execute("CREATE TABLE chunks (chunk_id BIGINT, search_text VARCHAR)")
    con.execute("PRAGMA create_fts_index('chunks', 'chunk_id', 'search_text', overwrite=1)")
    postings = Bm25Postings.load(con)
    assert postings.top(con, "anything", 10) == []


def test_python_terms_equal_duckdb_terms_for_every_ascii_word(con: duckdb.DuckDBPyConnection) -> None:
    postings = Bm25Postings.load(con)
    words = sorted({w for w in ascii_tokens(" ".join(topics.values())) if w.isascii()})
    assert len(words) > 3000
    duck = con.execute(
        "SELECT list(termid ORDER BY termid) FROM fts_main_chunks.dict "
        "WHERE term IN (SELECT DISTINCT stem(unnest(fts_main_chunks.tokenize(?)), 'porter'))",
        [" ".join(words)],
    ).fetchone()
    assert duck is not None
    assert postings.term_ids(con, " ".join(words)).tolist() == duck[0]


def test_non_ascii_query_uses_the_index_tokenizer(con: duckdb.DuckDBPyConnection) -> None:
    postings = Bm25Postings.load(con)
    assert postings.term_ids(con, "ÉXCEPTIONS").tolist() == postings.term_ids(con, "exceptions").tolist() != []
