"""The api tool against a real HTTP server on loopback: live records with provenance, in parallel."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from grounded.grounding.executor import Call, Executor, Plan
from grounded.tools import ToolContext, get_tool, load_tools
from grounded.tools.api import ApiTool
from tests.connectors.apiserver import APIServer, Reply

pytestmark = pytest.mark.integration


@pytest.fixture
def live_kb(tmp_path: Path) -> Any:
    import grounded

    server = APIServer()

    def slow(rate: str) -> Any:
        def reply(query: dict[str, str], headers: dict[str, str]) -> Reply:
            time.sleep(0.2)
            return Reply(body={"data": [{"id": query.get("currency", "EUR"), "title": "rate", "text": rate}]})

        return reply

    server.route("/rates", slow("1 EUR = 11.52 NOK"))
    server.route("/other", slow("1 EUR = 0.86 GBP"))
    source = {
        "type": "rest",
        "params": {
            "base_url": server.url + "/",
            "endpoints": [
                {"name": "rates", "path": "rates", "records": "data"},
                {"name": "other", "path": "other", "records": "data"},
            ],
        },
    }
    private = {**source, "acl": ["treasury"]}
    kb = grounded.open(tmp_path / "kb", sources={"fx": source, "fx_private": private})
    # Tools run on a request's view of a published version, as every question does.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "fx.txt").write_text("Exchange rates change daily.\n")
    kb.ingest(tmp_path / "notes")
    yield kb
    api = get_tool("api")
    assert isinstance(api, ApiTool)
    api.close()
    server.httpd.shutdown()
    server.httpd.server_close()


def test_api_call_returns_records_with_provenance(live_kb: Any) -> None:
    result = get_tool("api").call(
        {"source": "fx", "endpoint": "rates", "params": {"currency": "NOK"}}, ToolContext(view=live_kb.store.view())
    )
    assert result.ok, result.error
    assert result.text == "1 EUR = 11.52 NOK"
    assert result.provenance["uri"].endswith("/rates?currency=NOK")
    assert result.provenance["row_keys"] == ["NOK"]
    assert result.provenance["fetched_at"].endswith("+00:00")


def test_only_configured_endpoints_can_be_called(live_kb: Any) -> None:
    ctx = ToolContext(view=live_kb.store.view())
    assert get_tool("api").call({"source": "evil", "endpoint": "x"}, ctx).refused
    missing = get_tool("api").call({"source": "fx", "endpoint": "admin"}, ctx)
    assert not missing.ok
    assert "no endpoint 'admin'" in (missing.error or "")
    assert get_tool("api").call({"source": "fx", "endpoint": "rates", "url": "http://x"}, ctx).refused


def test_two_independent_api_calls_run_in_parallel(live_kb: Any) -> None:
    executor = Executor(load_tools(), ToolContext(view=live_kb.store.view()))
    calls = (
        Call("a", "api", {"source": "fx", "endpoint": "rates"}),
        Call("b", "api", {"source": "fx", "endpoint": "other"}),
    )
    executor.run(Plan("warm", calls))
    started = time.perf_counter()
    run = executor.run(Plan("multi_step", calls))
    elapsed = time.perf_counter() - started
    assert all(r.ok for r in run.results.values())
    assert elapsed < 0.38, f"two 200 ms calls took {elapsed:.3f}s together"


def test_a_rest_source_the_caller_may_not_read_is_described_as_not_configured(live_kb: Any) -> None:
    """A key of another group cannot call (or learn the name of) a REST source with an ACL."""
    outsider = ToolContext(view=live_kb.store.view(acl_groups=["sales"]))
    refused = get_tool("api").call({"source": "fx_private", "endpoint": "rates"}, outsider)
    assert refused.refused
    assert refused.error == "'fx_private' is not a configured REST source; configured: ['fx']"
    assert "fx_private" not in get_tool("api").call({"source": "nope", "endpoint": "rates"}, outsider).error
    treasury = ToolContext(view=live_kb.store.view(acl_groups=["treasury"]))
    assert get_tool("api").call({"source": "fx_private", "endpoint": "rates"}, treasury).ok
    admin = ToolContext(view=live_kb.store.view())
    assert get_tool("api").call({"source": "fx_private", "endpoint": "rates"}, admin).ok
