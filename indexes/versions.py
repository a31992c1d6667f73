"""Immutable, atomically published index versions in a knowledge-base directory.

Layout::

    kb/
      KB_FORMAT                 marks the directory as a knowledge base (format version)
      CURRENT                   name of the published version, replaced atomically
      versions/000007/          store.duckdb, vectors.faiss, manifest.json, tables/ (never modified)
      staging/000008/           the next version while it is being built
      .write.lock               one writer at a time, across processes

A writer copies the current version into ``staging/``, changes the copy, and publishes it by
renaming it into ``versions/`` and then replacing ``CURRENT``. A crash at any point before that
last rename leaves ``CURRENT`` on the last good version; the orphaned staging copy is removed
by the next writer. Readers open published versions read-only and keep the one they started with.

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

__all__ = ["FORMAT_VERSION", "TABLES_DIR", "VersionInfo", "VersionStore"]

FORMAT_VERSION = 1
STORE_FILE = "store.duckdb"
VECTORS_FILE = "vectors.faiss"
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
            _write_atomic(marker, json.dumps({"format": "grounded-kb", "version": FORMAT_VERSION}))
        try:
            found = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorruptKnowledgeBase(f"{marker} is unreadable ({exc}); the directory is damaged") from exc
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
        """A fresh staging directory holding a copy of the current version (hold the lock)."""
        staging = self.root / "staging"
        shutil.rmtree(staging, ignore_errors=True)  # leftovers of a crashed writer
        staging.mkdir()
        vid = self.next_id()
        target = staging / vid
        current = self.current()
        if current is None:
            target.mkdir()
        else:
            shutil.copytree(current.path, target)
            (target / MANIFEST_FILE).unlink()
        return vid, target

    def publish(self, vid: str, staged: Path, manifest: dict[str, Any]) -> VersionInfo:
        """Make ``staged`` the current version; the only step readers can observe."""
        _write_atomic(staged / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True, default=str))
        tables = sorted((staged / TABLES_DIR).glob("*.duckdb")) if (staged / TABLES_DIR).is_dir() else []
        for file in [staged / STORE_FILE, staged / VECTORS_FILE, *tables]:
            if file.exists():
                with open(file, "rb") as fh:
                    os.fsync(fh.fileno())
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
        return removable
