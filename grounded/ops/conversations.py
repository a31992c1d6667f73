"""Server-side conversations: the turns of a dialogue kept in ``<kb>/conversations.sqlite``.

A client may send the whole dialogue with every request (``messages``), or let the server
keep it: ``POST /v1/query`` with ``"conversation": true`` starts a conversation and returns its
``conversation_id``; later requests send that id and only the new question. A conversation
belongs to the API key that created it: any other key, admin or not, gets 404 (the id is not
even confirmed to exist). A conversation holds at most ``conversation.max_turns`` turns and
``conversation.max_chars`` characters; past that, :class:`~grounded.errors.RequestTooLarge`
(413) says to start a new one.

Example::

    store = ConversationStore(Path("kb") / "conversations.sqlite", max_turns=50, max_chars=100_000)
    conv = store.create("key-id")
    store.append(conv.id, "key-id", [Turn("user", "who founded it?"), Turn("assistant", "... [1]")])
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from grounded.answering.conversation import Turn
from grounded.errors import KnowledgeBaseError, NotFound, RequestTooLarge

__all__ = ["CONVERSATIONS_FILE", "Conversation", "ConversationStore"]

CONVERSATIONS_FILE = "conversations.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    turns TEXT NOT NULL,
    chars INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Conversation:
    """A stored conversation: its id, its turns (oldest first) and when it last changed."""

    id: str
    turns: tuple[Turn, ...]
    created_at: str
    updated_at: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ConversationStore:
    """Conversations in a small SQLite file beside the index versions, each bound to one key."""

    def __init__(self, path: Path, *, max_turns: int, max_chars: int) -> None:
        self.path = path
        self.max_turns = max_turns
        self.max_chars = max_chars
        self._local = threading.local()
        self._write = threading.Lock()
        try:
            self._con().executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise KnowledgeBaseError(f"cannot open the conversation store {path} ({exc})") from exc

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            self._local.con = con
        return con

    def create(self, key_id: str) -> Conversation:
        """A new, empty conversation owned by ``key_id``."""
        now = _now()
        conv_id = "conv_" + secrets.token_urlsafe(16)
        self._con().execute(
            "INSERT INTO conversations (id, key_id, turns, chars, created_at, updated_at) VALUES (?, ?, '[]', 0, ?, ?)",
            (conv_id, key_id, now, now),
        )
        return Conversation(conv_id, (), now, now)

    def get(self, conv_id: str, key_id: str) -> Conversation:
        """The conversation ``conv_id`` if ``key_id`` owns it; :class:`NotFound` otherwise."""
        row = (
            self._con()
            .execute(
                "SELECT turns, created_at, updated_at FROM conversations WHERE id = ? AND key_id = ?",
                (conv_id, key_id),
            )
            .fetchone()
        )
        if row is None:
            # The same answer for "no such id" and "someone else's": an id's existence is not leaked.
            raise NotFound(f'no conversation {conv_id!r} for this API key; start one with "conversation": true')
        turns = tuple(Turn(t["role"], t["text"]) for t in json.loads(row[0]))
        return Conversation(conv_id, turns, str(row[1]), str(row[2]))

    def check_room(self, conv: Conversation, adding: Sequence[Turn]) -> None:
        """:class:`RequestTooLarge` when ``adding`` would take ``conv`` past a limit."""
        turns = len(conv.turns) + len(adding)
        chars = sum(len(t.text) for t in (*conv.turns, *adding))
        if turns > self.max_turns or chars > self.max_chars:
            raise RequestTooLarge(
                f"conversation {conv.id!r} would hold {turns} turns and {chars} characters; the limit is "
                f"{self.max_turns} turns and {self.max_chars} characters (conversation.max_turns, "
                "conversation.max_chars): start a new conversation"
            )

    def append(self, conv_id: str, key_id: str, turns: Sequence[Turn]) -> Conversation:
        """Add ``turns`` to the conversation (checked against the limits); returns it updated."""
        with self._write:
            conv = self.get(conv_id, key_id)
            self.check_room(conv, turns)
            updated = (*conv.turns, *turns)
            now = _now()
            self._con().execute(
                "UPDATE conversations SET turns = ?, chars = ?, updated_at = ? WHERE id = ? AND key_id = ?",
                (
                    json.dumps([{"role": t.role, "text": t.text} for t in updated], ensure_ascii=False),
                    sum(len(t.text) for t in updated),
                    now,
                    conv_id,
                    key_id,
                ),
            )
            return Conversation(conv_id, updated, conv.created_at, now)

    def delete(self, conv_id: str, key_id: str) -> None:
        """Forget the conversation; :class:`NotFound` when ``key_id`` does not own it."""
        cur = self._con().execute("DELETE FROM conversations WHERE id = ? AND key_id = ?", (conv_id, key_id))
        if cur.rowcount == 0:
            raise NotFound(f"no conversation {conv_id!r} for this API key")
