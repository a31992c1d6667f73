"""Immutable, atomically published index versions in a knowledge-base directory.

Layout::

    kb/
      KB_FORMAT                 marks the directory as a knowledge base (format version)
      CURRENT                   name of the published version, replaced atomically
      segments/000005-0/        chunks.duckdb (documents, chunks, BM25), vectors.faiss: immutable,
                                shared by every version that lists it
      versions/000007/          store.duckdb (the head), manifest.json, tables/ (never modified)
      staging/000008/           the next version while it is being built
      .write.lock               one writer at a time, across processes

A version is a small *head* (sync state, sources, mirrored tables, the list of its segments and
the documents it deleted from them) over immutable *segments* holding documents, chunks, their
embeddings, a BM25 index and a FAISS index (:mod:`indexes.segments`). A writer copies only the
head into ``staging/`` (mirrored-table files are hard-linked: they are replaced, never changed),
writes the documents it adds or changes into new segments there, and records what it deleted as
tombstones in the head; so publishing costs what changed, not the size of the knowledge base.
Segments merge when there are too many (compaction, in the writer, also into new segments).

Publishing moves the new segments into ``segments/``, renames the staged head into
``versions/`` and then replaces ``CURRENT``. A crash at any point before that last rename leaves
``CURRENT`` on the last good version; the orphaned staging copy and any segment no version lists
are removed by the next writer. Readers open published versions read-only and keep the one they
started with; a segment is deleted only when no kept version lists it.

``tables/<source>.duckdb`` holds a copy of each source's mirrored tables (the store keeps the
originals, written in the same transaction as their cursor): a caller's SQL runs on a connection
that attaches only the files of the sources it may read, so what it may not read is not there
to name (see :mod:`grounded.sql.database`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounded.errors import CorruptKnowledgeBase, KnowledgeBaseLocked

__all__ = ["FORMAT_VERSION", "SEGMENTS_DIR", "SEGMENT_STORE", "TABLES_DIR", "VersionInfo", "VersionStore"]

FORMAT_VERSION = 2
"""2: versions are heads over shared segments; 1 (one store file per version) must be re-ingested."""
STORE_FILE = "store.duckdb"
VECTORS_FILE = "vectors.faiss"
MANIFEST_FILE = "manifest.json"
SEGMENTS_DIR = "segments"
SEGMENT_STORE = "chunks.duckdb"
TABLES_DIR = "tables"
"""Per-source copies of the mirrored tables, one DuckDB file per source."""


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """A published version: its id, directory and manifest."""

    id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def store_path(self) -> Path:
        return self.path / STORE_FILE

    @property
    def segments(self) -> list[dict[str, Any]]:
        """The segments this version reads (``id``, ``shard``, ``chunks``, ``index``), oldest first."""
        return list(self.manifest.get("segments", []))

    def segment_path(self, segment: str) -> Path:
        """The directory of one segment (shared by the versions that list it)."""
        return self.path.parent.parent / SEGMENTS_DIR / segment

    @property
    def tables_path(self) -> Path:
        """``tables/``: one DuckDB file per source with mirrored tables (absent in versions built
        before it existed)."""
        return self.path / TABLES_DIR


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class VersionStore:
    """The version directory layout of one knowledge base."""

    def __init__(self, root: Path, *, keep: int = 3) -> None:
        self.root = root
        self.keep = max(1, keep)

    @classmethod
    def open(cls, root: Path, *, create: bool, keep: int = 3) -> VersionStore:
        """Open ``root``; with ``create``, make it a knowledge base when it is new or empty."""
        marker = root / "KB_FORMAT"
        if not marker.exists():
            if root.exists() and not root.is_dir():
                raise CorruptKnowledgeBase(f"{root} is a file, not a knowledge-base directory")
            if root.exists() and any(root.iterdir()):
                raise CorruptKnowledgeBase(
                    f"{root} is not a grounded knowledge base (no KB_FORMAT file) and is not empty; "
                    "pass a new or empty directory"
                )
            if not create:
                raise CorruptKnowledgeBase(
                    f"{root} is not a knowledge base yet; create one with `grounded ingest PATH --kb {root}`"
                )
            (root / "versions").mkdir(parents=True, exist_ok=True)
            (root / "staging").mkdir(exist_ok=True)
            (root / SEGMENTS_DIR).mkdir(exist_ok=True)
            _write_atomic(marker, json.dumps({"format": "grounded-kb", "version": FORMAT_VERSION}))
        try:
            found = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorruptKnowledgeBase(f"{marker} is unreadable ({exc}); the directory is damaged") from exc
        if isinstance(found, dict) and found.get("version") == 1:
            raise CorruptKnowledgeBase(
                f"{root} was built by an older grounded (format 1: one store per version); this grounded reads "
                f"format {FORMAT_VERSION} (versions over shared segments): re-ingest into a new directory"
            )
        if not isinstance(found, dict) or found.get("version") != FORMAT_VERSION:
            raise CorruptKnowledgeBase(f"{marker} says format {found!r}; this grounded reads format {FORMAT_VERSION}")
        return cls(root, keep=keep)

    def current_id(self) -> str | None:
        try:
            text = (self.root / "CURRENT").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text or None

    def current(self) -> VersionInfo | None:
        """The published version, or ``None`` before the first publish."""
        vid = self.current_id()
        return None if vid is None else self.get(vid)

    def get(self, vid: str) -> VersionInfo:
        path = self.root / "versions" / vid
        try:
            manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorruptKnowledgeBase(
                f"version {vid} in {self.root} is missing or damaged ({exc}); "
                "restore it from a backup or re-ingest into a new directory"
            ) from exc
        return VersionInfo(vid, path, manifest)

    def list_ids(self) -> list[str]:
        return sorted(p.name for p in (self.root / "versions").iterdir() if p.is_dir())

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the knowledge base's single-writer lock (fails at once when taken)."""
        fh = open(self.root / ".write.lock", "a+")  # noqa: SIM115 - held for the with-block
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise KnowledgeBaseLocked(
                    f"another process is writing to {self.root}; wait for it to finish and try again"
                ) from exc
            yield
        finally:
            fh.close()

    def next_id(self) -> str:
        ids = [int(v) for v in self.list_ids() if v.isdigit()]
        return f"{(max(ids) + 1 if ids else 1):06d}"

    def new_staging(self) -> tuple[str, Path]:
        """A fresh staging directory holding a copy of the current version's head (hold the lock).

        Only the head is copied; mirrored-table files are hard-linked (a writer replaces them by
        rename, never changes them in place) and segments are shared, not copied at all.
        """
        staging = self.root / "staging"
        shutil.rmtree(staging, ignore_errors=True)  # leftovers of a crashed writer
        staging.mkdir()
        self.collect_segments()
        vid = self.next_id()
        target = staging / vid
        target.mkdir()
        current = self.current()
        if current is not None:
            for item in current.path.iterdir():
                if item.name == MANIFEST_FILE:
                    continue
                if item.is_dir():
                    shutil.copytree(item, target / item.name, copy_function=os.link)
                else:
                    shutil.copy2(item, target / item.name)
        return vid, target

    def publish(self, vid: str, staged: Path, manifest: dict[str, Any]) -> VersionInfo:
        """Make ``staged`` the current version; the only step readers can observe.

        New segments written under ``staged/segments/`` move into the shared ``segments/`` first;
        until ``CURRENT`` names the new version, no published version lists them.
        """
        _write_atomic(staged / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True, default=str))
        tables = sorted((staged / TABLES_DIR).glob("*.duckdb")) if (staged / TABLES_DIR).is_dir() else []
        new_segments = sorted(p for p in (staged / SEGMENTS_DIR).iterdir()) if (staged / SEGMENTS_DIR).is_dir() else []
        files = [staged / STORE_FILE, *tables]
        for seg in new_segments:
            files.extend(seg.iterdir())
        for file in files:
            if file.exists():
                with open(file, "rb") as fh:
                    os.fsync(fh.fileno())
        shared = self.root / SEGMENTS_DIR
        shared.mkdir(exist_ok=True)
        for seg in new_segments:
            _fsync_dir(seg)
            os.replace(seg, shared / seg.name)
        if new_segments:
            _fsync_dir(shared)
            (staged / SEGMENTS_DIR).rmdir()
        final = self.root / "versions" / vid
        os.replace(staged, final)
        _fsync_dir(final.parent)
        _write_atomic(self.root / "CURRENT", vid)
        self.prune()
        return self.get(vid)

    def discard_staging(self) -> None:
        shutil.rmtree(self.root / "staging", ignore_errors=True)
        (self.root / "staging").mkdir(exist_ok=True)

    def prune(self) -> list[str]:
        """Remove the oldest versions beyond ``keep``; the current one always stays.

        A process still reading a removed version keeps its open files (POSIX unlink semantics).
        """
        current = self.current_id()
        ids = self.list_ids()
        removable = [v for v in ids[: max(0, len(ids) - self.keep)] if v != current]
        for vid in removable:
            shutil.rmtree(self.root / "versions" / vid, ignore_errors=True)
        self.collect_segments()
        return removable

    def collect_segments(self) -> list[str]:
        """Delete the segments no kept version lists (a crashed writer's, or pruned versions').

        Call with the write lock held. A version whose manifest cannot be read keeps every
        segment: deleting data on a guess is worse than keeping some bytes.
        """
        shared = self.root / SEGMENTS_DIR
        if not shared.is_dir():
            return []
        listed: set[str] = set()
        for vid in self.list_ids():
            try:
                manifest = json.loads((self.root / "versions" / vid / MANIFEST_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return []
            listed.update(str(seg["id"]) for seg in manifest.get("segments", []))
        gone = sorted(p.name for p in shared.iterdir() if p.name not in listed)
        for name in gone:
            shutil.rmtree(shared / name, ignore_errors=True)
        return gone
