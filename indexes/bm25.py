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

A version made of several segments (:mod:`indexes.versions`) has one fts index per segment.
:meth:`Bm25Postings.load_layers` reads each segment's raw term frequencies and document lengths,
drops the chunks the version deleted, and weighs every posting with the statistics of the whole
version (live chunk count, average length, document frequency), exactly as one index over the
live chunks would: a :class:`ShardedBm25` holds one part per shard, each scored independently
and merged by score, then chunk id, so its top-k equals the unsharded top-k.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import Stemmer

from indexes.fanout import fan_out

__all__ = ["FTS_SCHEMA", "Bm25Postings", "ShardedBm25", "load_layers"]

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


def _query_stems_sql(schema: str) -> str:
    return f"SELECT DISTINCT stem(unnest({schema}.tokenize($q)), $stemmer)"


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
    """The schema whose ``tokenize`` macro splits a non-ASCII query (any segment's: all are equal)."""

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
        else:
            rows = con.execute(_query_stems_sql(self.tokenizer), {"q": query, "stemmer": self.stemmer}).fetchall()
            stems = {str(r[0]) for r in rows}
        return np.array(sorted(self.vocabulary[s] for s in stems if s in self.vocabulary), dtype=np.int64)

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
        return self.top_terms(self.term_ids(con, query), k, allowed)

    def top_terms(self, term_ids: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """:meth:`top` for term ids already looked up."""
        docids, scores = self.scores(term_ids)
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


@dataclass(frozen=True, slots=True)
class ShardedBm25:
    """One :class:`Bm25Postings` per shard, sharing one vocabulary and the version's statistics."""

    parts: tuple[Bm25Postings, ...]

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def top(
        self, con: duckdb.DuckDBPyConnection, query: str, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The top-``k`` over all shards: each shard's top-``k`` (ties at its cut included), merged."""
        if not self.parts:
            return []
        term_ids = self.parts[0].term_ids(con, query)
        if len(self.parts) == 1:
            return self.parts[0].top_terms(term_ids, k, allowed)
        found = fan_out(lambda part: part.top_terms(term_ids, k, allowed), self.parts)
        merged = [hit for hits in found for hit in hits]
        merged.sort(key=lambda hit: (-hit[1], hit[0]))
        return merged[:k]


def _layer(con: duckdb.DuckDBPyConnection, alias: str, deleted: np.ndarray) -> dict[str, np.ndarray]:
    """One segment's live fts documents and (term, document, tf) triples."""
    schema = f"{alias}.{FTS_SCHEMA}"
    docs = con.execute(f"SELECT docid, name, len FROM {schema}.docs ORDER BY docid").fetchnumpy()
    docids = np.asarray(docs["docid"], dtype=np.int64)
    names = np.asarray(docs["name"], dtype=np.int64)
    lengths = np.asarray(docs["len"], dtype=np.float64)
    terms = con.execute(f"SELECT termid, term FROM {schema}.dict ORDER BY termid").fetchnumpy()
    tf = con.execute(
        f"SELECT termid, docid, count(*) AS tf FROM {schema}.terms GROUP BY termid, docid ORDER BY termid, docid"
    ).fetchnumpy()
    size = int(docids.max()) + 1 if len(docids) else 0
    live_of = np.zeros(size, dtype=bool)
    live_of[docids] = ~np.isin(names, deleted)
    chunk_of = np.full(size, -1, dtype=np.int64)
    chunk_of[docids] = names
    length_of = np.zeros(size, dtype=np.float64)
    length_of[docids] = lengths
    t_ids = np.asarray(tf["termid"], dtype=np.int64)
    t_docs = np.asarray(tf["docid"], dtype=np.int64)
    keep = live_of[t_docs] if len(t_docs) else np.zeros(0, dtype=bool)
    return {
        "term_strings": np.asarray(terms["term"], dtype=object),
        "term_local": np.asarray(terms["termid"], dtype=np.int64),
        "termid": t_ids[keep],
        "chunk": chunk_of[t_docs[keep]],
        "length": length_of[t_docs[keep]],
        "tf": np.asarray(tf["tf"], dtype=np.float64)[keep],
        "live_lengths": lengths[live_of[docids]],
    }


def load_layers(
    con: duckdb.DuckDBPyConnection,
    layers: Sequence[tuple[str, int, np.ndarray]],
    *,
    stemmer: str = "porter",
    k1: float = 1.2,
    b: float = 0.75,
) -> ShardedBm25:
    """Postings of segments ``(catalog alias, shard, deleted chunk ids)`` with global statistics."""
    read = [(shard, _layer(con, alias, deleted)) for alias, shard, deleted in layers]
    words = sorted({str(w) for _, layer in read for w in layer["term_strings"]})
    vocabulary = {w: i for i, w in enumerate(words)}
    n_terms = len(words)
    lengths = np.concatenate([layer["live_lengths"] for _, layer in read]) if read else np.zeros(0)
    num_docs = len(lengths)
    avgdl = float(lengths.sum() / num_docs) if num_docs else 1.0
    global_ids = []
    for _, layer in read:
        local_to_global = np.full(int(layer["term_local"].max(initial=-1)) + 1, -1, dtype=np.int64)
        local_to_global[layer["term_local"]] = [vocabulary[str(w)] for w in layer["term_strings"]]
        global_ids.append(local_to_global[layer["termid"]])
    df = np.bincount(np.concatenate(global_ids), minlength=n_terms) if global_ids else np.zeros(n_terms)
    idf = np.log10((num_docs - df + 0.5) / (df + 0.5) + 1)  # DuckDB's log() is base 10, as match_bm25 uses it
    parts = []
    tokenizer = f"{layers[0][0]}.{FTS_SCHEMA}" if layers else FTS_SCHEMA
    for shard in sorted({shard for shard, _ in read}):
        mine = [(layer, gids) for (s, layer), gids in zip(read, global_ids, strict=True) if s == shard]
        term = np.concatenate([gids for _, gids in mine])
        chunk = np.concatenate([layer["chunk"] for layer, _ in mine])
        tf = np.concatenate([layer["tf"] for layer, _ in mine])
        length = np.concatenate([layer["length"] for layer, _ in mine])
        weight = idf[term] * (tf * (k1 + 1)) / (tf + k1 * (1 - b + b * (length / avgdl)))
        # Dense local document numbers for this shard's chunks.
        chunk_ids, docid = np.unique(chunk, return_inverse=True)
        order = np.lexsort((docid, term))
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(term, minlength=n_terms), out=indptr[1:])
        parts.append(
            Bm25Postings(
                indptr=indptr,
                docids=np.asarray(docid[order], dtype=np.int32 if len(chunk_ids) < 2**31 else np.int64),
                weights=np.asarray(weight[order], dtype=np.float32),
                chunk_ids=np.asarray(chunk_ids, dtype=np.int64),
                vocabulary=vocabulary,
                stemmer=stemmer,
                k1=k1,
                b=b,
                tokenizer=tokenizer,
            )
        )
    return ShardedBm25(tuple(parts))
