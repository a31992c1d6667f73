"""Where each kind of data takes its ACL from: tables from the configuration, documents from the sync.

One SQLite source ``crm`` both mirrors a table (read by SQL) and renders its rows into documents
(read by search). It is synced while its configured ACL is group ``a``; the server then runs with
the configuration changed to group ``b`` and no re-sync. The mirrored table follows the
configuration at once (``b`` reads it through ``/v1/query``, ``a`` no longer can), while the
documents keep the ACL stamped at sync time (``a`` still finds them) until the next sync
re-stamps them. docs/sources.md ("Access control") says so; this test keeps it true.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

import grounded
from grounded.api.app import create_app
from grounded.ingest.sources import sync_sources
from grounded.ops.keys import KEYS_FILE, KeyStore
from tests.api.attacker import Attacker, attacker_server, expert_settings
from tests.api.serving import serving

TABLE_SECRET = "CRM-ROW-SECRET"
SQL = "SELECT note FROM crm.plans ORDER BY id"
QUESTION = "how many plans are there in the crm table?"


def _sources(db: Path, acl: list[str]) -> dict[str, Any]:
    table = {"name": "plans", "document": {"title": "plan {id}", "text": "Plan {id} was filed by the planning office."}}
    return {"crm": {"type": "sqlite", "acl": acl, "params": {"path": str(db), "tables": [table]}}}


@pytest.fixture(scope="module")
def split_kb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("aclsplit")
    con = sqlite3.connect(root / "crm.sqlite")
    con.execute("CREATE TABLE plans (id INTEGER PRIMARY KEY, note TEXT)")
    con.executemany("INSERT INTO plans VALUES (?, ?)", [(1, f"{TABLE_SECRET} one"), (2, f"{TABLE_SECRET} two")])
    con.commit()
    con.close()
    kb = grounded.open(root / "kb", sources=_sources(root / "crm.sqlite", ["a"]))
    assert all(r.ok for r in sync_sources(kb.store, kb.settings))
    keys = KeyStore(kb.path / KEYS_FILE)
    tokens = {"a": keys.create("alice", groups=["a"])[0], "b": keys.create("bob", groups=["b"])[0]}
    return root / "kb", root / "crm.sqlite", tokens


def _reads(url: str, token: str) -> tuple[bool, bool]:
    """(finds the rendered documents by search, reads the table's rows through /v1/query)."""
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=60) as client:
        search = client.post("/v1/search", json={"query": "plan filed by the planning office", "k": 5})
        query = client.post("/v1/query", json={"query": QUESTION, "cache": False})
    assert search.status_code == 200, search.text
    assert query.status_code == 200, query.text
    docs = any(h["source"] == "crm" for h in search.json()["hits"])
    return docs, TABLE_SECRET in query.text


def test_tables_follow_the_configuration_and_documents_the_last_sync(
    split_kb: tuple[Path, Path, dict[str, str]],
) -> None:
    path, db, tokens = split_kb
    attacker = Attacker(sql=SQL)
    with attacker_server(attacker) as model_url:
        experts = expert_settings(model_url, sql=True, tool_call=False)

        def served(acl: list[str]) -> Any:
            return grounded.open(path, create=False, sources=_sources(db, acl), experts=experts)

        with serving(create_app(served(["a"]))) as url:  # as synced: a reads both, b neither
            assert _reads(url, tokens["a"]) == (True, True)
            assert _reads(url, tokens["b"]) == (False, False)

        moved = served(["b"])  # the configuration now says b, and nothing was synced since
        with serving(create_app(moved)) as url:
            assert _reads(url, tokens["a"]) == (True, False)  # documents: still the sync's ACL
            assert _reads(url, tokens["b"]) == (False, True)  # the table: the configuration's
            assert all(r.ok for r in sync_sources(moved.store, moved.settings))  # re-stamps the documents
            assert _reads(url, tokens["a"]) == (False, False)
            assert _reads(url, tokens["b"]) == (True, True)
