"""The DuckDB side of a knowledge-base version: documents, chunks, vectors, BM25, sync state.

One DuckDB file per index version, holding what that version wrote; a segmented version reads
the files of older versions too, as one (:mod:`indexes.segments`). Writers fill a new file in
staging; published versions are opened read-only, by any number of processes. Chunk embeddings are kept here too, so the FAISS index
is always derivable from this file and unchanged text is never embedded twice.

The ``fts`` extension is not built into the PyPI ``duckdb`` wheel; it comes from the
``duckdb-ext-fts`` package and is loaded from its installed path.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from grounded.errors import ConfigError, CorruptKnowledgeBase
from indexes import segments as seg
from indexes.arrow_scan import arrow_view
from indexes.base import Chunk, SearchFilters
from indexes.bm25 import FTS_SCHEMA, Bm25Postings
from indexes.versions import VersionInfo

__all__ = ["ChunkRow", "DocumentRow", "DuckDBStore", "SentenceRow", "StoredSentences", "fts_extension_path"]

SCHEMA_VERSION = 1

ROW_CACHE_SIZE = 4096
"""Chunk rows a read-only store keeps in memory (a few MB of text at the default chunk size)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS documents (
    doc_id VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    title VARCHAR,
    uri VARCHAR,
    text VARCHAR,
    content_hash VARCHAR NOT NULL,
    updated_at TIMESTAMPTZ,
    metadata JSON,
    acl VARCHAR[],
    ingested_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id BIGINT PRIMARY KEY,
    doc_id VARCHAR NOT NULL,
    ordinal INTEGER NOT NULL,
    start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL,
    text VARCHAR NOT NULL,
    search_text VARCHAR NOT NULL,
    text_hash VARCHAR NOT NULL,
    embedding FLOAT[]
);
CREATE TABLE IF NOT EXISTS sentences (
    chunk_id BIGINT NOT NULL,
    ordinal INTEGER NOT NULL,
    start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL,
    text_hash VARCHAR NOT NULL,
    embedding FLOAT[] NOT NULL,
    PRIMARY KEY (chunk_id, ordinal)
);
CREATE TABLE IF NOT EXISTS sync_state (
    source VARCHAR, stream VARCHAR, cursor JSON, updated_at TIMESTAMPTZ,
    PRIMARY KEY (source, stream)
);
CREATE TABLE IF NOT EXISTS sources (
    name VARCHAR PRIMARY KEY, type VARCHAR, last_synced_at TIMESTAMPTZ, documents BIGINT
);
"""


@functools.cache
def fts_extension_path() -> Path:
    """Where ``duckdb-ext-fts`` installed the extension matching this ``duckdb`` (looked up once)."""
    spec = find_spec("duckdb_ext")
    roots = list(spec.submodule_search_locations or []) if spec else []
    # A connection of its own: duckdb.sql() shares one default connection between threads, and
    # two threads opening stores at once could read no row from it.
    with duckdb.connect() as con:
        platform = con.execute("PRAGMA platform").fetchone()
    version = f"v{duckdb.__version__}"
    for root in roots:
        candidate = Path(root) / "extensions" / version / str(platform[0] if platform else "") / "fts.duckdb_extension"
        if candidate.exists():
            return candidate
    raise ConfigError(
        f"DuckDB's fts extension for duckdb {duckdb.__version__} was not found; "
        f"install the matching package: pip install 'duckdb-ext-fts=={duckdb.__version__}.*'"
    )


@dataclass(frozen=True, slots=True)
class DocumentRow:
    doc_id: str
    source: str
    key: str
    title: str
    uri: str
    text: str
    content_hash: str
    updated_at: datetime | None
    metadata: dict[str, Any]
    acl: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChunkRow:
    chunk: Chunk
    search_text: str
    text_hash: str


@dataclass(frozen=True, slots=True)
class SentenceRow:
    """One evidence sentence of a chunk: offsets into the chunk's text, the hash of the text
    embedded (see :func:`indexes.chunking.evidence_sentences`) and its embedding."""

    chunk_id: int
    ordinal: int
    start: int
    end: int
    text_hash: str
    embedding: np.ndarray


@dataclass(frozen=True, slots=True)
class StoredSentences:
    """A chunk's evidence sentences as ingest stored them: ``spans`` into the chunk's text, in
    order, and one embedding per span (``vectors``, float32, read-only)."""

    spans: tuple[tuple[int, int], ...]
    vectors: np.ndarray


class DuckDBStore:
    """Documents, chunks and BM25 for one knowledge-base version (one DuckDB file)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, *, read_only: bool) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only
        self._lock = threading.Lock()
        self._postings: Bm25Postings | None = None
        self._postings_lock = threading.Lock()
        self._rows: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._rows_lock = threading.Lock()
        self.chunks_changed = False
        """Whether this connection wrote or deleted documents (their chunks' BM25 index is stale)."""
        self.segments: list[str] = []
        """Segments read besides this file's own tables (see :mod:`indexes.segments`): a writer's
        older segments, or every segment of a segmented version opened for reading."""
        self.segment_id: str | None = None
        """The version whose file this is (a writer's own segment; ``None`` for a plain file)."""
        self._root = Path()
        self._docs, self._chunks, self._sents = "documents", "chunks", "sentences"
        self._rows_sql = ""
        self._dead: dict[str, frozenset[str]] = {}

    @classmethod
    def open(cls, path: Path, *, read_only: bool) -> DuckDBStore:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config={"autoinstall_known_extensions": False})
            con.execute(f"LOAD '{fts_extension_path()}'")
        except duckdb.Error as exc:
            raise CorruptKnowledgeBase(
                f"cannot open {path} as a DuckDB database ({exc}); rebuild it with `grounded ingest`"
            ) from exc
        store = cls(con, path, read_only=read_only)
        if not read_only:
            con.execute(_SCHEMA)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        found = store.meta("schema_version")
        if found != str(SCHEMA_VERSION):
            con.close()
            raise CorruptKnowledgeBase(
                f"{path} has schema version {found!r}, this grounded reads {SCHEMA_VERSION}; "
                "re-ingest into a new knowledge base directory"
            )
        if read_only:
            sids = seg.segment_list(store.meta("segments"))
            own = store.meta("segment_id")
            if sids is not None and own is not None and sids and sids != [own]:
                con.close()
                return cls._open_segmented(path, own, sids)
        return store

    @classmethod
    def _open_segmented(cls, path: Path, own: str, sids: list[str]) -> DuckDBStore:
        """A segmented version for reading: an in-memory database whose views name the union of
        its segments (and its own state tables) as one file's tables would."""
        root = path.parent.parent.parent
        con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
        try:
            con.execute(f"LOAD '{fts_extension_path()}'")
            con.execute(f"ATTACH '{_sql_text(str(path))}' AS {seg.catalog(own)} (READ_ONLY)")
            seg.attach_segments(con, root, [s for s in sids if s != own])
            dead = f"{seg.catalog(own)}.main.dead"
            seg.state_views(con, seg.catalog(own))
            seg.create_live_views(con, "memory", sids, dead, None)
        except duckdb.Error as exc:
            con.close()
            raise CorruptKnowledgeBase(
                f"cannot open the segments {sids} of {path} ({exc}); a segment file is missing or damaged"
            ) from exc
        store = cls(con, path, read_only=True)
        store.segments = list(sids)
        store.segment_id = own
        store._root = root
        dead_rows = (
            con.execute(f"SELECT segment, doc_id FROM {dead}").fetchall()
            if seg.has_table(con, seg.catalog(own), "dead")
            else []
        )
        by_segment: dict[str, set[str]] = {}
        for segment, doc_id in dead_rows:
            by_segment.setdefault(str(segment), set()).add(str(doc_id))
        store._dead = {k: frozenset(v) for k, v in by_segment.items()}
        store._rows_sql = " UNION ALL ".join(
            f"SELECT '{sid}' AS _segment, c.chunk_id, c.doc_id, c.ordinal, c.start_char, c.end_char, c.text, "
            "d.title, d.uri, d.source, d.key, d.updated_at, d.metadata "
            f"FROM {seg.catalog(sid)}.main.chunks c JOIN {seg.catalog(sid)}.main.documents d USING (doc_id) "
            "WHERE c.chunk_id IN (SELECT unnest($ids))"
            for sid in sids
        )
        return store

    @classmethod
    def open_next(cls, path: Path, parent: VersionInfo, vid: str) -> DuckDBStore:
        """A writer's store for version ``vid`` after ``parent``: a new file with ``parent``'s
        state (cursors, sources, mirrored tables, dead rows) whose own tables start empty,
        reading ``parent``'s segments through the ``live`` views. Its cost is the state's size."""
        store = cls.open(path, read_only=False)
        con = store.connection
        try:
            con.execute(seg.DEAD_SQL)
            root = parent.path.parent.parent
            sids = list(parent.segment_ids)
            seg.attach_segments(con, root, sids)
            if parent.id in sids:
                state = seg.catalog(parent.id)
            else:
                state = "parent_state"
                con.execute(f"ATTACH '{_sql_text(str(parent.store_path))}' AS {state} (READ_ONLY)")
            with store.transaction():
                seg.copy_state(con, state)
                store.set_meta("segment_id", vid)
            if state == "parent_state":
                con.execute(f"DETACH {state}")
            con.execute(f"ATTACH ':memory:' AS {seg.LIVE}")
        except BaseException:
            con.close()
            raise
        store.segments = sids
        store.segment_id = vid
        store._root = root
        store._docs, store._chunks, store._sents = (f"{seg.LIVE}.main.{t}" for t in seg.DOC_TABLES)
        store.refresh_views()
        return store

    def refresh_views(self) -> None:
        """Recreate a writer's ``live`` views over its current segments and own tables."""
        own = str(self._con.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]
        seg.create_live_views(self._con, seg.LIVE, self.segments, f"{own}.main.dead", own)

    def absorb(self, sids: Sequence[str]) -> int:
        """Copy these older segments' live rows into this writer's own tables (compaction) and
        stop reading them; returns the chunks copied."""
        copied = 0
        with self.transaction():
            for sid in sids:
                copied += seg.absorb(self._con, sid)
        self.segments = [s for s in self.segments if s not in set(sids)]
        self.refresh_views()
        if copied:
            self.chunks_changed = True
        return copied

    def segment_chunks(self) -> dict[str, tuple[int, int]]:
        """``{segment: (live chunks, dead chunks)}`` of a writer's older segments."""
        out: dict[str, tuple[int, int]] = {}
        for sid in self.segments:
            cat = seg.catalog(sid)
            row = self._con.execute(
                f"SELECT count(*), count(*) FILTER (WHERE doc_id IN (SELECT doc_id FROM dead WHERE segment = ?)) "
                f"FROM {cat}.main.chunks",
                [sid],
            ).fetchone()
            total, dead = (int(row[0]), int(row[1])) if row else (0, 0)
            out[sid] = (total - dead, dead)
        return out

    def close(self) -> None:
        self._con.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The writer's own connection: writes through it join :meth:`transaction`."""
        return self._con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for one thread (DuckDB connections are not shared across threads)."""
        with self._lock:
            return self._con.cursor()

    # -- metadata -----------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        try:
            row = self.cursor().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        except duckdb.CatalogException:
            return None
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all."""
        self._con.begin()
        try:
            yield
        except BaseException:
            self._con.rollback()
            raise
        self._con.commit()

    def content_hashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        if not doc_ids:
            return {}
        rows = self._con.execute(
            f"SELECT doc_id, content_hash FROM {self._docs} WHERE doc_id IN (SELECT unnest(?))", [list(doc_ids)]
        ).fetchall()
        return {str(d): str(h) for d, h in rows}

    def embeddings_for(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored embeddings of chunks whose embedded text has one of these hashes."""
        if not text_hashes:
            return {}
        table = self._con.execute(
            f"SELECT DISTINCT ON (text_hash) text_hash, embedding FROM {self._chunks} "
            "WHERE text_hash IN (SELECT unnest(?)) AND embedding IS NOT NULL",
            [list(text_hashes)],
        ).arrow()
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
        if table.num_rows == 0:
            return {}
        hashes = table.column("text_hash").to_pylist()
        vectors = _matrix(table.column("embedding"))
        return {h: vectors[i] for i, h in enumerate(hashes)}

    def write_documents(
        self, documents: Sequence[DocumentRow], chunks: Sequence[ChunkRow], embeddings: np.ndarray
    ) -> None:
        """Replace these documents and all their chunks. Call inside :meth:`transaction`."""
        if not documents:
            return
        self.chunks_changed = True
        doc_ids = [d.doc_id for d in documents]
        self.delete_documents(doc_ids)
        now = datetime.now().astimezone()
        doc_table = pa.table(
            {
                "doc_id": doc_ids,
                "source": [d.source for d in documents],
                "key": [d.key for d in documents],
                "title": [d.title for d in documents],
                "uri": [d.uri for d in documents],
                "text": [d.text for d in documents],
                "content_hash": [d.content_hash for d in documents],
                "updated_at": pa.array([d.updated_at for d in documents], type=pa.timestamp("us", tz="UTC")),
                "metadata": [json.dumps(d.metadata, sort_keys=True, default=str) for d in documents],
                "acl": pa.array([list(d.acl) for d in documents], type=pa.list_(pa.string())),
                "ingested_at": pa.array([now] * len(documents), type=pa.timestamp("us", tz="UTC")),
            }
        )
        self._insert_arrow("documents", doc_table)
        if chunks:
            chunk_table = pa.table(
                {
                    "chunk_id": pa.array([c.chunk.chunk_id for c in chunks], type=pa.int64()),
                    "doc_id": [c.chunk.doc_id for c in chunks],
                    "ordinal": pa.array([c.chunk.ordinal for c in chunks], type=pa.int32()),
                    "start_char": pa.array([c.chunk.start for c in chunks], type=pa.int32()),
                    "end_char": pa.array([c.chunk.end for c in chunks], type=pa.int32()),
                    "text": [c.chunk.text for c in chunks],
                    "search_text": [c.search_text for c in chunks],
                    "text_hash": [c.text_hash for c in chunks],
                    "embedding": _vector_column(embeddings),
                }
            )
            self._insert_arrow("chunks", chunk_table)

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        if not doc_ids:
            return 0
        ids = list(doc_ids)
        self._con.execute(
            "DELETE FROM sentences WHERE chunk_id IN (SELECT chunk_id FROM chunks WHERE doc_id IN (SELECT unnest(?)))",
            [ids],
        )
        self._con.execute("DELETE FROM chunks WHERE doc_id IN (SELECT unnest(?))", [ids])
        row = self._con.execute(
            "DELETE FROM documents WHERE doc_id IN (SELECT unnest(?)) RETURNING doc_id", [ids]
        ).fetchall()
        self.chunks_changed = self.chunks_changed or bool(row)
        deleted = len(row)
        for sid in self.segments:
            # An older segment is never written: its rows die by a tombstone in this version.
            found = self._con.execute(
                f"INSERT INTO dead SELECT ?, doc_id FROM {seg.catalog(sid)}.main.documents "
                "WHERE doc_id IN (SELECT unnest(?)) "
                "AND doc_id NOT IN (SELECT doc_id FROM dead WHERE segment = ?)",
                [sid, ids, sid],
            ).fetchone()
            deleted += int(found[0]) if found else 0
        return deleted

    def chunks_without_sentences(self) -> list[tuple[int, str, str]]:
        """``(chunk_id, title, text)`` of every chunk with no stored sentences, by chunk id: new
        chunks, and every chunk of a knowledge base built before sentences were stored."""
        rows = self._con.execute(
            f"SELECT c.chunk_id, coalesce(d.title, ''), c.text FROM {self._chunks} c JOIN {self._docs} d USING (doc_id) "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self._sents} s WHERE s.chunk_id = c.chunk_id) ORDER BY c.chunk_id"
        ).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def sentence_embeddings_for(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored embeddings of sentences whose embedded text has one of these hashes."""
        if not text_hashes:
            return {}
        table = self._con.execute(
            f"SELECT DISTINCT ON (text_hash) text_hash, embedding FROM {self._sents} WHERE text_hash IN (SELECT unnest(?))",
            [list(text_hashes)],
        ).arrow()
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
        if table.num_rows == 0:
            return {}
        vectors = _matrix(table.column("embedding"))
        return {h: vectors[i] for i, h in enumerate(table.column("text_hash").to_pylist())}

    def _insert_arrow(self, table_name: str, rows: pa.Table) -> None:
        """Append an Arrow table whose columns are ``table_name``'s, in order (one bulk insert)."""
        with arrow_view(self._con, f"_new_{table_name}", rows) as view:
            self._con.execute(f"INSERT INTO {table_name} SELECT * FROM {view}")

    def write_sentences(self, rows: Sequence[SentenceRow]) -> None:
        """Add evidence sentences (their chunks must have none yet). Call inside :meth:`transaction`."""
        if not rows:
            return
        table = pa.table(
            {
                "chunk_id": pa.array([r.chunk_id for r in rows], type=pa.int64()),
                "ordinal": pa.array([r.ordinal for r in rows], type=pa.int32()),
                "start_char": pa.array([r.start for r in rows], type=pa.int32()),
                "end_char": pa.array([r.end for r in rows], type=pa.int32()),
                "text_hash": [r.text_hash for r in rows],
                "embedding": _vector_column(np.stack([r.embedding for r in rows])),
            }
        )
        self._insert_arrow("sentences", table)

    def source_content_hashes(self, source: str) -> dict[str, str]:
        """Every document id of ``source`` with its content hash."""
        rows = self._con.execute(f"SELECT doc_id, content_hash FROM {self._docs} WHERE source = ?", [source]).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def source_doc_ids(self, source: str) -> set[str]:
        rows = self._con.execute(f"SELECT doc_id FROM {self._docs} WHERE source = ?", [source]).fetchall()
        return {str(r[0]) for r in rows}

    def doc_ids_with_key_prefix(self, source: str, prefix: str) -> set[str]:
        rows = self._con.execute(
            f"SELECT doc_id FROM {self._docs} WHERE source = ? AND starts_with(key, ?)", [source, prefix]
        ).fetchall()
        return {str(r[0]) for r in rows}

    def doc_id_for_key(self, source: str, key: str) -> str | None:
        row = self._con.execute(
            f"SELECT doc_id FROM {self._docs} WHERE source = ? AND key = ?", [source, key]
        ).fetchone()
        return None if row is None else str(row[0])

    def get_cursor(self, source: str, stream: str) -> dict[str, Any] | None:
        row = self._con.execute(
            "SELECT cursor FROM sync_state WHERE source = ? AND stream = ?", [source, stream]
        ).fetchone()
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    def set_cursor(self, source: str, stream: str, cursor: dict[str, Any] | None) -> None:
        self._con.execute(
            "INSERT OR REPLACE INTO sync_state VALUES (?, ?, ?, now())",
            [source, stream, None if cursor is None else json.dumps(cursor, sort_keys=True)],
        )

    def record_source(self, name: str, type_: str) -> None:
        self._con.execute(
            f"INSERT OR REPLACE INTO sources SELECT ?, ?, now(), count(*) FROM {self._docs} WHERE source = ?",
            [name, type_, name],
        )

    def rebuild_fts(self) -> None:
        """(Re)build the BM25 index; DuckDB's fts index does not follow table changes itself."""
        with self._postings_lock:
            self._con.execute(
                "PRAGMA create_fts_index('chunks', 'chunk_id', 'search_text', overwrite=1, "
                "stemmer='porter', stopwords='english', strip_accents=1, lower=1)"
            )
            self._postings = None

    def checkpoint(self) -> None:
        self._con.execute("CHECKPOINT")

    # -- reading ------------------------------------------------------------------------------

    def has_fts(self) -> bool:
        """Whether this file has its BM25 index (a segmented reader: whether any segment has one)."""
        if self.read_only and self.segments:
            databases = [seg.catalog(s) for s in self.segments]
        else:
            databases = [str(self.cursor().execute("SELECT current_database()").fetchone()[0])]  # type: ignore[index]
        row = (
            self.cursor()
            .execute(
                "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = ? AND database_name IN (SELECT unnest(?))",
                [FTS_SCHEMA, databases],
            )
            .fetchone()
        )
        return bool(row and row[0])

    def postings(self) -> Bm25Postings | None:
        """The BM25 index in memory (read on first use), or ``None`` before one is built; a
        segmented version's segments merged with its global statistics (:meth:`Bm25Postings.merge`)."""
        with self._postings_lock:
            if self._postings is None and self.has_fts():
                if self.read_only and self.segments:
                    assert self.segment_id is not None
                    dead = f"{seg.catalog(self.segment_id)}.main.dead"
                    parts = [
                        (seg.catalog(s), seg.dead_chunk_sql(s, dead))
                        for s in self.segments
                        if seg.has_table(self.cursor(), seg.catalog(s), "docs", FTS_SCHEMA)
                    ]
                    self._postings = Bm25Postings.merge(self.cursor(), parts)
                else:
                    self._postings = Bm25Postings.load(self.cursor())
            return self._postings

    def bm25(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-``k`` ``(chunk_id, score)`` by BM25, ties broken by id for stable order.

        ``allowed``: the chunk ids a search may return (:meth:`allowed_chunk_ids` of its filters,
        computed once by the caller and shared with the dense side); ``None``: every chunk.
        """
        postings = self.postings()
        if postings is None:
            return []
        return postings.top(self.cursor(), query, k, allowed)

    def allowed_chunk_ids(self, filters: SearchFilters) -> np.ndarray:
        where, params = _filter_sql(filters)
        table = (
            self.cursor()
            .execute(
                f"SELECT c.chunk_id FROM {self._chunks} c JOIN {self._docs} d USING (doc_id) WHERE true {where}", params
            )
            .arrow()
        )
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
        return np.asarray(table.column("chunk_id").to_numpy(), dtype=np.int64)

    def chunk_rows(self, chunk_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Chunk text, offsets and document fields for these ids.

        A read-only (published, immutable) store keeps the last :data:`ROW_CACHE_SIZE` rows it
        returned: each DuckDB query costs about a millisecond of CPU whatever it reads, the
        largest share of a search once BM25 and the query embedding are in memory.
        """
        ids = [int(i) for i in chunk_ids]
        if not ids:
            return {}
        out: dict[int, dict[str, Any]] = {}
        missing = ids
        if self.read_only:
            with self._rows_lock:
                for cid in ids:
                    rec = self._rows.get(cid)
                    if rec is not None:
                        self._rows.move_to_end(cid)
                        out[cid] = rec
            missing = [cid for cid in ids if cid not in out]
        if missing:
            cur = self.cursor()
            if self._rows_sql:
                # Each segment's chunks looked up by id on its own (no anti-join with the dead
                # rows over the whole union), and the dead documents' rows dropped here.
                cur.execute(self._rows_sql, {"ids": missing})
            else:
                cur.execute(
                    "SELECT c.chunk_id, c.doc_id, c.ordinal, c.start_char, c.end_char, c.text, "
                    "d.title, d.uri, d.source, d.key, d.updated_at, d.metadata "
                    f"FROM {self._chunks} c JOIN {self._docs} d USING (doc_id) WHERE c.chunk_id IN (SELECT unnest(?))",
                    [missing],
                )
            names = [col[0] for col in cur.description or []]
            fetched: dict[int, dict[str, Any]] = {}
            for row in cur.fetchall():
                rec = dict(zip(names, row, strict=True))
                segment = rec.pop("_segment", None)
                if segment is not None and rec["doc_id"] in self._dead.get(segment, ()):
                    continue
                rec["metadata"] = json.loads(rec["metadata"]) if rec["metadata"] else {}
                fetched[int(rec["chunk_id"])] = rec
            out.update(fetched)
            if self.read_only:
                with self._rows_lock:
                    self._rows.update(fetched)
                    while len(self._rows) > ROW_CACHE_SIZE:
                        self._rows.popitem(last=False)
        # Copies: a caller changing a row (or its metadata) must not change the cached one.
        return {cid: {**rec, "metadata": dict(rec["metadata"])} for cid, rec in out.items()}

    def sentences(self, chunk_ids: Iterable[int]) -> dict[int, StoredSentences]:
        """The stored evidence sentences of these chunks; a chunk without any (or a version
        written before sentences were stored, which has no ``sentences`` table) is left out."""
        ids = sorted({int(i) for i in chunk_ids})
        if not ids:
            return {}
        try:
            table = (
                self.cursor()
                .execute(
                    f"SELECT chunk_id, start_char, end_char, embedding FROM {self._sents} "
                    "WHERE chunk_id IN (SELECT unnest(?)) ORDER BY chunk_id, ordinal",
                    [ids],
                )
                .arrow()
            )
        except duckdb.CatalogException:
            return {}
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
        if table.num_rows == 0:
            return {}
        owners = np.asarray(table.column("chunk_id").to_numpy(), dtype=np.int64)
        starts = table.column("start_char").to_pylist()
        ends = table.column("end_char").to_pylist()
        vectors = _matrix(table.column("embedding"))
        vectors.setflags(write=False)
        out: dict[int, StoredSentences] = {}
        bounds = np.flatnonzero(np.diff(owners)) + 1
        for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(owners)], strict=True):
            spans = tuple((int(a), int(b)) for a, b in zip(starts[lo:hi], ends[lo:hi], strict=True))
            out[int(owners[lo])] = StoredSentences(spans, vectors[lo:hi])
        return out

    def vectors(self, ids: np.ndarray | None = None, *, own: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of all chunks, or of the chunks with these ids; ``own``: of this
        file's own chunks alone (a writer's segment), not of the version's live union."""
        chunks = "chunks" if own else self._chunks
        if ids is None:
            table = self.cursor().execute(f"SELECT chunk_id, embedding FROM {chunks} ORDER BY chunk_id").arrow()
        else:
            table = (
                self.cursor()
                .execute(
                    f"SELECT chunk_id, embedding FROM {chunks} WHERE chunk_id IN (SELECT unnest(?)) ORDER BY chunk_id",
                    [ids.astype(np.int64).tolist()],
                )
                .arrow()
            )
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
        found = np.asarray(table.column("chunk_id").to_numpy(), dtype=np.int64)
        return found, _matrix(table.column("embedding")) if len(found) else np.zeros((0, 0), np.float32)

    def chunk_ids(self) -> np.ndarray:
        table = self.cursor().execute(f"SELECT chunk_id FROM {self._chunks} ORDER BY chunk_id").arrow()
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
        return np.asarray(table.column("chunk_id").to_numpy(), dtype=np.int64)

    def counts(self) -> dict[str, int]:
        row = (
            self.cursor()
            .execute(
                # Every synced source counts, a mirrored table's too (it has no documents).
                f"SELECT (SELECT count(*) FROM {self._docs}), (SELECT count(*) FROM {self._chunks}), "
                f"(SELECT count(*) FROM (SELECT name FROM sources UNION SELECT source FROM {self._docs}))"
            )
            .fetchone()
        )
        assert row is not None
        return {"documents": int(row[0]), "chunks": int(row[1]), "sources": int(row[2])}

    def sources(self) -> list[dict[str, Any]]:
        cur = self.cursor()
        cur.execute("SELECT name, type, last_synced_at, documents FROM sources ORDER BY name")
        names = [c[0] for c in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _sql_text(value: str) -> str:
    return value.replace("'", "''")


def _vector_column(matrix: np.ndarray) -> pa.Array:
    """A 2-D float matrix as the Arrow list<float> column the embedding columns hold (the inverse of :func:`_matrix`)."""
    dim = matrix.shape[1]
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, dim).cast(pa.list_(pa.float32()))


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    """An Arrow list<float> column as a 2-D float32 matrix."""
    combined = column.combine_chunks()
    values = np.asarray(combined.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return values.reshape(len(combined), -1)


def _filter_sql(filters: SearchFilters | None) -> tuple[str, list[Any]]:
    """SQL conditions (each starting with AND) over ``c`` chunks and ``d`` documents."""
    if filters is None or filters.is_empty():
        return "", []
    parts: list[str] = []
    params: list[Any] = []
    if filters.sources:
        parts.append("d.source IN (SELECT unnest(?))")
        params.append(list(filters.sources))
    if filters.doc_ids:
        parts.append("d.doc_id IN (SELECT unnest(?))")
        params.append(list(filters.doc_ids))
    if filters.uri_prefix is not None:
        parts.append("starts_with(d.uri, ?)")
        params.append(filters.uri_prefix)
    if filters.updated_after is not None:
        parts.append("d.updated_at >= ?")
        params.append(filters.updated_after)
    if filters.updated_before is not None:
        parts.append("d.updated_at < ?")
        params.append(filters.updated_before)
    for key, value in filters.metadata:
        parts.append("json_extract_string(d.metadata, ?) = ?")
        # ensure_ascii=False: DuckDB's JSON path does not decode \u escapes, so "é" must stay "é".
        params.extend([f"$.{json.dumps(key, ensure_ascii=False)}", value])
    if filters.acl_groups is not None:
        parts.append("(len(coalesce(d.acl, [])) = 0 OR list_has_any(d.acl, ?::VARCHAR[]))")
        params.append(list(filters.acl_groups))
    return "".join(f" AND {p}" for p in parts), params
