"""Immutable, atomically published index versions in a knowledge-base directory.

Layout::

    kb/
      KB_FORMAT                 marks the directory as a knowledge base (format version)
      CURRENT                   name of the published version, replaced atomically
      versions/000007/          store.duckdb, vectors.faiss (none when it wrote no document), manifest.json,
                                tables/ (never modified)
      segments/000004/          a pruned version whose documents a kept version still reads
      staging/000008/           the next version while it is being built
      .write.lock               one writer at a time, across processes

A version is made of *segments*: its manifest's ``segments`` lists the versions whose
``store.duckdb`` documents, chunks and sentences (and ``vectors.faiss``) it reads, oldest first,
itself last when it wrote any. Each version's store holds only what it wrote, plus the small
state every version carries (sync cursors, sources, mirrored tables, and ``dead``: the documents
of older segments it replaced or deleted). A refresh that changes 1% of the knowledge base
writes that 1% and the state, never a copy of the rest (see :mod:`indexes.segments`). A version
from before segments existed has no ``segments`` in its manifest: it is its own only segment.

A writer builds the next version in ``staging/`` and publishes it by renaming it into
``versions/`` and then replacing ``CURRENT``. A crash at any point before that last rename
leaves ``CURRENT`` on the last good version; the orphaned staging directory is removed by the
next writer. Readers open published versions read-only and keep the one they started with.
Pruning moves a version that a kept version still reads into ``segments/`` (a rename: readers
that hold its files keep them) and removes it once no kept version reads it.

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

__all__ = ["FORMAT_VERSION", "TABLES_DIR", "VersionInfo", "VersionStore", "segment_dir"]

FORMAT_VERSION = 2
"""Format 2 added segments; a format-1 knowledge base opens as is and is marked 2 by its next write."""
READABLE_FORMATS = (1, 2)
STORE_FILE = "store.duckdb"
VECTORS_FILE = "vectors.faiss"


def shard_file(shard: int) -> str:
    """The FAISS file of one shard of a segment written with ``index.shards`` > 1."""
    return f"vectors.shard{shard}.faiss"


MANIFEST_FILE = "manifest.json"
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
    def vectors_path(self) -> Path:
        return self.path / VECTORS_FILE

    @property
    def segment_ids(self) -> list[str]:
        """The versions whose documents this one is made of, oldest first (see the module docstring)."""
        found = self.manifest.get("segments")
        if found is None:
            return [self.id]
        return [str(s["id"]) for s in found]

    @property
    def segment_shards(self) -> dict[str, list[dict[str, Any]]]:
        """The vector-index choice of each shard of the segments written in shards (others: absent)."""
        found = self.manifest.get("segments") or []
        return {str(s["id"]): [dict(c) for c in s["shards"]] for s in found if s.get("shards")}

    @property
    def segment_indexes(self) -> dict[str, dict[str, Any]]:
        """Each segment's vector-index choice (:class:`~indexes.faiss_index.IndexChoice` fields)."""
        found = self.manifest.get("segments")
        if found is None:
            return {self.id: dict(self.manifest.get("index", {"kind": "Flat"}))}
        return {str(s["id"]): dict(s.get("index", {"kind": "Flat"})) for s in found}

    @property
    def tables_path(self) -> Path:
        """``tables/``: one DuckDB file per source with mirrored tables (absent in versions built
        before it existed)."""
        return self.path / TABLES_DIR


def segment_dir(root: Path, sid: str) -> Path:
    """Where segment ``sid`` of the knowledge base in ``root`` lives: its version directory while
    that version is kept, ``segments/<sid>`` once pruning moved it there."""
    kept = root / "versions" / sid
    return kept if kept.is_dir() else root / "segments" / sid


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
            _write_atomic(marker, json.dumps({"format": "grounded-kb", "version": FORMAT_VERSION}))
        try:
            found = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorruptKnowledgeBase(f"{marker} is unreadable ({exc}); the directory is damaged") from exc
        if not isinstance(found, dict) or found.get("version") not in READABLE_FORMATS:
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

    def new_staging(self, *, copy: bool = True) -> tuple[str, Path]:
        """A fresh staging directory (hold the lock): a copy of the current version, or with
        ``copy=False`` an empty one that a segmented build fills with what it changes."""
        staging = self.root / "staging"
        shutil.rmtree(staging, ignore_errors=True)  # leftovers of a crashed writer
        staging.mkdir()
        vid = self.next_id()
        target = staging / vid
        current = self.current()
        if current is None or not copy:
            target.mkdir()
        else:
            shutil.copytree(current.path, target)
            (target / MANIFEST_FILE).unlink()
        return vid, target

    def publish(self, vid: str, staged: Path, manifest: dict[str, Any]) -> VersionInfo:
        """Make ``staged`` the current version; the only step readers can observe."""
        _write_atomic(staged / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True, default=str))
        tables = sorted((staged / TABLES_DIR).glob("*.duckdb")) if (staged / TABLES_DIR).is_dir() else []
        for file in [staged / STORE_FILE, *sorted(staged.glob("vectors*.faiss")), *tables]:
            if file.exists():
                with open(file, "rb") as fh:
                    os.fsync(fh.fileno())
        if manifest.get("segments") is not None:
            self._mark_format()
        final = self.root / "versions" / vid
        os.replace(staged, final)
        _fsync_dir(final.parent)
        _write_atomic(self.root / "CURRENT", vid)
        self.prune()
        return self.get(vid)

    def discard_staging(self) -> None:
        shutil.rmtree(self.root / "staging", ignore_errors=True)
        (self.root / "staging").mkdir(exist_ok=True)

    def _mark_format(self) -> None:
        """Mark a format-1 knowledge base as format 2 before its first segmented version is
        published: a grounded that reads only format 1 would see a segmented version's own
        documents alone, so it must refuse the directory instead."""
        marker = self.root / "KB_FORMAT"
        found = json.loads(marker.read_text(encoding="utf-8"))
        if found.get("version") != FORMAT_VERSION:
            _write_atomic(marker, json.dumps({"format": "grounded-kb", "version": FORMAT_VERSION}))

    def prune(self) -> list[str]:
        """Remove the oldest versions beyond ``keep``; the current one always stays.

        A pruned version that a kept version still reads as a segment moves to ``segments/``;
        segments no kept version reads are removed. A process still reading a removed version
        keeps its open files (POSIX unlink and rename semantics).
        """
        current = self.current_id()
        ids = self.list_ids()
        removable = [v for v in ids[: max(0, len(ids) - self.keep)] if v != current]
        kept = [v for v in ids if v not in removable]
        referenced: set[str] = set()
        for vid in kept:
            try:
                referenced.update(self.get(vid).segment_ids)
            except CorruptKnowledgeBase:
                referenced.add(vid)
        segments = self.root / "segments"
        for vid in removable:
            if vid in referenced:
                segments.mkdir(exist_ok=True)
                os.replace(self.root / "versions" / vid, segments / vid)
            else:
                shutil.rmtree(self.root / "versions" / vid, ignore_errors=True)
        if segments.is_dir():
            for old in segments.iterdir():
                if old.name not in referenced:
                    shutil.rmtree(old, ignore_errors=True)
            _fsync_dir(segments)
        return removable
