"""The answer cache: ``<kb>/cache.sqlite``, shared by every process serving the knowledge base.

Published versions are read-only DuckDB files opened by many processes at once, so answers
live beside them in SQLite (WAL mode: many readers, one writer at a time, no server). The key
is a hash of exactly what decides an answer: the normalised question, the index version, the
answer/search configuration and the fingerprints of the models. A new index version changes
the key, and rows of older versions are deleted when the first answer of a new one is stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import unicodedata
from pathlib import Path
from typing import Any

from grounded.errors import KnowledgeBaseError

__all__ = ["AnswerCache", "cache_key", "normalise_question"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    index_version TEXT NOT NULL,
    answer TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS answers_version ON answers (index_version);
"""


def normalise_question(question: str) -> str:
    """Unicode NFKC with runs of whitespace collapsed: how a question is asked and keyed."""
    return " ".join(unicodedata.normalize("NFKC", question).split())


def cache_key(question: str, index_version: str, config: dict[str, Any], models: dict[str, str]) -> str:
    """sha256 over the normalised question, version, config and model fingerprints."""
    material = json.dumps(
        {"q": normalise_question(question), "v": index_version, "config": config, "models": models},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class AnswerCache:
    """A small key -> answer-JSON store in SQLite; safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._pruned_for: str | None = None
        try:
            with self._connect() as con:
                con.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise KnowledgeBaseError(
                f"cannot open the answer cache {path} ({exc}); delete the file to start a fresh cache"
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def get(self, key: str) -> str | None:
        """The stored answer JSON, or ``None``; a damaged cache is a miss, never an error."""
        try:
            row = self._connect().execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else str(row[0])

    def put(self, key: str, index_version: str, answer_json: str) -> None:
        """Store an answer; the first write for a new version drops the rows of older ones."""
        try:
            con = self._connect()
            with con:
                if self._pruned_for != index_version:
                    con.execute("DELETE FROM answers WHERE index_version <> ?", (index_version,))
                    self._pruned_for = index_version
                con.execute(
                    "INSERT OR REPLACE INTO answers (key, index_version, answer) VALUES (?, ?, ?)",
                    (key, index_version, answer_json),
                )
        except sqlite3.Error:
            # A cache that cannot be written (read-only mount, full disk) must not fail an answer.
            return

    def clear(self) -> int:
        with self._connect() as con:
            return con.execute("DELETE FROM answers").rowcount

    def __len__(self) -> int:
        row = self._connect().execute("SELECT count(*) FROM answers").fetchone()
        return int(row[0]) if row else 0
