"""Build the next index version from connector pages, then publish it atomically.

:class:`VersionBuilder` holds the write lock, builds the next version in staging and accepts
pages: unchanged documents (same content hash) cost one lookup, changed ones get new chunks,
and only text never embedded before goes through the model. The next version is a new segment
(:mod:`indexes.segments`): it copies the current version's state, not its documents, and writes
only what changed, with FAISS and BM25 indexes over that alone. ``publish()`` makes it current,
compacting older segments when there are too many; leaving the block without publishing (an
error, Ctrl-C) discards it and the last good version keeps serving.

Example::

    with VersionBuilder(versions, embedder, settings) as builder:
        stats = builder.apply_page("docs", "files", page)
        builder.publish()
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from connectors.base import (
    Cursor,
    Deletion,
    Document,
    LiveKeys,
    Page,
    RowBatch,
    StreamSpec,
    Unreadable,
    row_document_key,
)
from grounded.config import Settings
from grounded.errors import ConfigError, KnowledgeBaseError
from grounded.experts.embedding import SentenceEmbedder
from grounded.ingest.prepare import PreparedDocument, content_hash, doc_id_for, prepare_document, sentence_digest
from indexes.chunking import ChunkingConfig, evidence_sentences
from indexes.duckdb_store import ChunkRow, DocumentRow, DuckDBStore, SentenceRow
from indexes.faiss_index import IndexChoice, VectorIndex
from indexes.fanout import shard_of
from indexes.mirror import TableMirror, export_tables
from indexes.versions import STORE_FILE, TABLES_DIR, VECTORS_FILE, VersionInfo, VersionStore, shard_file

__all__ = ["IngestStats", "VersionBuilder", "content_hash", "doc_id_for"]


@dataclass(slots=True)
class IngestStats:
    """What one ingest or sync did, for the CLI, the API and the benchmarks."""

    documents_seen: int = 0
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    documents_deleted: int = 0
    chunks_written: int = 0
    chunks_embedded: int = 0
    sentences_embedded: int = 0
    rows_upserted: int = 0
    rows_deleted: int = 0
    skipped: list[str] = field(default_factory=list)
    version: str | None = None
    published: bool = False

    def merge(self, other: IngestStats) -> None:
        for name in (
            "documents_seen",
            "documents_added",
            "documents_updated",
            "documents_unchanged",
            "documents_deleted",
            "chunks_written",
            "chunks_embedded",
            "sentences_embedded",
            "rows_upserted",
            "rows_deleted",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped.extend(other.skipped)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class VersionBuilder:
    """Accepts pages into a staging copy of the knowledge base and publishes it."""

    def __init__(
        self, versions: VersionStore, embedder: SentenceEmbedder, settings: Settings, *, sentences: bool = True
    ) -> None:
        self.versions = versions
        self.sentences = sentences
        """Store each chunk's evidence sentences (off for indexes nobody answers from: the tool index)."""
        self.embedder = embedder
        self.settings = settings
        self.chunking = ChunkingConfig(settings.chunking.max_chars, settings.chunking.overlap_sentences)
        self._stack = ExitStack()
        self._store: DuckDBStore | None = None
        self._changed = False
        self.vid = ""
        self.parent: str | None = None
        self._staged = Path()
        self._parent: VersionInfo | None = None
        self._mirrors: dict[str, TableMirror] = {}
        # Embeddings of evidence sentences computed elsewhere (an embedding worker of the Ray
        # engine), looked up by digest before anything is embedded at publish.
        self._sentence_vectors: dict[str, np.ndarray] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> VersionBuilder:
        self._stack.enter_context(self.versions.write_lock())
        try:
            self.parent = self.versions.current_id()
            self._parent = self.versions.current() if self.parent else None
            self.vid, self._staged = self.versions.new_staging(copy=False)
            if self._parent is None:
                self._store = DuckDBStore.open(self._staged / STORE_FILE, read_only=False)
            else:
                self._store = DuckDBStore.open_next(self._staged / STORE_FILE, self._parent, self.vid)
                self._link_tables(self._parent)
            self._check_embedding_model()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._store is not None:
                self._store.close()
                self._store = None
            if not self.published:
                self.versions.discard_staging()
        finally:
            self._stack.close()

    published = False
    sentences_embedded = 0
    """Evidence sentences the last :meth:`publish` embedded (the rest were stored already)."""

    @property
    def store(self) -> DuckDBStore:
        if self._store is None:
            raise KnowledgeBaseError("the version builder is not open; use it in a with-block")
        return self._store

    def _check_embedding_model(self) -> None:
        stored = self.store.meta("embed_model")
        if stored is None:
            self.store.set_meta("embed_model", self.embedder.fingerprint)
        elif stored != self.embedder.fingerprint:
            raise ConfigError(
                f"{self.versions.root} was built with embedding model {stored!r} but "
                f"{self.embedder.fingerprint!r} is configured; set embed_model back or ingest into a new directory"
            )

    # -- pages --------------------------------------------------------------------------------

    def apply_page(self, source: str, stream: str, page: Page, seen: set[str] | None = None) -> IngestStats:
        """Write one page and its cursor in one transaction. ``seen`` collects live doc ids."""
        return self.apply_prepared(source, stream, page, {}, seen)

    def apply_prepared(
        self,
        source: str,
        stream: str,
        page: Page,
        prepared: Mapping[str, PreparedDocument],
        seen: set[str] | None = None,
    ) -> IngestStats:
        """:meth:`apply_page` with documents already chunked, and maybe embedded, elsewhere (the Ray
        engine's tasks and actors), keyed by document id.

        The page decides everything as it does for :meth:`apply_page` (which documents changed, what
        is deleted, the cursor); ``prepared`` only saves the work: a changed document found there
        with the same content hash takes its chunks from it, and text not embedded before in this
        knowledge base takes the vector computed for it. Anything missing is computed here, so the
        version written is the one :meth:`apply_page` writes.
        """
        stats = IngestStats()
        documents = [r for r in page.records if isinstance(r, Document)]
        deletions = [r for r in page.records if isinstance(r, Deletion) and r.table is None]
        # Later duplicates of a key in one page win, as they would across pages.
        by_id: dict[str, Document] = {doc_id_for(source, d.key): d for d in documents}
        stats.documents_seen = len(by_id)
        if seen is not None:
            seen.update(by_id)
        for bad in (r for r in page.records if isinstance(r, Unreadable)):
            stats.skipped.append(f"{bad.key_prefix}: {bad.reason}")
            if seen is not None:
                seen.update(self.store.doc_ids_with_key_prefix(source, bad.key_prefix))
        hashes = {doc_id: content_hash(doc) for doc_id, doc in by_id.items()}
        known = self.store.content_hashes(list(by_id))
        changed = [doc_id for doc_id in by_id if known.get(doc_id) != hashes[doc_id]]
        stats.documents_unchanged = len(by_id) - len(changed)
        stats.documents_added = sum(1 for d in changed if d not in known)
        stats.documents_updated = len(changed) - stats.documents_added

        doc_rows: list[DocumentRow] = []
        chunk_rows: list[ChunkRow] = []
        offered: dict[str, np.ndarray] = {}
        for doc_id in changed:
            ready = prepared.get(doc_id)
            if ready is None or ready.row.content_hash != hashes[doc_id]:
                ready = prepare_document(source, by_id[doc_id], self.chunking, digest=hashes[doc_id])
            elif ready.vectors is not None:
                offered.update(zip((c.text_hash for c in ready.chunks), ready.vectors, strict=True))
                self._sentence_vectors.update(ready.sentence_vectors)
            doc_rows.append(ready.row)
            chunk_rows.extend(ready.chunks)
        embeddings = self._embeddings(chunk_rows, stats, offered)
        stats.chunks_written = len(chunk_rows)

        delete_ids = [doc_id_for(source, d.key) for d in deletions]
        cursor_changed = page.cursor is not None and page.cursor != self.store.get_cursor(source, stream)
        with self.store.transaction():
            self.store.write_documents(doc_rows, chunk_rows, embeddings)
            if any(isinstance(r, RowBatch | LiveKeys | Deletion) for r in page.records):
                delete_ids.extend(self._apply_rows(source, page, stats))
            stats.documents_deleted = self.store.delete_documents(delete_ids)
            if page.cursor is not None:
                self.store.set_cursor(source, stream, page.cursor)
        self._changed = (
            self._changed
            or bool(doc_rows)
            or stats.documents_deleted > 0
            or stats.rows_upserted + stats.rows_deleted > 0
            or cursor_changed
        )
        return stats

    # -- mirrored tables ------------------------------------------------------------------------

    def mirror(self, source: str) -> TableMirror:
        """The DuckDB mirror of ``source``'s tables in the staged version."""
        if source not in self._mirrors:
            self._mirrors[source] = TableMirror(self.store.connection, source)
        return self._mirrors[source]

    def _apply_rows(self, source: str, page: Page, stats: IngestStats) -> list[str]:
        """Upsert row batches, apply tombstones and live keys; returns doc ids of deleted rows."""
        mirror = self.mirror(source)
        gone: list[str] = []
        for record in page.records:
            if isinstance(record, RowBatch):
                stats.rows_upserted += mirror.upsert(record)
            elif isinstance(record, LiveKeys):
                mirror.mark_live(record.table, record.keys)
            elif isinstance(record, Deletion) and record.table:
                removed = mirror.delete(record.table, [record.row_key or (record.key,)])
                stats.rows_deleted += len(removed)
                gone.extend(doc_id_for(source, row_document_key(record.table, k)) for k in removed)
        return gone

    def begin_stream(self, source: str, spec: StreamSpec, cursor: Cursor | None = None) -> None:
        """A table stream that reads everything (a full scan, or an incremental one with no
        ``cursor`` yet) starts collecting the keys of its rows for the key diff, unless the table
        is not mirrored yet: a first sync has nothing to delete, so it keeps no keys."""
        if spec.kind == "table" and (spec.full_scan or cursor is None):
            mirror = self.mirror(source)
            if mirror.columns(spec.table or spec.name) is not None:
                mirror.track_seen(spec.table or spec.name)

    def end_stream(self, source: str, spec: StreamSpec) -> IngestStats:
        """Delete mirrored rows (and their documents) that the stream's key diff did not see."""
        stats = IngestStats()
        if spec.kind != "table":
            return stats
        mirror = self.mirror(source)
        with self.store.transaction():
            removed = mirror.delete_unseen(spec.table or spec.name)
            stats.rows_deleted = len(removed)
            doc_ids = [doc_id_for(source, row_document_key(spec.table or spec.name, k)) for k in removed]
            stats.documents_deleted = self.store.delete_documents(doc_ids)
        self._changed = self._changed or bool(removed)
        return stats

    def _embeddings(
        self, rows: list[ChunkRow], stats: IngestStats, offered: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """Vectors for ``rows``: reused when that exact text was embedded before, else taken from
        ``offered`` (computed by an embedding worker), else embedded here."""
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        reuse = self.store.embeddings_for(sorted({r.text_hash for r in rows}))
        for text_hash, vector in (offered or {}).items():
            if text_hash not in reuse:
                reuse[text_hash] = vector
                stats.chunks_embedded += 1
        todo = sorted({r.text_hash: r.search_text for r in rows if r.text_hash not in reuse}.items())
        if todo:
            fresh = self.embedder.embed([text for _, text in todo], all_cores=True)
            reuse.update({h: fresh[i] for i, (h, _) in enumerate(todo)})
            stats.chunks_embedded += len(todo)
        return np.stack([reuse[r.text_hash] for r in rows])

    def delete_unseen(self, source: str, seen: Iterable[str]) -> int:
        """Delete this source's documents that a full scan did not see (deletion by key diff)."""
        gone = sorted(self.store.source_doc_ids(source) - set(seen))
        if gone:
            with self.store.transaction():
                self.store.delete_documents(gone)
            self._changed = True
        return len(gone)

    def remove_source(self, source: str) -> int:
        """Delete everything of ``source``: documents, mirrored tables, cursors, its record."""
        removed = self.delete_unseen(source, ())
        self.mirror(source).drop_all(keep_schema=False)
        con = self.store.connection
        con.execute("DELETE FROM sync_state WHERE source = ?", [source])
        con.execute("DELETE FROM sources WHERE name = ?", [source])
        con.execute("DELETE FROM meta WHERE key = ?", [f"source_identity:{source}"])
        self._changed = True
        return removed

    def cursor(self, source: str, stream: str) -> Cursor | None:
        return self.store.get_cursor(source, stream)

    def record_source(self, name: str, type_: str) -> None:
        self.store.record_source(name, type_)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self) -> VersionInfo | None:
        """Index and publish the staged version; ``None`` when nothing changed."""
        if not self._changed and self.parent is not None:
            return None
        store = self.store
        self.sentences_embedded = self._store_sentences() if self.sentences else 0
        self._compact()
        holds_documents = self._holds_documents()
        choice, shard_choices = self._own_vectors(holds_documents)
        self._export_tables()
        # The BM25 index covers this version's own chunks; a version that wrote none (a sync of
        # mirrored tables) needs none and never reads the chunks of older segments (issue 25).
        if store.chunks_changed:
            store.rebuild_fts()
        segments = self._segments(choice, shard_choices, holds_documents)
        store.set_meta("segment_id", self.vid)
        store.set_meta("segments", json.dumps([s["id"] for s in segments]))
        counts = store.counts()
        fingerprint = (
            store.cursor()
            .execute(
                "SELECT md5(coalesce(string_agg(content_hash, '' ORDER BY doc_id), '')) "
                f"FROM {'live.main.documents' if store.segment_id else 'documents'}"
            )
            .fetchone()
        )
        store.checkpoint()
        store.close()
        self._store = None
        manifest = {
            "version": self.vid,
            "parent": self.parent,
            "created_at": datetime.now(UTC).isoformat(),
            "embed_model": self.embedder.fingerprint,
            "dim": self.embedder.dim,
            "chunking": {
                "max_chars": self.chunking.max_chars,
                "overlap_sentences": self.chunking.overlap_sentences,
            },
            "index": choice.to_dict(),
            "segments": segments,
            "fingerprint": fingerprint[0] if fingerprint else "",
            **counts,
        }
        info = self.versions.publish(self.vid, self._staged, manifest)
        self.published = True
        return info

    def _store_sentences(self, batch_chunks: int = 2048) -> int:
        """Split every chunk that has no stored sentences into its evidence sentences, embed them
        and store them with the chunk, so answering only looks them up (answering/evidence.py).

        This covers new chunks and, on the first ingest after an upgrade, every chunk of a
        knowledge base built before sentences were stored (its published versions keep working:
        the answer path computes missing sentences itself). Text embedded before (a sentence
        shared by overlapping chunks, or unchanged text) is reused, never embedded again.
        Returns how many sentences went through the model.
        """
        todo = self.store.chunks_without_sentences()
        embedded = 0
        for lo in range(0, len(todo), batch_chunks):
            planned: list[tuple[int, int, tuple[int, int], str]] = []
            texts: dict[str, str] = {}
            for chunk_id, title, text in todo[lo : lo + batch_chunks]:
                for ordinal, (span, sentence) in enumerate(evidence_sentences(title, text)):
                    digest = sentence_digest(sentence)
                    planned.append((chunk_id, ordinal, span, digest))
                    texts[digest] = sentence
            vectors = self.store.sentence_embeddings_for(sorted(texts))
            for digest in texts.keys() - vectors.keys():
                if digest in self._sentence_vectors:
                    vectors[digest] = self._sentence_vectors[digest]
                    embedded += 1
            fresh = sorted(h for h in texts if h not in vectors)
            if fresh:
                matrix = self.embedder.embed([texts[h] for h in fresh], all_cores=True)
                vectors.update(zip(fresh, matrix, strict=True))
                embedded += len(fresh)
            rows = [SentenceRow(cid, o, a, b, h, vectors[h]) for cid, o, (a, b), h in planned]
            with self.store.transaction():
                self.store.write_sentences(rows)
        return embedded

    def _export_tables(self) -> None:
        """Refresh ``tables/<source>.duckdb`` for each source whose mirrored tables changed (or
        that has no file yet), and remove the files of sources without tables."""
        folder = self._staged / TABLES_DIR
        folder.mkdir(exist_ok=True)
        schemas = {
            str(r[0])
            for r in self.store.connection.execute(
                "SELECT DISTINCT schema_name FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name <> 'main' AND NOT starts_with(schema_name, 'fts_') AND NOT temporary"
            ).fetchall()
        }
        for source in sorted(schemas):
            target = folder / f"{source}.duckdb"
            mirror = self._mirrors.get(source)
            if not target.exists() or (mirror is not None and mirror.changed):
                export_tables(self.store.connection, source, target)
        for stale in folder.glob("*.duckdb"):
            if stale.stem not in schemas:
                stale.unlink()

    def _link_tables(self, parent: VersionInfo) -> None:
        """Start ``tables/`` with hard links to the parent's files: :meth:`_export_tables` replaces
        a changed source's file (never writes into one), so an unchanged source costs nothing."""
        source = parent.tables_path
        if not source.is_dir():
            return
        folder = self._staged / TABLES_DIR
        folder.mkdir(exist_ok=True)
        for file in source.glob("*.duckdb"):
            os.link(file, folder / file.name)

    def _compact(self) -> None:
        """Merge older segments into this version's own when it would read more than
        ``index.max_segments``: the newer ones, or all of them when the newer ones and the oldest
        one's dead chunks reach ``index.compact_ratio`` of its live chunks (see docs/architecture.md)."""
        store = self.store
        if not store.segments:
            return
        counts = store.segment_chunks()
        base, tail = store.segments[0], store.segments[1:]
        row = store.connection.execute("SELECT count(*) FROM chunks").fetchone()
        newer = (int(row[0]) if row else 0) + sum(counts[s][0] for s in tail)
        live, dead = counts[base]
        settings = self.settings.index
        full = newer + dead >= settings.compact_ratio * max(live, 1)
        if len(store.segments) + 1 > settings.max_segments:
            store.absorb(store.segments if full else tail)
        elif dead >= settings.compact_ratio * max(live, 1):
            store.absorb(store.segments)

    def _segments(
        self, own: IndexChoice, shards: list[IndexChoice] | None, holds_documents: bool
    ) -> list[dict[str, Any]]:
        """The manifest's ``segments``: the older ones still read, then this version's own when
        it holds any document or sentence (with its shards' choices when it is sharded)."""
        store = self.store
        choices = self._parent.segment_indexes if self._parent is not None else {}
        sharded = self._parent.segment_shards if self._parent is not None else {}
        out: list[dict[str, Any]] = [
            {
                "id": sid,
                "index": choices.get(sid, {"kind": "Flat"}),
                **({"shards": sharded[sid]} if sid in sharded else {}),
            }
            for sid in store.segments
        ]
        if holds_documents:
            entry: dict[str, Any] = {"id": self.vid, "index": own.to_dict()}
            if shards is not None:
                entry["shards"] = [c.to_dict() for c in shards]
            out.append(entry)
        return out

    def _holds_documents(self) -> bool:
        """Whether this version's own file holds any document or sentence (else no segment of its
        own is listed, and it has no vectors)."""
        row = self.store.connection.execute(
            "SELECT (SELECT count(*) FROM documents) + (SELECT count(*) FROM sentences)"
        ).fetchone()
        return bool(row and row[0])

    def _own_vectors(self, holds_documents: bool) -> tuple[IndexChoice, list[IndexChoice] | None]:
        """The FAISS index of this version's own chunks (the older segments keep theirs): one file,
        or with ``index.shards`` > 1 one file per shard of document ids (and the shards' choices).

        A version that wrote no document (a sync of mirrored tables) writes no file: a reader of it
        takes an empty index (:class:`~grounded.retrieval.snapshot.Snapshot`), and the sync never
        imports FAISS (~13 MB of its peak memory, issue 25)."""
        if not holds_documents:
            return IndexChoice(kind="Flat"), None
        ids, vectors = self.store.vectors(own=True)
        shards = self.settings.index.shards
        if shards == 1:
            index = self._vector_index(ids, vectors)
            index.save(self._staged / VECTORS_FILE)
            return index.choice, None
        owner = dict(self.store.connection.execute("SELECT chunk_id, doc_id FROM chunks").fetchall())
        part = np.array([shard_of(owner[int(i)], shards) for i in ids], dtype=np.int64)
        choices = []
        for shard in range(shards):
            keep = np.flatnonzero(part == shard)
            index = self._vector_index(ids[keep], vectors[keep] if len(keep) else vectors[:0])
            index.save(self._staged / shard_file(shard))
            choices.append(index.choice)
        largest = int(np.argmax(np.bincount(part, minlength=shards))) if len(part) else 0
        return choices[largest], choices

    def _vector_index(self, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        index = VectorIndex.build(ids, vectors) if len(ids) else VectorIndex.empty(self.embedder.dim)
        if index.ntotal != len(ids):
            raise KnowledgeBaseError(
                f"vector index holds {index.ntotal} vectors but the segment has {len(ids)} chunks; "
                "the staged version was discarded"
            )
        return index
