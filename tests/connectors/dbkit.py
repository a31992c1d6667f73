"""Helpers for connector tests: run SQL on the test servers, read the mirror, a KB without a model."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from grounded.config import load_settings
from grounded.kb import KnowledgeBase
from tests.ci import skip_or_fail

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MY = {"host": "127.0.0.1", "port": 3306, "user": "root"}


def unavailable(what: str, exc: Exception) -> NoReturn:
    """Skip (or, in CI, fail) because a server is not reachable."""
    skip_or_fail(f"{what} is not reachable ({exc}); start it (see ../shared/env-services.md)")


class HashEmbedder:
    """A deterministic stand-in for the embedding model: mirror tests need no real model.

    It counts what it embeds, so tests can assert that unchanged rows are not re-embedded.
    """

    fingerprint = "test-hash-embedder"
    dim = 32

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def embed(self, texts: Sequence[str], *, progress: bool = False, all_cores: bool = False) -> np.ndarray:
        self.embedded.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            vec = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            out[i] = vec / np.linalg.norm(vec)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def make_kb(path: Path, **settings: Any) -> KnowledgeBase:
    kb = KnowledgeBase(path, load_settings(kb_path=path, **settings))
    kb.store.embedder = HashEmbedder()  # type: ignore[assignment]
    return kb


def pg_exec(params: dict[str, Any], *statements: str, rows: Sequence[Sequence[Any]] = ()) -> None:
    import psycopg

    with psycopg.connect(
        host=params["host"], port=params["port"], user=params["user"], dbname=params["database"]
    ) as con:
        for sql in statements:
            if rows and "%s" in sql:
                with con.cursor() as cur:
                    cur.executemany(sql, rows)
            else:
                con.execute(sql)


def my_exec(params: dict[str, Any], *statements: str, rows: Sequence[Sequence[Any]] = ()) -> None:
    import pymysql

    con = pymysql.connect(
        host=params["host"],
        port=params["port"],
        user=params["user"],
        database=params["database"],
        password=params.get("password", ""),
    )
    try:
        with con.cursor() as cur:
            for sql in statements:
                if rows and "%s" in sql:
                    cur.executemany(sql, rows)
                else:
                    cur.execute(sql)
        con.commit()
    finally:
        con.close()


def mirror_rows(kb: KnowledgeBase, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` against the current published version's DuckDB file."""
    from indexes.duckdb_store import DuckDBStore

    version = kb.versions.current()
    assert version is not None, "nothing published"
    store = DuckDBStore.open(version.store_path, read_only=True)
    try:
        return [tuple(r) for r in store.cursor().execute(sql).fetchall()]
    finally:
        store.close()
