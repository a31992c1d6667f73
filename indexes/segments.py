"""Segments: the immutable files a version's documents, chunks, evidence sentences, BM25 and
vectors live in.

A refresh writes what it adds into ``pending_*`` tables of its staged head; :func:`seal` moves
them into new segment files, one per shard (documents go to shard :func:`shard_of` of their id),
each with its own fts index and FAISS index, so publishing costs what changed. Deleted or
replaced documents of older segments stay there, masked by the head's tombstones.

Compaction keeps the number of segments per shard bounded: when a shard reaches
``max_segments``, its segments other than the largest are merged into the new one; a segment
more than half of whose chunks are deleted is rewritten too; a change in the shard count merges
everything into the new number of shards. Merging writes only live rows.

:class:`LayeredVectors` searches the FAISS indexes of a version's segments, with each one's
deleted chunks removed in memory, and merges their top-k by score, then chunk id.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from indexes.duckdb_store import (
    DuckDBStore,
    create_segment_tables,
    fts_extension_path,
    matrix,
    segment_alias,
    shard_sql,
    sql_text,
)
from indexes.faiss_index import FloatArray, IdArray, IndexChoice, VectorIndex
from indexes.fanout import fan_out
from indexes.versions import SEGMENT_STORE, SEGMENTS_DIR, VECTORS_FILE

__all__ = ["LayeredVectors", "SealResult", "seal"]

FTS_PRAGMA = (
    "PRAGMA create_fts_index('chunks', 'chunk_id', 'search_text', overwrite=1, "
    "stemmer='porter', stopwords='english', strip_accents=1, lower=1)"
)


@dataclass(slots=True)
class SealResult:
    """What :func:`seal` wrote: new segments (manifest entries) and the segments merged away."""

    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bytes_written: int = 0


def _live_share(store: DuckDBStore, segment: str, total: int) -> float:
    row = (
        store.cursor()
        .execute(
            f"SELECT count(*) FROM {segment_alias(segment)}.main.chunks WHERE doc_id IN "
            "(SELECT doc_id FROM main.tombstones WHERE segment = ?)",
            [segment],
        )
        .fetchone()
    )
    deleted = int(row[0]) if row else 0
    return 1.0 - deleted / total if total else 0.0


def _to_merge(store: DuckDBStore, shard: int, *, max_segments: int) -> list[str]:
    rows = store.cursor().execute("SELECT id, chunks FROM segments WHERE shard = ? ORDER BY id", [shard]).fetchall()
    mine = [(str(i), int(n)) for i, n in rows]
    merge = {seg for seg, n in mine if _live_share(store, seg, n) < 0.5}
    if len(mine) + 1 > max_segments:
        largest = max(mine, key=lambda item: (item[1], item[0]))[0]
        merge.update(seg for seg, _ in mine if seg != largest)
    return sorted(merge)


def _write_segment(
    store: DuckDBStore, folder: Path, *, shard: int, shards: int, merge: list[str], dim: int
) -> dict[str, Any] | None:
    """One new segment of ``shard``: its pending rows (documents, chunks and the chunks' evidence
    sentences) and the live rows of ``merge``."""
    con = store.connection
    sources = {"documents": [], "chunks": [], "sentences": []}  # type: dict[str, list[str]]
    for table in sources:
        sources[table].append(f"SELECT * FROM main.pending_{table} WHERE {shard_sql(shards)} = {shard}")
        for segment in merge:
            if table == "sentences" and not store.segment_has_sentences(segment):
                continue  # never happens after a seal: repend_legacy moved such segments' rows
            sources[table].append(
                f"SELECT * FROM {segment_alias(segment)}.main.{table} WHERE {shard_sql(shards)} = {shard} "
                f"AND doc_id NOT IN (SELECT doc_id FROM main.tombstones WHERE segment = '{sql_text(segment)}')"
            )
    counted = con.execute("SELECT count(*) FROM (" + " UNION ALL ".join(sources["documents"]) + ")").fetchone()
    if not counted or not counted[0]:
        return None
    folder.mkdir(parents=True)
    file = folder / SEGMENT_STORE
    alias = "_grounded_new_segment"
    con.execute(f"ATTACH '{sql_text(str(file))}' AS {alias}")
    try:
        create_segment_tables(con, alias)
        for table, parts in sources.items():
            order = {"documents": "doc_id", "chunks": "chunk_id", "sentences": "chunk_id, ordinal"}[table]
            con.execute(
                f"INSERT INTO {alias}.main.{table} SELECT * FROM ({' UNION ALL '.join(parts)}) ORDER BY {order}"
            )
    finally:
        con.execute(f"DETACH {alias}")
    seg = duckdb.connect(str(file), config={"autoinstall_known_extensions": False})
    try:
        seg.execute(f"LOAD '{fts_extension_path()}'")
        table = seg.execute("SELECT chunk_id, embedding FROM chunks ORDER BY chunk_id").arrow()
        if not hasattr(table, "column"):
            table = table.read_all()
        ids = np.asarray(table.column("chunk_id").to_numpy(), dtype=np.int64)
        if len(ids):
            seg.execute(FTS_PRAGMA)
            index = VectorIndex.build(ids, matrix(table.column("embedding")))
        else:
            index = VectorIndex.empty(dim)
        seg.execute("CHECKPOINT")
    finally:
        seg.close()
    index.save(folder / VECTORS_FILE)
    return {"id": folder.name, "shard": shard, "chunks": len(ids), "index": index.choice.to_dict()}


def _main_catalog(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT current_database()").fetchone()
    return str(row[0]) if row else "main"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def seal(store: DuckDBStore, staged: Path, vid: str, *, shards: int, max_segments: int, dim: int) -> SealResult:
    """Move the staged head's pending rows into new segments under ``staged/segments/`` (merging
    old segments by the compaction rules), then rewrite the head compactly without them."""
    con = store.connection
    previous = store.meta("shards")
    reshard = previous is not None and int(previous) != shards
    result = SealResult()
    for shard in range(shards):
        merge = store.segment_ids() if reshard else _to_merge(store, shard, max_segments=max_segments)
        folder = staged / SEGMENTS_DIR / f"{vid}-{shard}"
        info = _write_segment(store, folder, shard=shard, shards=shards, merge=merge, dim=dim)
        if info is not None:
            result.added.append(info)
            result.bytes_written += sum(f.stat().st_size for f in folder.iterdir())
        result.removed.extend(s for s in merge if s not in result.removed)
    with store.transaction():
        for segment in result.removed:
            con.execute("DELETE FROM segments WHERE id = ?", [segment])
            con.execute("DELETE FROM tombstones WHERE segment = ?", [segment])
        con.execute("DELETE FROM pending_sentences")
        con.execute("DELETE FROM pending_chunks")
        con.execute("DELETE FROM pending_documents")
        for info in result.added:
            con.execute("INSERT INTO segments VALUES (?, ?, ?)", [info["id"], info["shard"], info["chunks"]])
        store.set_meta("shards", str(shards))
    for segment in result.removed:
        con.execute(f"DETACH {segment_alias(segment)}")
    for info in result.added:
        store.attach_segment(str(info["id"]))
    store.define_views()
    return result


def compact_head(store: DuckDBStore) -> None:
    """Rewrite the head file without the free blocks its pending rows left (DuckDB files do not
    shrink), so the next refresh copies a small file. Closes ``store``."""
    con = store.connection
    target = store.path.with_name(store.path.name + ".compact")
    target.unlink(missing_ok=True)
    con.execute(f"ATTACH '{sql_text(str(target))}' AS _grounded_compact")
    try:
        con.execute(f"COPY FROM DATABASE {_quote(_main_catalog(con))} TO _grounded_compact")
    finally:
        con.execute("DETACH _grounded_compact")
    store.close()
    wal = store.path.with_name(store.path.name + ".wal")
    wal.unlink(missing_ok=True)
    shutil.move(target, store.path)


class LayeredVectors:
    """The FAISS indexes of a version's segments searched as one: each part's top-k, merged.

    With exact (``Flat``) parts the merged top-k equals one exact index's over the same vectors.
    """

    def __init__(self, parts: list[VectorIndex], dim: int, *, gpu: bool = False) -> None:
        self.parts = parts
        self._dim = dim
        gpu_parts = [p.on_gpu() for p in parts] if gpu else []
        self._gpu = [g for g in gpu_parts if g is not None] if gpu_parts and all(gpu_parts) else []

    @property
    def device(self) -> str:
        """``gpu`` when unfiltered searches run on a GPU copy of every part, else ``cpu``."""
        return "gpu" if self._gpu else "cpu"

    @property
    def ntotal(self) -> int:
        return sum(p.ntotal for p in self.parts)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def choice(self) -> IndexChoice:
        """The largest part's index choice (what most of the vectors are searched with)."""
        return max(self.parts, key=lambda p: p.ntotal).choice if self.parts else IndexChoice(kind="Flat")

    def memory_bytes(self) -> int:
        return sum(p.memory_bytes() for p in self.parts)

    def search(self, queries: FloatArray, k: int, *, allowed: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        """Top-``k`` ``(scores, ids)`` per query over every part; ids are -1 where fewer exist."""
        parts = self._gpu if self._gpu and allowed is None else self.parts
        live = [p for p in parts if p.ntotal]
        if len(live) == 1:
            return live[0].search(queries, k, allowed=allowed)
        n = len(queries)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        ids = np.full((n, k), -1, dtype=np.int64)
        if not live:
            return scores, ids
        found = fan_out(lambda part: part.search(queries, k, allowed=allowed), live)
        all_scores = np.concatenate([s for s, _ in found], axis=1)
        all_ids = np.concatenate([i for _, i in found], axis=1)
        for row in range(n):
            valid = all_ids[row] >= 0
            s, i = all_scores[row][valid], all_ids[row][valid]
            order = np.lexsort((i, -s))[:k]
            scores[row, : len(order)] = s[order]
            ids[row, : len(order)] = i[order]
        return scores, ids

    @classmethod
    def open(cls, store: DuckDBStore, segments: list[dict[str, Any]], folder_of: Any, dim: int) -> LayeredVectors:
        """Load each segment's FAISS index (``folder_of(id)``) and remove its deleted chunks."""
        parts = []
        for seg in segments:
            index = VectorIndex.load(folder_of(str(seg["id"])) / VECTORS_FILE, IndexChoice(**seg["index"]))
            index.remove(store.deleted_chunk_ids(str(seg["id"])))
            parts.append(index)
        return cls(parts, dim, gpu=True)
