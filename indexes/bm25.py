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

A segmented version (:mod:`indexes.segments`) has one fts index per segment; :meth:`Bm25Postings.merge`
reads them all, leaves out the chunks of dead documents and weighs every posting with the
statistics of the live union (document count, average length, each term's document frequency),
so the scores are those one index over the union would give.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
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
    tokenizer: str = FTS_SCHEMA
    """The schema whose ``tokenize`` macro splits a non-ASCII query (a segment's, when merged)."""
    merged: bool = False

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

    @classmethod
    def merge(
        cls,
        con: duckdb.DuckDBPyConnection,
        parts: Sequence[tuple[str, str]],
        *,
        stemmer: str = "porter",
        k1: float = 1.2,
        b: float = 0.75,
    ) -> Bm25Postings:
        """One index over several fts indexes: ``parts`` are ``(catalog, SQL of its dead chunk
        ids)``; the weights use the statistics of the live documents of all parts together."""
        vocabulary: dict[str, int] = {}
        chunk_parts: list[np.ndarray] = []
        len_parts: list[np.ndarray] = []
        post_terms: list[np.ndarray] = []
        post_docs: list[np.ndarray] = []
        post_tf: list[np.ndarray] = []
        offset = 0
        for cat, dead_sql in parts:
            fts = f"{cat}.{FTS_SCHEMA}"
            docs = con.execute(
                f"SELECT docid, name, len FROM {fts}.docs WHERE name NOT IN ({dead_sql}) ORDER BY docid"
            ).fetchnumpy()
            top = con.execute(f"SELECT coalesce(max(docid), -1) FROM {fts}.docs").fetchone()
            local = np.asarray(docs["docid"], dtype=np.int64)
            remap = np.full(int(top[0] if top else -1) + 1, -1, dtype=np.int64)
            remap[local] = offset + np.arange(len(local), dtype=np.int64)
            words = con.execute(f"SELECT termid, term FROM {fts}.dict").fetchall()
            to_global = np.full(max((int(t) for t, _ in words), default=-1) + 1, -1, dtype=np.int64)
            for termid, term in words:
                to_global[int(termid)] = vocabulary.setdefault(str(term), len(vocabulary))
            found = con.execute(
                f"SELECT termid, docid, count(*) AS tf FROM {fts}.terms GROUP BY termid, docid"
            ).fetchnumpy()
            gdocs = remap[np.asarray(found["docid"], dtype=np.int64)]
            keep = gdocs >= 0
            post_terms.append(to_global[np.asarray(found["termid"], dtype=np.int64)][keep])
            post_docs.append(gdocs[keep])
            post_tf.append(np.asarray(found["tf"], dtype=np.float64)[keep])
            chunk_parts.append(np.asarray(docs["name"], dtype=np.int64))
            len_parts.append(np.asarray(docs["len"], dtype=np.float64))
            offset += len(local)
        chunk_ids = np.concatenate(chunk_parts) if chunk_parts else np.zeros(0, dtype=np.int64)
        lengths = np.concatenate(len_parts) if len_parts else np.zeros(0)
        terms = np.concatenate(post_terms) if post_terms else np.zeros(0, dtype=np.int64)
        docids = np.concatenate(post_docs) if post_docs else np.zeros(0, dtype=np.int64)
        tf = np.concatenate(post_tf) if post_tf else np.zeros(0)
        # Grouped by term is all the CSR slices need (scores() sums with bincount, in any order):
        # a stable radix argsort, not a lexsort, which took seconds on millions of postings.
        order = np.argsort(terms, kind="stable")
        terms, docids, tf = terms[order], docids[order], tf[order]
        n_terms = len(vocabulary)
        df = np.bincount(terms, minlength=n_terms).astype(np.float64)
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df.astype(np.int64), out=indptr[1:])
        n_docs = len(chunk_ids)
        avgdl = float(lengths.sum() / n_docs) if n_docs else 1.0
        # The same formula as _POSTINGS_SQL (DOUBLE, then FLOAT), with the union's statistics.
        idf = np.log10((n_docs - df[terms] + 0.5) / (df[terms] + 0.5) + 1)  # DuckDB log() is base 10
        norm = tf + k1 * (1 - b + b * (lengths[docids] / avgdl))
        weights = (idf * (tf * (k1 + 1)) / norm).astype(np.float32)
        return cls(
            indptr=indptr,
            docids=docids.astype(np.int32 if n_docs < 2**31 else np.int64),
            weights=weights,
            chunk_ids=chunk_ids,
            vocabulary=vocabulary,
            stemmer=stemmer,
            k1=k1,
            b=b,
            tokenizer=f"{parts[0][0]}.{FTS_SCHEMA}" if parts else FTS_SCHEMA,
            merged=True,
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
        if self.merged:
            rows = con.execute(
                f"SELECT DISTINCT stem(unnest({self.tokenizer}.tokenize($q)), $stemmer)",
                {"q": query, "stemmer": self.stemmer},
            ).fetchall()
            return np.array(
                sorted(self.vocabulary[str(r[0])] for r in rows if str(r[0]) in self.vocabulary), dtype=np.int64
            )
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
