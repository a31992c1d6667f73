"""Tool retrieval: a tool's name, description and parameter docs indexed like passages.

Hundreds of tool schemas do not fit a small model's prompt, so each question first retrieves
its few best tools. :class:`ToolIndex` is a knowledge base of its own (``<kb>/tools/``), built
and read with the same machinery as passages: one document per tool (:func:`tool_document`),
written by :class:`~grounded.ingest.builder.VersionBuilder` (BM25 + FAISS, embeddings of
unchanged tools reused), published as immutable versions, searched by BM25 and dense retrieval
fused with the passage search's own :func:`~grounded.retrieval.search.fuse`. A tool's groups are
its document's ACL, so the index never offers a caller a tool it may not use.

:meth:`ToolIndex.retrieve` returns :class:`ToolCandidates`: the tools best first, each with its
fused score, BM25 and dense ranks and its cosine similarity to the question, and the question's
:class:`~grounded.tools.gate.RelevanceFeatures`. Whether any tool fits ("no call" otherwise) is
decided by the trained tool gate when one is given (:mod:`grounded.tools.gate`), else by
``relevance`` (the best cosine) against a measured threshold (``[tools] min_relevance``).

Example::

    index = ToolIndex(Path("kb") / "tools", settings, embedder)
    index.update(catalog.retrievable(catalog.tools()), catalog.groups)
    found = index.retrieve("What's the weather in Oslo?", k=5)
    found.names, found.relevance             # ('weather_current', ...), 0.63
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from connectors.base import Document, Page
from grounded.config import ChunkSettings, Settings
from grounded.experts.embedding import SentenceEmbedder
from grounded.ingest.builder import VersionBuilder
from grounded.retrieval import Snapshot, fuse, restrict
from grounded.tools.base import AnyTool
from grounded.tools.gate import GateDecision, RelevanceFeatures, ToolGate
from indexes.base import SearchFilters
from indexes.duckdb_store import DuckDBStore
from indexes.versions import VersionStore

__all__ = ["ToolCandidate", "ToolCandidates", "ToolIndex", "tool_document", "tool_text"]

SOURCE = "tools"
FINGERPRINT_KEY = "tools_fingerprint"


def _words(name: str) -> str:
    """``get_weatherForecast`` -> ``get weather forecast``: names as words BM25 and the embedder read."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return re.sub(r"[_.\-/]+", " ", spaced).lower().strip()


def tool_text(tool: AnyTool) -> str:
    """What is indexed of a tool: its name as words, description, and each parameter's docs."""
    spec = tool.spec
    params = []
    for pname, schema in (spec.parameters.get("properties") or {}).items():
        doc = str(schema.get("description", "")) if isinstance(schema, Mapping) else ""
        params.append(f"{_words(pname)}: {doc}".rstrip(": "))
    text = f"{_words(tool.name)}. {spec.description}"
    if params:
        text += " Parameters: " + "; ".join(params) + "."
    return text


def tool_document(tool: AnyTool, groups: Sequence[str] = ()) -> Document:
    return Document(
        key=tool.name, text=tool_text(tool), title=tool.name, metadata={"tool": tool.name}, acl=tuple(groups)
    )


@dataclass(frozen=True, slots=True)
class ToolCandidate:
    """One retrieved tool: fused score, ranks on each side, cosine similarity to the question."""

    name: str
    score: float
    similarity: float
    bm25_rank: int | None
    dense_rank: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "score": round(self.score, 5),
            "similarity": round(self.similarity, 4),
            "bm25_rank": self.bm25_rank,
            "dense_rank": self.dense_rank,
        }


@dataclass(frozen=True, slots=True)
class ToolCandidates:
    """The tools retrieved for one question, best first, and whether any is relevant enough."""

    candidates: tuple[ToolCandidate, ...] = ()
    threshold: float = 0.0
    index_version: str | None = None
    elapsed_ms: float = 0.0
    pool: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    features: RelevanceFeatures = field(default_factory=RelevanceFeatures)
    gate: GateDecision | None = None
    """The trained gate's verdict; ``None``: the threshold on ``relevance`` decides."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.candidates)

    @property
    def relevance(self) -> float:
        """The best cosine similarity of the question to a candidate (-1 when there is none)."""
        return max((c.similarity for c in self.candidates), default=-1.0)

    @property
    def relevant(self) -> bool:
        """Whether a tool fits: the gate's verdict when there is one, else the cosine threshold."""
        if not self.candidates:
            return False
        return self.gate.relevant if self.gate is not None else self.relevance >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidates": [c.to_dict() for c in self.candidates],
            "relevance": round(self.relevance, 4),
            "threshold": self.threshold,
            "relevant": self.relevant,
            "decided_by": "gate" if self.gate is not None else "threshold",
            "gate": self.gate.to_dict() if self.gate is not None else None,
            "features": self.features.to_dict(),
            "index_version": self.index_version,
            "pool": self.pool,
            "elapsed_ms": round(self.elapsed_ms, 2),
        }


def fingerprint(documents: Sequence[Document], embedder: SentenceEmbedder) -> str:
    payload = json.dumps([embedder.fingerprint, *[[d.key, d.text, list(d.acl)] for d in documents]], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class ToolIndex:
    """The versioned index of the retrievable tools in ``path`` (see the module docstring)."""

    def __init__(self, path: Path, settings: Settings, embedder: SentenceEmbedder, *, keep: int = 2) -> None:
        self.path = Path(path)
        # One chunk per tool: a tool's description and parameter docs are one unit of meaning.
        self.settings = settings.model_copy(update={"chunking": ChunkSettings(max_chars=4000), "keep_versions": keep})
        self.embedder = embedder
        self.versions = VersionStore.open(self.path, create=True, keep=keep)
        self._snapshot: Snapshot | None = None
        self._fingerprint: str | None = None
        self._lock = threading.Lock()

    def update(self, tools: Mapping[str, AnyTool], groups: Mapping[str, Sequence[str]] | None = None) -> str | None:
        """Index exactly ``tools`` (each with its ``groups``); publishes a version only on a change.

        Returns the version the index reads now (``None``: no tools were ever indexed)."""
        groups = groups or {}
        documents = [tool_document(t, groups.get(n, t.groups)) for n, t in sorted(tools.items())]
        wanted = fingerprint(documents, self.embedder)
        with self._lock:
            if wanted == self._fingerprint:
                return self.versions.current_id()
            current = self.versions.current_id()
            if current is not None and self._open(current).store.meta(FINGERPRINT_KEY) == wanted:
                self._fingerprint = wanted
                return current
            with VersionBuilder(self.versions, self.embedder, self.settings, sentences=False) as builder:
                seen: set[str] = set()
                if documents:
                    builder.apply_page(SOURCE, SOURCE, Page(documents), seen)
                builder.delete_unseen(SOURCE, seen)
                builder.store.set_meta(FINGERPRINT_KEY, wanted)
                builder.publish()
            self._fingerprint = wanted
            return self.versions.current_id()

    def _open(self, vid: str) -> Snapshot:
        if self._snapshot is None or self._snapshot.version.id != vid:
            self._snapshot = Snapshot.open(self.versions.get(vid))
        return self._snapshot

    def snapshot(self) -> Snapshot | None:
        current = self.versions.current_id()
        if current is None:
            return None
        with self._lock:
            return self._open(current)

    def retrieve(
        self,
        question: str,
        k: int,
        *,
        acl_groups: Sequence[str] | None = None,
        threshold: float = 0.0,
        allowed_names: Sequence[str] | None = None,
        vector: np.ndarray | None = None,
        gate: ToolGate | None = None,
    ) -> ToolCandidates:
        """The ``k`` best tools for ``question`` that ``acl_groups`` may use (and in ``allowed_names``).

        ``vector`` is the question's embedding when the caller has it already (a batch);
        ``gate`` decides whether any of them fits (``None``: ``threshold`` on the best cosine)."""
        started = time.perf_counter()
        snapshot = self.snapshot()
        if snapshot is None:
            return ToolCandidates(threshold=threshold)
        store = snapshot.store
        filters = restrict(SearchFilters(), acl_groups)
        allowed = None if filters.is_empty() else store.allowed_chunk_ids(filters)
        if allowed_names is not None:
            named_rows = (
                store.cursor()
                .execute(
                    "SELECT c.chunk_id FROM chunks c JOIN documents d USING (doc_id) WHERE d.key IN (SELECT unnest(?))",
                    [list(allowed_names)],
                )
                .fetchall()
            )
            named = {int(r[0]) for r in named_rows}
            allowed_set = named if allowed is None else named & {int(i) for i in allowed}
            allowed = np.array(sorted(allowed_set), dtype=np.int64)
        depth = max(self.settings.search.candidates, k * 4)
        bm25 = store.bm25(question, depth, allowed)
        dense: list[tuple[int, float]] = []
        if snapshot.vectors.ntotal and (allowed is None or len(allowed)):
            query = self.embedder.embed_query(question) if vector is None else vector
            scores, ids = snapshot.vectors.search(query[None, :], depth, allowed=allowed)
            dense = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        similarity = dict(dense)
        bm25_rank = {cid: r for r, (cid, _) in enumerate(bm25, start=1)}
        dense_rank = {cid: r for r, (cid, _) in enumerate(dense, start=1)}
        fused = fuse(bm25, dense, self.settings.search)
        rows = store.chunk_rows(cid for cid, _ in fused[: k * 4])
        out: list[ToolCandidate] = []
        seen: set[str] = set()
        for cid, score in fused[: k * 4]:
            row = rows.get(cid)
            if row is None or row["key"] in seen:
                continue
            seen.add(row["key"])
            out.append(
                ToolCandidate(row["key"], score, similarity.get(cid, -1.0), bm25_rank.get(cid), dense_rank.get(cid))
            )
            if len(out) == k:
                break
        pool = int(store.counts().get("documents", 0))
        features = relevance_features(question, bm25, dense, store, len(allowed) if allowed is not None else pool)
        decision = gate.decide(features) if gate is not None and out else None
        elapsed = (time.perf_counter() - started) * 1000
        return ToolCandidates(
            tuple(out), threshold, snapshot.version.id, elapsed, pool, features=features, gate=decision
        )


def relevance_features(
    question: str, bm25: Sequence[tuple[int, float]], dense: Sequence[tuple[int, float]], store: DuckDBStore, pool: int
) -> RelevanceFeatures:
    """The gate's inputs from one retrieval's two rankings (best first, over the allowed pool)."""
    postings = store.postings()
    terms = len(postings.term_ids(store.cursor(), question)) if postings is not None else 0
    return RelevanceFeatures(
        similarity_1=dense[0][1] if dense else -1.0,
        similarity_2=dense[1][1] if len(dense) > 1 else -1.0,
        bm25_1=bm25[0][1] if bm25 else 0.0,
        bm25_2=bm25[1][1] if len(bm25) > 1 else 0.0,
        agree=bool(bm25 and dense and bm25[0][0] == dense[0][0]),
        query_terms=terms,
        query_words=len(question.split()),
        pool=pool,
    )
