"""API keys (hashed at rest in ``<kb>/keys.sqlite``) mapped to groups.

A key looks like ``gk_<id>_<secret>``: ``id`` names the row, ``secret`` is 32 random bytes. Only
``sha256(secret)`` is stored: the secret has 256 bits of entropy, so a slow password hash would
add nothing but latency to every request. Keys carry ACL groups and an ``admin`` flag.

- A caller sees documents whose source has no ACL, or shares one of the key's groups.
- An admin key sees everything and may use the admin routes (sources, jobs, refresh, metrics).
- While no key has ever been created, the server runs in *local development mode*: every
  caller is an admin. The server logs a warning saying so at start-up. Revoking every key does
  not return to development mode: it locks the API.

Example::

    keys = KeyStore(Path("kb") / "keys.sqlite")
    token, record = keys.create("ci-bot", groups=["staff"])
    keys.authenticate(token)          # Principal(key_id=record.id, groups=("staff",), admin=False)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from grounded.access import DEV_PRINCIPAL, Principal
from grounded.errors import InvalidRequest, KnowledgeBaseError, NotFound, Unauthorized

__all__ = ["KEYS_FILE", "ApiKey", "KeyStore"]

KEYS_FILE = "keys.sqlite"
_PREFIX = "gk_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    groups TEXT NOT NULL,
    admin INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    id: str
    name: str
    groups: tuple[str, ...]
    admin: bool
    created_at: str
    revoked_at: str | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _valid_group(group: str) -> str:
    group = group.strip()
    if not group or not all(ch.isalnum() or ch in "-_.:" for ch in group):
        raise InvalidRequest(f"group {group!r} must be letters, digits, '-', '_', '.' or ':'")
    if group.startswith("grounded:"):
        raise InvalidRequest(f"group {group!r}: names starting with 'grounded:' are reserved")
    return group


class KeyStore:
    """API keys in a small SQLite file beside the index versions (never inside one)."""

    def __init__(self, path: Path, *, cache_s: float = 1.0) -> None:
        self.path = path
        self.cache_s = cache_s
        self._local = threading.local()
        self._has_keys: tuple[float, bool] | None = None
        try:
            self._con().executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise KnowledgeBaseError(f"cannot open the API key store {path} ({exc})") from exc

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            self._local.con = con
        return con

    # -- administration ---------------------------------------------------------------------------

    def create(self, name: str, *, groups: list[str] | tuple[str, ...] = (), admin: bool = False) -> tuple[str, ApiKey]:
        """A new key; returns the token (shown once, never stored) and its record."""
        if not name.strip():
            raise InvalidRequest("a key needs a name (who or what uses it), e.g. --name ci-bot")
        clean = tuple(sorted({_valid_group(g) for g in groups}))
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        self._con().execute(
            "INSERT INTO api_keys (id, name, secret_sha256, groups, admin, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, name.strip(), _digest(secret), ",".join(clean), int(admin), created),
        )
        self._has_keys = None
        return f"{_PREFIX}{key_id}_{secret}", ApiKey(key_id, name.strip(), clean, admin, created, None)

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        rows = self._con().execute(
            "SELECT id, name, groups, admin, created_at, revoked_at FROM api_keys ORDER BY created_at, id"
        )
        return [
            ApiKey(str(i), str(n), tuple(g for g in str(gs).split(",") if g), bool(a), str(c), r)
            for i, n, gs, a, c, r in rows.fetchall()
        ]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id (the part after ``gk_``); it stops working at once."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        cur = self._con().execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", (now, key_id)
        )
        if cur.rowcount == 0:
            raise NotFound(f"no API key with id {key_id!r}; `grounded keys list` shows the ids")
        return next(k for k in self.list() if k.id == key_id)

    # -- requests ---------------------------------------------------------------------------------

    def has_keys(self) -> bool:
        """Whether any key was ever created (re-read at most every ``cache_s`` seconds)."""
        now = time.monotonic()
        if self._has_keys is not None and now - self._has_keys[0] < self.cache_s:
            return self._has_keys[1]
        row = self._con().execute("SELECT EXISTS (SELECT 1 FROM api_keys)").fetchone()
        found = bool(row and row[0])
        self._has_keys = (now, found)
        return found

    def authenticate(self, token: str | None) -> Principal:
        """The principal for ``token``; :class:`Unauthorized` when missing, unknown or revoked."""
        if not self.has_keys():
            return DEV_PRINCIPAL
        if not token:
            raise Unauthorized("this server requires an API key: send `Authorization: Bearer <key>`")
        parts = token.split("_", 2)
        if len(parts) != 3 or f"{parts[0]}_" != _PREFIX:
            raise Unauthorized("the API key is malformed; keys look like gk_<id>_<secret>")
        row = (
            self._con()
            .execute("SELECT secret_sha256, groups, admin, revoked_at FROM api_keys WHERE id = ?", (parts[1],))
            .fetchone()
        )
        if row is None or not hmac.compare_digest(str(row[0]), _digest(parts[2])) or row[3] is not None:
            raise Unauthorized("the API key is unknown or revoked")
        return Principal(key_id=parts[1], groups=tuple(g for g in str(row[1]).split(",") if g), admin=bool(row[2]))
