"""BM25 scoring from DuckDB's ``fts`` index tables, held in memory as posting lists.

DuckDB's ``match_bm25`` macro is evaluated once per chunk: every query scans the whole
``chunks`` table (about 80 ms on SciFact's 5k abstracts, linear in the corpus). A published
version never changes, so its ``fts_main_chunks`` tables (``terms``, ``dict``, ``docs``,
``stats``) are read once into a compressed sparse term x document matrix whose entries are
each posting's precomputed BM25 term score; a query is then the sum of its terms' rows.

A query's terms must be exactly the index's. For ASCII queries (nearly all) they are computed
here: the ``tokenize`` macro's punctuation class and whitespace split, and PyStemmer, which
wraps the same libstemmer C code DuckDB's ``stem`` runs. Any other query goes through the
index's own ``tokenize`` macro and ``stem`` in DuckDB, whose Unicode lower-casing and accent
stripping are not re-implemented. Either way the scores are those of ``match_bm25`` up to
float32 rounding (the tests compare both on the same index).

    postings = Bm25Postings.load(con)              # con has fts_main_chunks
    postings.top(con, "protein folding", k=10)     # [(chunk_id, score), ...]
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

import duckdb
import numpy as np
import Stemmer

__all__ = ["FTS_SCHEMA", "Bm25Postings"]

FTS_SCHEMA = "fts_main_chunks"

# The weight of one posting: BM25's idf x saturated, length-normalised tf, as match_bm25 writes it.
_POSTINGS_SQL = f"""
WITH tf AS (
    SELECT termid, docid, count(*) AS tf FROM {FTS_SCHEMA}.terms GROUP BY termid, docid
), stats AS (SELECT num_docs, avgdl FROM {FTS_SCHEMA}.stats)
SELECT tf.termid, tf.docid,
       CAST(log((stats.num_docs - dict.df + 0.5) / (dict.df + 0.5) + 1)
            * (tf.tf * ($k1 + 1)) / (tf.tf + $k1 * (1 - $b + $b * (docs.len / stats.avgdl))) AS FLOAT) AS weight
FROM tf
JOIN {FTS_SCHEMA}.dict AS dict USING (termid)
JOIN {FTS_SCHEMA}.docs AS docs USING (docid)
CROSS JOIN stats
ORDER BY tf.termid, tf.docid
"""

# The tokenize macro's class: digits and ASCII punctuation split words; RE2's \\s is these five.
_SEPARATORS = re.compile(r"""[0-9!@#$%^&*()_+={}\[\]:;<>,.?~\\/|'"`-]+""")
_SPACE = re.compile(r"[\t\n\f\r ]+")
_stemmers = threading.local()  # a PyStemmer object must not be shared between threads


def ascii_tokens(query: str) -> list[str]:
    """The unstemmed tokens ``fts_main_chunks.tokenize`` makes of an ASCII ``query``."""
    return [t for t in _SPACE.split(_SEPARATORS.sub(" ", query.lower())) if t]


def _stem(stemmer: str, words: list[str]) -> list[str]:
    found: Stemmer.Stemmer | None = getattr(_stemmers, stemmer, None)
    if found is None:
        found = Stemmer.Stemmer(stemmer)
        setattr(_stemmers, stemmer, found)
    return list(found.stemWords(words))


_QUERY_TERMS_SQL = f"""
SELECT termid FROM {FTS_SCHEMA}.dict
WHERE term IN (SELECT DISTINCT stem(unnest({FTS_SCHEMA}.tokenize($q)), $stemmer))
ORDER BY termid
"""


@dataclass(frozen=True, slots=True)
class Bm25Postings:
    """Term x document BM25 weights in CSR form, and each fts document's chunk id.

    ``indptr[t]:indptr[t + 1]`` slices term ``t``'s posting list out of ``docids`` and
    ``weights``; ``chunk_ids[docid]`` is the chunk a fts document stands for.
    """

    indptr: np.ndarray
    docids: np.ndarray
    weights: np.ndarray
    chunk_ids: np.ndarray
    vocabulary: dict[str, int] = field(repr=False)
    stemmer: str
    k1: float
    b: float

    @classmethod
    def load(
        cls, con: duckdb.DuckDBPyConnection, *, stemmer: str = "porter", k1: float = 1.2, b: float = 0.75
    ) -> Bm25Postings:
        """Read the fts index of ``chunks`` on ``con`` (``k1``/``b`` as ``match_bm25``'s defaults)."""
        docs = con.execute(f"SELECT docid, name FROM {FTS_SCHEMA}.docs ORDER BY docid").fetchnumpy()
        n_docs = int(docs["docid"][-1]) + 1 if len(docs["docid"]) else 0
        chunk_ids = np.full(n_docs, -1, dtype=np.int64)
        chunk_ids[np.asarray(docs["docid"], dtype=np.int64)] = np.asarray(docs["name"], dtype=np.int64)
        vocabulary = dict(con.execute(f"SELECT term, termid FROM {FTS_SCHEMA}.dict").fetchall())
        n_terms = max(vocabulary.values(), default=-1) + 1
        postings = con.execute(_POSTINGS_SQL, {"k1": k1, "b": b}).fetchnumpy()
        termids = np.asarray(postings["termid"], dtype=np.int64)
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(termids, minlength=n_terms), out=indptr[1:])
        return cls(
            indptr=indptr,
            docids=np.asarray(postings["docid"], dtype=np.int32 if n_docs < 2**31 else np.int64),
            weights=np.asarray(postings["weight"], dtype=np.float32),
            chunk_ids=chunk_ids,
            vocabulary=vocabulary,
            stemmer=stemmer,
            k1=k1,
            b=b,
        )

    @property
    def nbytes(self) -> int:
        """Memory held by the posting lists."""
        return int(self.indptr.nbytes + self.docids.nbytes + self.weights.nbytes + self.chunk_ids.nbytes)

    def term_ids(self, con: duckdb.DuckDBPyConnection, query: str) -> np.ndarray:
        """The index's term ids for ``query``'s distinct stemmed tokens (stopwords have none)."""
        if query.isascii():
            stems = set(_stem(self.stemmer, ascii_tokens(query)))
            return np.array(sorted(self.vocabulary[s] for s in stems if s in self.vocabulary), dtype=np.int64)
        found = con.execute(_QUERY_TERMS_SQL, {"q": query, "stemmer": self.stemmer}).fetchnumpy()
        return np.asarray(found["termid"], dtype=np.int64)

    def scores(self, term_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(docids, scores)`` of every document holding at least one of ``term_ids``."""
        ranges = [(int(self.indptr[t]), int(self.indptr[t + 1])) for t in term_ids if 0 <= t < len(self.indptr) - 1]
        if not ranges:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        docids = np.concatenate([self.docids[s:e] for s, e in ranges])
        weights = np.concatenate([self.weights[s:e] for s, e in ranges])
        # Summed in float64, as match_bm25 sums in DOUBLE, so near-ties order the same way.
        totals = np.bincount(docids, weights=weights.astype(np.float64), minlength=len(self.chunk_ids))
        hit = np.unique(docids)
        return hit, totals[hit]

    def top(
        self, con: duckdb.DuckDBPyConnection, query: str, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-``k`` ``(chunk_id, score)``, best first, ties by chunk id; ``allowed``: chunk ids to keep."""
        docids, scores = self.scores(self.term_ids(con, query))
        chunks = self.chunk_ids[docids]
        if allowed is not None:
            keep = np.isin(chunks, allowed)
            chunks, scores = chunks[keep], scores[keep]
        if len(chunks) > k:
            # Everything scoring at least the k-th best, so ties at the cut are settled by id below.
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = scores >= kth
            chunks, scores = chunks[keep], scores[keep]
        order = np.lexsort((chunks, -scores))[:k]
        return [(int(chunks[i]), float(scores[i])) for i in order]
