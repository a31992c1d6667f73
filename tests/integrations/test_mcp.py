"""The MCP server through the official SDK's own client, over streamable HTTP and over stdio."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from grounded.api.mcp import build_server
from grounded.kb import KnowledgeBase
from grounded.ops.keys import KEYS_FILE, KeyStore
from tests.integrations.conftest import PUBLIC_QUESTION, SECRET_QUESTION, SECRET_TEXT, assert_no_secret

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
GROUNDED = Path(sys.executable).with_name("grounded")


@asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[Client]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's structured result; a tool error raises AssertionError with its message."""
    result = await client.call_tool(tool, arguments)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert not result.is_error, text
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    """The message of a tool call that must fail."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} should have been refused: {result.structured_content}"
    return " ".join(getattr(c, "text", "") for c in result.content)


async def read(client: Client, uri: str) -> str:
    contents = (await client.read_resource(uri)).contents
    return "".join(getattr(c, "text", "") for c in contents)


def run(session: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(session())


def test_http_tools_answer_with_citations(url: str, tokens: dict[str, str]) -> None:
    async def session() -> tuple[
        list[str], list[str], dict[str, Any], dict[str, Any], dict[str, Any], str, dict[str, Any]
    ]:
        async with http_session(url, tokens["staff"]) as client:
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
            found = await call(client, "search", query=SECRET_QUESTION, k=5)
            answer = await call(client, "ask", question=SECRET_QUESTION, k=3)
            rows = await call(client, "sql", query="SELECT name, salary FROM payroll.salaries ORDER BY id")
            cited = next(c for c in answer["citations"] if c["source"] == "secret")
            span = await read(client, f"grounded://doc/{cited['doc_id']}?start={cited['start']}&end={cited['end']}")
        async with http_session(url, tokens["admin"]) as client:
            sources = await call(client, "sources")
        return tools, templates, found, answer, rows, span, sources

    tools, templates, found, answer, rows, span, sources = run(session)
    assert tools == ["ask", "search", "sources", "sql"]
    assert templates == ["grounded://doc/{doc_id}{?start,end}"]
    assert "secret" in {h["source"] for h in found["hits"]}
    assert not answer["abstained"]
    assert "payroll" in answer["answer"]
    assert rows["rows"] == [["Ada", 91000], ["Grace", 87000]]
    assert rows["tables"] == ["payroll.salaries"]
    assert span
    assert span in SECRET_TEXT
    cited = next(c for c in answer["citations"] if c["source"] == "secret")
    assert span == cited["text"]  # the resource span is exactly the cited passage
    assert {s["name"] for s in sources["sources"]} == {"public", "secret", "payroll"}


def test_http_caller_key_and_acl_hold(url: str, tokens: dict[str, str], acl_kb: KnowledgeBase) -> None:
    """Over HTTP the caller's own key decides, exactly as on REST."""
    secret_doc = acl_kb.search(SECRET_QUESTION, k=1, filters={"source": "secret"})[0].doc_id

    async def session() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[str], list[str]]:
        async with http_session(url, tokens["eng"]) as client:
            found = await call(client, "search", query=SECRET_QUESTION, k=20)
            answer = await call(client, "ask", question=SECRET_QUESTION, k=3)
            public = await call(client, "search", query=PUBLIC_QUESTION, k=3)
            errors = [
                await refused(client, "sql", query="SELECT name, salary FROM payroll.salaries"),
                await refused(client, "sql", query="SELECT * FROM nosuch.table_x"),
                await refused(client, "sources"),
            ]
            missing = []
            for doc_id in (secret_doc, "0" * len(secret_doc)):
                with pytest.raises(MCPError) as exc:
                    await read(client, f"grounded://doc/{doc_id}")
                missing.append(str(exc.value).replace(doc_id, "<id>"))
        return found, answer, public, errors, missing

    found, answer, public, errors, missing = run(session)
    assert {h["source"] for h in found["hits"]} == {"public"}
    assert {c["source"] for c in answer["citations"]} <= {"public"}
    assert public["hits"]  # the key still reads what it may
    assert "not a mirrored table; available: none" in errors[0]
    assert errors[0].replace("payroll.salaries", "T") == errors[1].replace("nosuch.table_x", "T")
    assert "Forbidden (403)" in errors[2]
    assert missing[0] == missing[1]  # a hidden document reads exactly like one that does not exist
    for text in (str(found), str(answer), *errors, *missing):
        assert_no_secret(text)

    for token in (None, "gk_nope_nope"):  # no key, a bad key: the REST API's own 401 problem
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")


def test_a_revoked_key_stops_a_running_stdio_server(acl_kb: KnowledgeBase) -> None:
    """The stdio server re-checks its key on every call (here in process, through the SDK's own transport)."""
    keys = KeyStore(acl_kb.path / KEYS_FILE)
    token, record = keys.create("laptop", groups=["eng"])
    server = build_server(acl_kb, principal=lambda: keys.authenticate(token))

    async def session() -> tuple[dict[str, Any], str, str]:
        async with Client(server) as client:
            before = await call(client, "search", query=PUBLIC_QUESTION, k=2)
            doc = before["hits"][0]
            with pytest.raises(MCPError, match="outside it"):
                await read(client, f"grounded://doc/{doc['doc_id']}?start=0&end=99999999")
            keys.revoke(record.id)
            after = await refused(client, "search", query=PUBLIC_QUESTION, k=2)
            with pytest.raises(MCPError) as exc:
                await read(client, f"grounded://doc/{doc['doc_id']}")
            return before, after, str(exc.value)

    before, after, resource = run(session)
    assert before["hits"]
    assert "Unauthorized (401)" in after
    assert "revoked" in after
    assert "revoked" in resource


def _stdio_env(acl_kb: KnowledgeBase, token: str | None) -> dict[str, str]:
    plugin_site = next(p for p in sys.path if "plugin-site" in p)  # tests.fake_expert's registration
    env = {
        **os.environ,
        "GROUNDED_CONFIG": str(acl_kb.path.parent / "grounded.toml"),
        "PYTHONPATH": os.pathsep.join([plugin_site, str(REPO)]),
    }
    env.pop("GROUNDED_API_KEY", None)
    if token:
        env["GROUNDED_API_KEY"] = token
    return env


@pytest.mark.slow
def test_stdio_answers_as_the_operators_key(acl_kb: KnowledgeBase, tokens: dict[str, str]) -> None:
    """`grounded mcp` run by an MCP client as a subprocess, with the eng key picked by its operator."""
    params = StdioServerParameters(
        command=str(GROUNDED), args=["mcp", "--kb", str(acl_kb.path)], env=_stdio_env(acl_kb, tokens["eng"])
    )

    async def session() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[str]]:
        async with Client(params, read_timeout_seconds=120) as client:
            found = await call(client, "search", query=SECRET_QUESTION, k=20)
            public = await call(client, "search", query=PUBLIC_QUESTION, k=3)
            answer = await call(client, "ask", question=PUBLIC_QUESTION, k=3)
            errors = [
                await refused(client, "sql", query="SELECT * FROM payroll.salaries"),
                await refused(client, "sources"),
            ]
            doc = public["hits"][0]
            text = await read(client, f"grounded://doc/{doc['doc_id']}?start={doc['start']}&end={doc['end']}")
            assert text == doc["text"]
        return found, answer, public, errors

    found, answer, public, errors = run(session)
    assert {h["source"] for h in found["hits"]} == {"public"}
    assert public["hits"][0]["source"] == "public"
    assert not answer["abstained"]
    assert "not a mirrored table" in errors[0]
    assert "admin key" in errors[1]
    for text in (str(found), str(answer), *errors):
        assert_no_secret(text)


def test_stdio_refuses_to_start_without_a_key_once_keys_exist(acl_kb: KnowledgeBase, tokens: dict[str, str]) -> None:
    for token in (None, "gk_nope_nope"):
        done = subprocess.run(
            [str(GROUNDED), "mcp", "--kb", str(acl_kb.path)],
            env=_stdio_env(acl_kb, token),
            input="",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "GROUNDED_API_KEY" in done.stderr or "unknown or revoked" in done.stderr
        assert done.stdout == ""  # stdout belongs to the protocol
