"""The SQL tool's ACL end to end: a prompt-injected model writes an attacker's SQL, over every channel.

Two keys in two groups on a real server on loopback: group ``a`` may read the ``shop`` tables,
group ``b`` the ``hr`` tables and the ``hidden`` documents. The stand-in model
(:mod:`tests.api.attacker`, an OpenAI-compatible server on loopback) plays the SQL expert or the
tool-call expert and writes whatever SQL the test sets — the SQL a model would write after a
prompt injection. Whatever it writes, a group-``a`` caller must never see ``hr``'s rows, the
hidden documents, the knowledge base's own tables, or the names of what it may not read — in
the answer, its citations, its trace (drafts and calls) or an error, on ``/v1/query`` (JSON and
server-sent events), ``/v1/chat/completions`` (plain and streamed) and MCP (``/mcp`` and
``grounded mcp`` over stdio: the ``ask`` tool with the attacker as the model, and the ``sql``
tool with the attacker as the agent). The admin key, which may read everything, shows that each
attack would leak if the sandbox let it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

import grounded
from grounded.api.app import create_app
from grounded.ingest.sources import sync_sources
from grounded.ops.keys import KEYS_FILE, KeyStore
from tests.api.attacker import Attacker, attacker_server, expert_settings
from tests.api.serving import serving

TABLE_SECRET = "BRAVO-TABLE-SECRET ceo pay"
DOC_SECRET = "HIDDEN-DOC-SECRET"
QUESTION = "how many products are in the kitchen room?"

ATTACKS = {
    # Issue 23, item 1: a CTE named like a hidden table, reading the table it shadows.
    "cte-shadows-hidden-table": "WITH probe_salaries AS (SELECT * FROM probe_salaries) SELECT * FROM probe_salaries",
    "cte-shadows-documents": "WITH documents AS (SELECT * FROM documents) SELECT title, text FROM documents",
    "cte-shadows-catalog": "WITH sqlite_master AS (SELECT * FROM sqlite_master) SELECT name, sql FROM sqlite_master",
    "cte-shadows-chunks": "WITH chunks AS (SELECT * FROM chunks) SELECT text FROM chunks",
    "cte-shadows-information-schema": (
        "WITH columns AS (SELECT * FROM information_schema.columns) SELECT table_name, column_name FROM columns"
    ),
    # Item 2: errors of drafts and calls that quote hidden data or list hidden tables.
    "cast-error-quotes-a-hidden-cell": "SELECT CAST(note AS INTEGER) AS n FROM hr.probe_salaries",
    "missing-table-lists-tables": "SELECT * FROM no_such_table",
    "hidden-table-by-name": "SELECT * FROM hr.probe_salaries",
}


def leaks(sql: str) -> list[str]:
    """What an attack's answer must not contain: hidden data always, hidden names unless the attacker wrote them."""
    return ["BRAVO", DOC_SECRET] + [w for w in ("probe_salaries", "CREATE TABLE") if w not in sql]


def _write_sqlite(path: Path, ddl: str, rows: list[tuple[Any, ...]], table: str) -> Path:
    con = sqlite3.connect(path)
    con.execute(ddl)
    con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in rows[0])})", rows)
    con.commit()
    con.close()
    return path


@pytest.fixture(scope="module")
def acl_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, str]]:
    root = tmp_path_factory.mktemp("sqlacl")
    shop = _write_sqlite(
        root / "shop.sqlite",
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, room TEXT)",
        [(1, "kettle", "kitchen"), (2, "toaster", "kitchen"), (3, "lamp", "living")],
        "products",
    )
    hr = _write_sqlite(
        root / "hr.sqlite",
        "CREATE TABLE probe_salaries (id INTEGER PRIMARY KEY, name TEXT, note TEXT)",
        [(1, "ceo", TABLE_SECRET), (2, "cto", "BRAVO second row")],
        "probe_salaries",
    )
    (root / "public").mkdir()
    (root / "public" / "kitchen.txt").write_text("The kitchen room holds the kettle and the toaster.\n")
    (root / "hidden").mkdir()
    (root / "hidden" / "memo.txt").write_text(f"The {DOC_SECRET} memo says the kitchen budget is frozen.\n")
    sources = {
        "shop": {"type": "sqlite", "acl": ["a"], "params": {"path": str(shop), "tables": [{"name": "products"}]}},
        "hr": {"type": "sqlite", "acl": ["b"], "params": {"path": str(hr), "tables": [{"name": "probe_salaries"}]}},
        "public": {"type": "files", "params": {"path": str(root / "public")}},
        "hidden": {"type": "files", "acl": ["b"], "params": {"path": str(root / "hidden")}},
    }
    kb = grounded.open(root / "kb", sources=sources)
    assert all(r.ok for r in sync_sources(kb.store, kb.settings)), "the test sources must sync"
    keys = KeyStore(kb.path / KEYS_FILE)
    tokens = {
        "a": keys.create("alice", groups=["a"])[0],
        "b": keys.create("bob", groups=["b"])[0],
        "admin": keys.create("ops", admin=True)[0],
    }
    return root / "kb", sources, tokens


@pytest.fixture(scope="module", params=["sql", "tool_call"])
def server(request: pytest.FixtureRequest, acl_root: tuple[Path, dict[str, Any], dict[str, str]]) -> Iterator[Any]:
    """A server whose SQL comes from the attacker, as the SQL expert or as the tool-call expert."""
    path, sources, tokens = acl_root
    attacker = Attacker()
    with attacker_server(attacker) as model_url:
        experts = expert_settings(model_url, sql=request.param == "sql", tool_call=request.param == "tool_call")
        kb = grounded.open(path, create=False, sources=sources, experts=experts, answer={"cache": False})
        with serving(create_app(kb)) as url:
            yield url, tokens, attacker


def _channels(client: httpx.Client) -> Iterator[tuple[str, httpx.Response]]:
    """The question over every channel that can reach SQL."""
    yield "query", client.post("/v1/query", json={"query": QUESTION, "cache": False})
    yield "query-sse", client.post("/v1/query", json={"query": QUESTION}, headers={"accept": "text/event-stream"})
    chat = {"model": "grounded", "messages": [{"role": "user", "content": QUESTION}]}
    yield "chat", client.post("/v1/chat/completions", json=chat)
    yield "chat-stream", client.post("/v1/chat/completions", json={**chat, "stream": True})


def _ask(server: Any, who: str, sql: str) -> dict[str, httpx.Response]:
    url, tokens, attacker = server
    attacker.sql = sql
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {tokens[who]}"}, timeout=60) as client:
        return dict(_channels(client))


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_prompt_injected_model_reads_nothing_the_caller_may_not(server: Any, attack: str) -> None:
    for channel, response in _ask(server, "a", ATTACKS[attack]).items():
        assert response.status_code == 200, (channel, response.text[:300])
        for leak in leaks(ATTACKS[attack]):
            assert leak not in response.text, f"{attack} over {channel} leaked {leak!r}: {response.text[:1500]}"


def test_the_admin_reads_what_the_attacks_target(server: Any) -> None:
    """The positive control: the same pipeline carries a table's rows and finds the hidden document."""
    answers = _ask(server, "admin", "SELECT note FROM hr.probe_salaries ORDER BY id")
    for channel in ("query", "query-sse"):
        assert TABLE_SECRET in answers[channel].text, channel
    url, tokens, _ = server
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {tokens['admin']}"}) as client:
        assert DOC_SECRET in client.post("/v1/search", json={"query": "memo kitchen budget"}).text


def test_the_group_that_may_read_a_table_reads_it(server: Any) -> None:
    url, tokens, attacker = server
    attacker.sql = "SELECT note FROM hr.probe_salaries ORDER BY id"
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {tokens['b']}"}, timeout=60) as client:
        body = client.post("/v1/query", json={"query": "how many probe salaries notes are there?"}).json()
    assert body["route"] == "structured", body["trace"]
    assert TABLE_SECRET in str(body["citations"])


# -- MCP: /mcp on the server, and `grounded mcp` over stdio ------------------------------------------


async def _mcp_attacks(client: Client, attacker: Attacker) -> dict[str, str]:
    """Every attack through the MCP tools: ``ask`` (the attacker is the model) and ``sql`` (the agent)."""
    seen: dict[str, str] = {}
    for name, sql in sorted(ATTACKS.items()):
        attacker.sql = sql
        asked = await client.call_tool("ask", {"question": QUESTION})
        queried = await client.call_tool("sql", {"query": sql})
        for tool, result in (("ask", asked), ("sql", queried)):
            text = " ".join(getattr(c, "text", "") for c in result.content)
            seen[f"{name} via mcp {tool}"] = text + json.dumps(result.structured_content or {})
    return seen


@asynccontextmanager
async def _mcp_http(url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=60) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        yield client


def _assert_no_leaks(seen: dict[str, str]) -> None:
    for where, text in seen.items():
        attack = where.split(" via ")[0]
        for leak in leaks(ATTACKS[attack]):
            assert leak not in text, f"{where} leaked {leak!r}: {text[:1500]}"


def test_mcp_over_http_reads_nothing_the_caller_may_not(server: Any) -> None:
    url, tokens, attacker = server

    async def session() -> dict[str, str]:
        async with _mcp_http(url, tokens["a"]) as client:
            return await _mcp_attacks(client, attacker)

    seen = asyncio.run(session())
    assert len(seen) == 2 * len(ATTACKS)
    _assert_no_leaks(seen)


def test_mcp_over_http_carries_what_the_admin_may_read(server: Any) -> None:
    """The positive control: through the same MCP tools the admin's answer and query hold the row."""
    url, tokens, attacker = server
    attacker.sql = "SELECT note FROM hr.probe_salaries ORDER BY id"

    async def session() -> tuple[str, str]:
        async with _mcp_http(url, tokens["admin"]) as client:
            asked = await client.call_tool("ask", {"question": "how many probe salaries notes are there?"})
            queried = await client.call_tool("sql", {"query": attacker.sql})
            return json.dumps(asked.structured_content), json.dumps(queried.structured_content)

    asked, queried = asyncio.run(session())
    assert TABLE_SECRET in asked
    assert TABLE_SECRET in queried


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # strings and numbers: JSON's forms are TOML's too


@pytest.mark.slow
def test_mcp_over_stdio_reads_nothing_the_caller_may_not(
    acl_root: tuple[Path, dict[str, Any], dict[str, str]], tmp_path: Path
) -> None:
    """`grounded mcp` as an agent starts it: group a's key, the attacker as SQL and tool-call expert."""
    path, sources, tokens = acl_root
    attacker = Attacker()
    with attacker_server(attacker) as model_url:
        settings = {
            "experts": expert_settings(model_url, sql=True, tool_call=True),
            "answer": {"cache": False},
            "sources": sources,
        }
        config = tmp_path / "grounded.toml"
        config.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in settings.items()), encoding="utf-8")
        env = {**os.environ, "GROUNDED_CONFIG": str(config), "GROUNDED_API_KEY": tokens["a"]}
        command = [sys.executable, "-c", "from grounded.cli import main; main()", "mcp", "--kb", str(path)]
        params = StdioServerParameters(command=command[0], args=command[1:], env=env)

        async def session() -> tuple[dict[str, str], str]:
            async with Client(params, read_timeout_seconds=120) as client:
                seen = await _mcp_attacks(client, attacker)
                attacker.sql = "SELECT count(*) AS n FROM shop.products"
                allowed = await client.call_tool("sql", {"query": attacker.sql})
                return seen, json.dumps(allowed.structured_content)

        seen, allowed = asyncio.run(session())
    assert '"rows": [[3]]' in allowed  # the key's own table, through the same process
    _assert_no_leaks(seen)
