"""``grounded tune reranker``: training queries for the reranker (:mod:`grounded.checks.rerank`).

Two sources of :class:`~grounded.checks.rerank.RerankQuery` items, both with the candidates
hybrid search (never reranked) returns on the knowledge base's current version, so the model
learns to order exactly what it will be asked to order:

* :func:`labelled_queries`: queries with a test of relevance per hit (e.g. a BEIR qrels file:
  ``benchmarks/retrieval.py --train-rerank``);
* :func:`pseudo_queries`: no labels needed: a question made from one sentence of a sampled
  chunk (a name or number blanked out, as the checks' gate recipe does, or the sentence's
  rarer words), whose relevant candidate is that chunk. Any user can run it on their own KB.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from grounded.checks.data import pseudo_question, rng_for
from grounded.checks.rerank import RerankQuery
from grounded.checks.text import content_words, split_sentences
from grounded.retrieval import search
from grounded.store import KnowledgeStore
from indexes.base import Hit

__all__ = ["candidates", "labelled_queries", "pseudo_queries"]

DEPTH = 20
"""Candidates per training query: the reranker reorders the top few, so hard negatives come from there."""


def candidates(store: KnowledgeStore, query: str, depth: int = DEPTH) -> list[Hit]:
    """Hybrid search's top ``depth`` for ``query`` on the current version, without reranking."""
    return search(store.snapshot(), store.embedder, query, k=depth, settings=store.settings.search)


def labelled_queries(
    store: KnowledgeStore,
    queries: Iterable[tuple[str, str, Callable[[Hit], bool]]],
    *,
    source: str,
    depth: int = DEPTH,
) -> Iterator[RerankQuery]:
    """``(group, query, is_relevant)`` items as training queries (``group``: the query id)."""
    for group, query, is_relevant in queries:
        hits = candidates(store, query, depth)
        relevant = frozenset(i for i, h in enumerate(hits) if is_relevant(h))
        yield RerankQuery(query, tuple((h.title, h.text) for h in hits), relevant, group, source)


def _keyword_query(sentence: str) -> str | None:
    words = [w for w in re.findall(r"[A-Za-z][\w.'-]*", sentence) if w.lower() in content_words(sentence)]
    return " ".join(words[:8]) if len(words) >= 3 else None


def _chunks(store: KnowledgeStore, limit: int) -> list[tuple[int, str, str]]:
    rows = store.snapshot().store.cursor().execute("SELECT chunk_id, text FROM chunks ORDER BY chunk_id").fetchall()
    # A stable sample by hash, spread over the whole knowledge base.
    ranked = sorted(rows, key=lambda r: hashlib.sha256(str(r[0]).encode()).hexdigest())
    return [(int(cid), "", text) for cid, text in ranked[:limit]]


def pseudo_queries(store: KnowledgeStore, *, limit: int = 800, seed: int = 0, depth: int = DEPTH) -> list[RerankQuery]:
    """Pseudo-queries from up to ``limit`` chunks of the knowledge base (see the module docstring);
    a query whose chunk is not among its candidates gets the chunk appended (a positive the
    first stage missed is still a lesson)."""
    out: list[RerankQuery] = []
    for cid, _, text in _chunks(store, limit):
        rng = rng_for(seed, "rerank", cid)
        sentences = [s for s in split_sentences(text) if 6 <= len(s.split()) <= 60]
        if not sentences:
            continue
        sentence = rng.choice(sentences)
        made = pseudo_question(sentence, rng)
        query = made[0] if made is not None else _keyword_query(sentence)
        if not query:
            continue
        hits = candidates(store, query, depth)
        pairs: list[tuple[str, str]] = [(h.title, h.text) for h in hits]
        where = next((i for i, h in enumerate(hits) if h.chunk_id == cid), None)
        if where is None:
            row: Any = store.snapshot().store.chunk_rows([cid]).get(cid, {})
            pairs.append((row.get("title") or "", text))
            where = len(pairs) - 1
        out.append(RerankQuery(query, tuple(pairs), frozenset({where}), f"chunk:{cid}", "pseudo"))
    return out
