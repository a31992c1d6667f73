"""Tools from where they live: an OpenAPI document on a loopback server and a real MCP server
(stdio and streamable HTTP), through the catalog, the CLI's calls and ``/v1/query``."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import grounded
from grounded.api.app import create_app
from grounded.config import Settings, ToolSourceConfig
from grounded.errors import ConfigError
from grounded.grounding.executor import Call, Executor, Plan
from grounded.tools import ToolContext
from grounded.tools.catalog import ToolCatalog
from grounded.tools.openapi import OpenApiSource, operations
from tests.fake_tool_expert import OFFERED, fake_tools_backend  # noqa: F401  (fixture)
from tests.grounded.tools.openapi_server import DOCUMENT, TOKEN, serve_openapi

HERE = Path(__file__).parent
MCP_SERVER = [sys.executable, str(HERE / "mcp_currency_server.py")]


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[str, Any]]:
    with serve_openapi() as served:
        yield served


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOWN_TOKEN", TOKEN)


def town(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "openapi",
        "spec": f"{url}/openapi.json",
        "auth": {"scheme": "bearer", "env": "TOWN_TOKEN"},
        "max_response_bytes": 100_000,
        "max_retries": 0,
        **extra,
    }


def test_operations_become_tools_with_their_parameters_and_body() -> None:
    ops = {op.name: op for op in operations(DOCUMENT)}
    weather = ops["getWeather"]
    assert weather.parameters["required"] == ["city"]
    assert weather.parameters["properties"]["units"]["enum"] == ["metric", "imperial"]
    assert weather.locations == {"city": "path", "units": "query"}
    order = ops["createOrder"]  # the $ref'd body, merged into the top level
    assert order.locations == {"item": "body", "quantity": "body"}
    assert order.parameters["required"] == ["item", "quantity"]


def test_an_openapi_tool_calls_the_api_with_auth_and_refuses_bad_arguments_locally(api: tuple[str, Any]) -> None:
    url, recorded = api
    tools = {t.name: t for t in OpenApiSource("town", ToolSourceConfig(**town(url))).tools()}
    assert sorted(tools) == ["town_createOrder", "town_downloadReport", "town_getWeather"]
    before = len(recorded.requests)
    result = tools["town_getWeather"].call({"city": "Oslo", "units": "metric"}, ToolContext())
    assert result.ok, result.error
    assert "temperature = 21" in result.text
    assert result.provenance["status"] == 200
    method, path, headers, _ = recorded.requests[-1]
    assert (method, path, headers["Authorization"]) == ("GET", "/api/weather/Oslo?units=metric", f"Bearer {TOKEN}")
    # A call that breaks the schema never leaves the machine.
    for bad in ({"city": "Oslo", "units": "kelvin"}, {"units": "metric"}, {"city": "Oslo", "extra": 1}):
        refused = tools["town_getWeather"].call(bad, ToolContext())
        assert refused.refused
        assert "do not match its schema" in (refused.error or "")
    assert tools["town_createOrder"].call({"item": "lamp", "quantity": 50}, ToolContext()).refused
    assert len(recorded.requests) == before + 1
    order = tools["town_createOrder"].call({"item": "lamp", "quantity": 2}, ToolContext())
    assert order.ok
    assert order.data == {"order_id": 7, "item": "lamp", "quantity": 2}
    assert recorded.requests[-1][3] == {"item": "lamp", "quantity": 2}
    # A path argument cannot reach another path; a response over the limit is refused.
    tools["town_getWeather"].call({"city": "../report"}, ToolContext())
    assert recorded.requests[-1][1] == "/api/weather/..%2Freport"
    big = tools["town_downloadReport"].call({}, ToolContext())
    assert not big.ok
    assert "larger than 100000 bytes" in (big.error or "")


def test_a_missing_secret_is_named_and_nothing_is_sent(api: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    url, recorded = api
    monkeypatch.delenv("TOWN_TOKEN")
    tool = next(t for t in OpenApiSource("town", ToolSourceConfig(**town(url))).tools() if t.name == "town_getWeather")
    before = len(recorded.requests)
    result = tool.call({"city": "Oslo"}, ToolContext())
    assert result.refused
    assert "TOWN_TOKEN" in (result.error or "")
    assert len(recorded.requests) == before


def test_mcp_tools_over_stdio_and_http_and_parallel_and_sequential_calls() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http_server = subprocess.Popen(
        [*MCP_SERVER, "http", str(port)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120  # the server imports the SDK first: slow on a loaded machine
        while time.monotonic() < deadline and http_server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        settings = Settings(
            tools={
                "sources": {
                    "fx": {"type": "mcp", "command": MCP_SERVER},
                    "fxweb": {"type": "mcp", "url": f"http://127.0.0.1:{port}/mcp"},
                }
            }
        )
        catalog = ToolCatalog(settings)
        try:
            tools = catalog.tools()
            assert catalog.errors == {}
            assert {"fx_convert_currency", "fxweb_convert_currency"} <= set(tools)
            assert tools["fx_convert_currency"].spec.parameters["required"] == ["amount", "currency"]
            plan = Plan(
                "unstructured",
                (
                    Call("m1", "fx_convert_currency", {"amount": 100, "currency": "NOK"}),
                    Call("m2", "fxweb_convert_currency", {"amount": 10, "currency": "USD"}),
                    Call("m3", "fx_convert_currency", {"amount": 2, "currency": "GBP"}, after=("m1",)),
                    Call("m4", "fx_convert_currency", {"amount": "ten", "currency": "USD"}),
                    Call("m5", "fx_convert_currency", {"amount": 1, "currency": "XYZ"}),
                ),
            )
            execution = Executor(tools, ToolContext()).run(plan)
            assert execution.results["m1"].text == "100 EUR is 1152.00 NOK at the exchange rate 11.52."
            assert execution.results["m2"].text == "10 EUR is 10.80 USD at the exchange rate 1.08."
            assert execution.results["m3"].ok
            trace = {t.call: t for t in execution.trace}
            assert trace["m3"].started_ms >= trace["m1"].started_ms + trace["m1"].elapsed_ms - 1
            assert execution.results["m4"].refused  # schema: amount is a number
            assert not execution.results["m5"].ok
            assert "unknown currency" in (execution.results["m5"].error or "")
        finally:
            catalog.close()
    finally:
        http_server.terminate()
        http_server.wait(10)


def test_tool_access_follows_the_callers_groups(api: tuple[str, Any]) -> None:
    url, _ = api
    settings = Settings(tools={"sources": {"town": town(url, acl=["staff"])}, "acl": {"calculate": ["finance"]}})
    catalog = ToolCatalog(settings)
    assert "town_getWeather" in catalog.allowed(("staff",))
    assert "town_getWeather" not in catalog.allowed(("guest",))
    assert "calculate" not in catalog.allowed(("staff",))
    assert "calculate" in catalog.allowed(("finance",))
    assert "town_getWeather" in catalog.allowed(None)  # the operator
    catalog.close()


@pytest.fixture(scope="module")
def tool_kb(tmp_path_factory: pytest.TempPathFactory, api: tuple[str, Any], fake_tools_backend: str) -> Iterator[Any]:  # noqa: F811
    url, _ = api
    root = tmp_path_factory.mktemp("toolkb")
    (root / "docs").mkdir()
    (root / "docs" / "town.md").write_text("# Town hall\n\nThe town hall opens at nine in the morning.\n")
    tools = {
        "sources": {"town": town(url, acl=["staff"]), "fx": {"type": "mcp", "command": MCP_SERVER}},
        "min_relevance": 0.4,  # the weather question scores 0.58, the town-hall one 0.31
    }
    kb = grounded.open(
        root / "kb",
        tools=tools,
        experts={
            "tool_call": {"backend": fake_tools_backend, "model": "x"},
            "answer": {"backend": fake_tools_backend, "model": "x"},  # copies evidence [1]: instant
        },
    )
    kb.ingest(root / "docs", source="docs")
    yield kb
    kb.engine.grounder.catalog(kb.store.view()).close()


def test_questions_reach_openapi_and_mcp_tools_through_v1_query(tool_kb: Any) -> None:
    client = TestClient(create_app(tool_kb))
    response = client.post("/v1/query", json={"query": "What is the weather like in Oslo right now?"})
    assert response.status_code == 200, response.text
    weather = response.json()
    retrieval = weather["trace"]["tool_retrieval"]
    assert retrieval["candidates"][0]["name"] == "town_getWeather"
    assert retrieval["relevant"]
    assert {"name", "score", "similarity", "bm25_rank", "dense_rank"} <= set(retrieval["candidates"][0])
    assert [c["tool"] for c in weather["trace"]["calls"]] == ["town_getWeather"]
    assert weather["trace"]["calls"][0]["arguments"] == {"city": "Oslo"}
    cited = [c for c in weather["citations"] if c["doc_id"].startswith("tool:town_getWeather")]
    assert cited
    assert "conditions = sunny" in cited[0]["text"]
    assert cited[0]["source"] == "town"
    assert cited[0]["uri"].endswith("/api/weather/Oslo")

    money = client.post("/v1/query", json={"query": "How much is 250 euros in NOK at today's exchange rate?"}).json()
    assert money["trace"]["tool_retrieval"]["candidates"][0]["name"] == "fx_convert_currency"
    assert money["trace"]["calls"][0]["arguments"] == {"amount": 250.0, "currency": "NOK"}
    assert any("2880.00 NOK" in c["text"] for c in money["citations"])


def test_an_irrelevant_question_calls_no_tool(tool_kb: Any) -> None:
    answer = tool_kb.ask("When does the town hall open?", use_cache=False)
    retrieval = answer.trace["tool_retrieval"]
    assert not retrieval["relevant"]
    assert retrieval["relevance"] < retrieval["threshold"]
    assert retrieval["decided_by"] == "threshold"  # tests run with tools.gate = 'threshold' (tests/conftest.py)
    assert answer.trace["calls"] == []


def test_a_trained_tool_gate_decides_and_is_traced(
    tool_kb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grounded.tools.gate import ToolGate

    # A one-feature gate equivalent to the fixture's threshold (p >= 0.5 exactly when cosine >= 0.4): this test
    # is about the plumbing from the model cache to the trace; tests/grounded/tools/test_gate.py fits real ones.
    gate = ToolGate(("similarity",), (0.0,), (1.0,), (20.0,), -8.0, 0.5, "handmade0000", {})
    monkeypatch.setenv("GROUNDED_MODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(tool_kb.store.settings.tools, "gate", "model")
    with pytest.raises(ConfigError, match="requires a gate"):
        tool_kb.ask("When does the town hall open?", use_cache=False)
    gate.save()
    weather = tool_kb.ask("What is the weather like in Oslo right now?", use_cache=False).trace
    assert weather["tool_retrieval"]["decided_by"] == "gate"
    assert weather["tool_retrieval"]["gate"]["model"] == "toolgate handmade0000"
    assert weather["tool_retrieval"]["gate"]["probability"] > 0.5
    assert [c["tool"] for c in weather["calls"]] == ["town_getWeather"]
    town_hall = tool_kb.ask("When does the town hall open?", use_cache=False).trace
    assert town_hall["tool_retrieval"]["gate"]["probability"] < 0.5
    assert not town_hall["tool_retrieval"]["relevant"]
    assert town_hall["calls"] == []


def test_a_caller_outside_the_group_is_never_offered_the_tool(tool_kb: Any) -> None:
    OFFERED.clear()
    guest = tool_kb.ask("What is the weather like in Oslo right now?", acl_groups=("guest",), use_cache=False)
    names = [c["name"] for c in guest.trace["tool_retrieval"]["candidates"]]
    assert "town_getWeather" not in names
    assert all("town_getWeather" not in offered for offered in OFFERED)
    staff = tool_kb.ask("What is the weather like in Oslo right now?", acl_groups=("staff",), use_cache=False)
    assert [c["tool"] for c in staff.trace["calls"]] == ["town_getWeather"]


def test_an_answer_from_a_live_call_is_never_replayed_from_the_cache(tool_kb: Any, api: tuple[str, Any]) -> None:
    _, recorded = api
    before = len(recorded.requests)
    first = tool_kb.ask("What is the weather like in Bergen right now?")
    second = tool_kb.ask("What is the weather like in Bergen right now?")
    assert not first.cached
    assert not second.cached
    assert len(recorded.requests) == before + 2


def test_grounded_tools_list_show_and_call(
    api: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from grounded.cli import app

    url, recorded = api
    config = tmp_path / "grounded.toml"
    config.write_text(
        f'[tools.sources.town]\ntype = "openapi"\nspec = "{url}/openapi.json"\nacl = ["staff"]\n'
        'auth = { scheme = "bearer", env = "TOWN_TOKEN" }\n'
    )
    monkeypatch.setenv("GROUNDED_CONFIG", str(config))
    runner = CliRunner()
    listed = json.loads(runner.invoke(app, ["tools", "list", "--json"]).stdout)
    town = {t["name"]: t for t in listed["tools"] if t["source"] == "town"}
    assert sorted(town) == ["town_createOrder", "town_downloadReport", "town_getWeather"]
    assert town["town_getWeather"]["groups"] == ["staff"]
    guest = json.loads(runner.invoke(app, ["tools", "list", "--json", "--groups", "guest"]).stdout)
    assert not [t for t in guest["tools"] if t["source"] == "town"]
    shown = json.loads(runner.invoke(app, ["tools", "show", "town_getWeather"]).stdout)
    assert shown["function"]["parameters"]["required"] == ["city"]
    before = len(recorded.requests)
    bad = runner.invoke(app, ["tools", "call", "town_getWeather", '{"city": "Oslo", "units": "kelvin"}'])
    assert bad.exit_code == 1
    assert "'kelvin' is not one of" in bad.output
    assert len(recorded.requests) == before
    good = runner.invoke(app, ["tools", "call", "town_getWeather", '{"city": "Oslo"}'])
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["provenance"]["status"] == 200
