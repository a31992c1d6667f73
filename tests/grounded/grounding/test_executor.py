"""The plan executor: concurrency, dependencies, timeouts, and failures as results."""

from __future__ import annotations

import time
from typing import Any

import pytest

from grounded.grounding.executor import Call, Executor, Plan
from grounded.tools import FunctionTool, Tool, ToolContext, ToolResult, get_tool, load_tools, tool, unregister


def nap(seconds: float, label: str = "") -> str:
    """Sleep, then say so."""
    time.sleep(seconds)
    return f"slept {seconds} {label}".strip()


def boom(message: str) -> str:
    """Always fails."""
    raise RuntimeError(message)


def rows(n: int) -> ToolResult:
    """Rows 0..n-1 as data."""
    return ToolResult("rows", True, f"{n} rows", {"rows": [[i, f"r{i}"] for i in range(n)]}, size=n)


TOOLS: dict[str, Tool] = {
    "nap": FunctionTool(nap),
    "boom": FunctionTool(boom),
    "rows": FunctionTool(rows),
    "calculate": get_tool("calculate"),
}


def execute(*calls: Call, timeout: float = 5.0, **kwargs: Any) -> Any:
    return Executor(TOOLS, ToolContext(timeout_s=timeout), **kwargs).run(Plan("test", calls, "a test"))


def test_independent_calls_run_concurrently() -> None:
    started = time.perf_counter()
    run = execute(Call("a", "nap", {"seconds": 0.3, "label": "a"}), Call("b", "nap", {"seconds": 0.3, "label": "b"}))
    elapsed = time.perf_counter() - started
    assert [run.results[c].text for c in "ab"] == ["slept 0.3 a", "slept 0.3 b"]
    assert elapsed < 0.55, elapsed
    assert {t.call for t in run.trace} == {"a", "b"}


def test_a_call_uses_an_earlier_result() -> None:
    run = execute(
        Call("c2", "calculate", {"expression": "{{c1.rows.2.0}} * 10 + {{c1.rows.1.0}}"}),
        Call("c1", "rows", {"n": 3}),
        Call("c3", "nap", {"seconds": 0, "label": {"$ref": "c1.rows.0.1"}}),
    )
    assert run.results["c2"].data == {"value": 21}
    assert run.results["c3"].text == "slept 0.0 r0"
    entry = next(t for t in run.trace if t.call == "c2")
    assert entry.after == ("c1",)
    assert entry.arguments == {"expression": "2 * 10 + 1"}
    assert [c.id for c, _ in run.ordered()] == ["c2", "c1", "c3"]


def test_failures_become_results_and_skip_dependants() -> None:
    run = execute(Call("a", "boom", {"message": "backend down"}), Call("b", "calculate", {"expression": "{{a.x}}"}))
    assert not run.results["a"].ok
    assert "backend down" in (run.results["a"].error or "")
    assert "skipped" in (run.results["b"].error or "")
    bad_ref = execute(Call("a", "rows", {"n": 1}), Call("b", "calculate", {"expression": "{{a.rows.7.0}}"}))
    assert bad_ref.results["b"].refused


def test_per_call_timeout() -> None:
    started = time.perf_counter()
    run = Executor(TOOLS, ToolContext(), call_timeout_s=0.2).run(Plan("t", (Call("a", "nap", {"seconds": 1.0}),)))
    assert time.perf_counter() - started < 0.9
    assert run.results["a"].refused
    assert "timed out after 0.2s" in (run.results["a"].error or "")


@pytest.mark.parametrize(
    ("calls", "why"),
    [
        (
            (
                Call("a", "calculate", {"expression": "{{b.value}}"}),
                Call("b", "calculate", {"expression": "{{a.value}}"}),
            ),
            "loop",
        ),
        ((Call("a", "nap", {"seconds": 0}, after=("a",)),), "loop"),
        ((Call("a", "nope", {}),), "unknown tool"),
        ((Call("a", "calculate", {"expression": "{{zz.value}}"}),), "unknown call"),
        ((Call("a", "calculate", {"expression": "1"}), Call("b", "calculate", {"expression": "1"})), "tool loop"),
    ],
)
def test_bad_plans_are_refused_not_run(calls: tuple[Call, ...], why: str) -> None:
    run = execute(*calls)
    refused = [t for t in run.trace if t.refused]
    assert refused
    assert all(why in (t.error or "") for t in refused)


def test_plans_are_bounded() -> None:
    calls = [Call(f"c{i}", "calculate", {"expression": f"{i} + 1"}) for i in range(20)]
    run = execute(*calls, max_calls=5)
    assert sum(r.ok for r in run.results.values()) == 5
    assert "limit is 5" in (run.results["c19"].error or "")


def test_bad_arguments_are_refused_by_the_schema() -> None:
    run = execute(Call("a", "calculate", {"expression": "1+1", "mode": "fast"}), Call("b", "nap", {"seconds": "x"}))
    assert run.results["a"].refused
    assert "mode" in (run.results["a"].error or "")
    assert run.results["b"].refused


def test_decorated_function_is_a_registered_tool_with_a_schema() -> None:
    @tool(name="shout")
    def shout(text: str, times: int = 1) -> str:
        """Upper-case text."""
        return text.upper() * times

    try:
        spec = load_tools()["shout"].spec
        assert spec.description == "Upper-case text."
        assert spec.parameters["required"] == ["text"]
        assert spec.parameters["properties"]["times"]["type"] == "integer"
        assert spec.openai()["function"]["name"] == "shout"
        assert get_tool("shout").call({"text": "hi", "times": 2}, ToolContext()).text == "HIHI"
    finally:
        unregister("shout")
    assert "shout" not in load_tools()
    assert {"api", "calculate", "lookup", "search", "sql"} <= set(load_tools())


def test_runs_inside_a_running_event_loop() -> None:
    import asyncio

    async def main() -> Any:
        return Executor(TOOLS, ToolContext()).run(Plan("t", (Call("a", "calculate", {"expression": "2*3"}),)))

    assert asyncio.run(main()).results["a"].data == {"value": 6}
