"""Run a plan: a small DAG of tool calls, independent calls at the same time, each with a timeout.

A call waits only for the calls it depends on (its ``after`` list and the calls its arguments
refer to), then runs in a worker thread; ``asyncio.wait_for`` bounds it. Arguments may use an
earlier result: ``{"$ref": "c1.rows.0.0"}`` is replaced by that value of call ``c1``'s
``data``, and ``"{{c1.rows.0.0}}"`` inside a string is replaced by its text.

Nothing here raises for a failing tool: a timeout, a refused or failed call, a call whose
dependency failed, a cycle or a plan over the call limit all become failed
:class:`~grounded.tools.ToolResult` entries and :class:`TraceEntry` lines.

Example::

    plan = Plan("structured", (Call("c1", "sql", {"query": "SELECT count(*) AS n FROM geo.state"}),), "counts")
    execution = Executor(load_tools(), ToolContext(kb=kb)).run(plan)
    execution.results["c1"].data["rows"]      # [[51]]
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from grounded.tools.base import AnyTool, ToolContext, ToolResult

__all__ = ["Call", "Execution", "Executor", "Plan", "TraceEntry", "references"]

MAX_CALLS = 12
MAX_ARGUMENT_CHARS = 20_000

_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][\w]*(?:\.[\w-]+)*)\s*\}\}")


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call of a plan; ``after`` lists calls it must wait for besides those it refers to."""

    id: str
    tool: str
    arguments: Mapping[str, Any]
    after: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """Tool calls for one question, the route that chose them and why."""

    route: str
    calls: tuple[Call, ...]
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "reason": self.reason,
            "calls": [
                {"id": c.id, "tool": c.tool, "arguments": dict(c.arguments), "after": list(c.after)} for c in self.calls
            ],
        }


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """What one call did: for the answer's trace."""

    call: str
    tool: str
    arguments: Mapping[str, Any]
    ok: bool
    refused: bool
    error: str | None
    size: int
    started_ms: float
    elapsed_ms: float
    after: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "call": self.call,
            "tool": self.tool,
            "arguments": dict(self.arguments),
            "ok": self.ok,
            "refused": self.refused,
            "error": self.error,
            "size": self.size,
            "started_ms": self.started_ms,
            "elapsed_ms": self.elapsed_ms,
            "after": list(self.after),
        }


@dataclass(slots=True)
class Execution:
    """Results by call id, and the trace in the order calls finished (ties by id)."""

    plan: Plan
    results: dict[str, ToolResult] = field(default_factory=dict)
    trace: list[TraceEntry] = field(default_factory=list)
    elapsed_ms: float = 0.0

    def ordered(self) -> list[tuple[Call, ToolResult]]:
        """Calls and results in plan order: the order evidence is numbered in."""
        return [(c, self.results[c.id]) for c in self.plan.calls if c.id in self.results]


def references(value: Any) -> set[str]:
    """Ids of the calls that ``value`` (an argument tree) refers to."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        if set(value) == {"$ref"} and isinstance(value["$ref"], str):
            found.add(value["$ref"].split(".", 1)[0])
        else:
            for v in value.values():
                found |= references(v)
    elif isinstance(value, list | tuple):
        for v in value:
            found |= references(v)
    elif isinstance(value, str):
        found |= {m.group(1).split(".", 1)[0] for m in _TEMPLATE.finditer(value)}
    return found


def _lookup(path: str, results: Mapping[str, ToolResult]) -> Any:
    head, *rest = path.split(".")
    node: Any = results[head].data
    for part in rest:
        if isinstance(node, Mapping):
            node = node[part]
        elif isinstance(node, list | tuple):
            node = node[int(part)]
        else:
            raise KeyError(f"{path!r}: {part!r} does not exist")
    return node


def _resolve(value: Any, results: Mapping[str, ToolResult]) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"$ref"} and isinstance(value["$ref"], str):
            return _lookup(value["$ref"], results)
        return {k: _resolve(v, results) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_resolve(v, results) for v in value]
    if isinstance(value, str):
        return _TEMPLATE.sub(lambda m: str(_lookup(m.group(1), results)), value)
    return value


def _resolved(arguments: Mapping[str, Any], results: Mapping[str, ToolResult]) -> Mapping[str, Any]:
    out: Mapping[str, Any] = _resolve(arguments, results)
    if len(repr(out)) > MAX_ARGUMENT_CHARS:
        raise ValueError(f"arguments are longer than {MAX_ARGUMENT_CHARS} characters")
    return out


def _check_plan(plan: Plan, tools: Mapping[str, AnyTool], max_calls: int) -> dict[str, str]:
    """Problems that stop calls before anything runs: ``{call id: why}``."""
    problems: dict[str, str] = {}
    ids = [c.id for c in plan.calls]
    for call in plan.calls[max_calls:]:
        problems[call.id] = f"refused: the plan has {len(plan.calls)} calls; the limit is {max_calls}"
    seen: set[str] = set()
    for call in plan.calls:
        if call.id in seen:
            problems[call.id] = f"refused: call id {call.id!r} is used twice"
        seen.add(call.id)
        if call.tool not in tools:
            problems[call.id] = f"refused: unknown tool {call.tool!r}; available: {', '.join(sorted(tools))}"
        missing = (set(call.after) | references(call.arguments)) - set(ids)
        if missing:
            problems[call.id] = f"refused: depends on unknown call(s) {sorted(missing)}"
    # A cycle (a call that waits on itself through others) would wait forever: refuse it.
    deps = {c.id: set(c.after) | references(c.arguments) for c in plan.calls}
    state: dict[str, int] = {}

    def visit(node: str, stack: tuple[str, ...]) -> None:
        if state.get(node) == 2 or node not in deps:
            return
        if state.get(node) == 1:
            for member in stack[stack.index(node) :]:
                problems[member] = f"refused: calls {' -> '.join((*stack[stack.index(node) :], node))} form a loop"
            return
        state[node] = 1
        for dep in sorted(deps[node]):
            visit(dep, (*stack, node))
        state[node] = 2

    for call_id in ids:
        visit(call_id, ())
    # Identical calls are a loop a planner fell into: run the first, refuse the repeats.
    signatures: dict[str, str] = {}
    for call in plan.calls:
        signature = f"{call.tool}:{sorted(call.arguments.items())!r}"
        if signature in signatures and call.id not in problems:
            problems[call.id] = f"refused: repeats call {signatures[signature]} with the same arguments (a tool loop)"
        signatures.setdefault(signature, call.id)
    return problems


class Executor:
    """Runs plans against a set of tools; see the module docstring."""

    def __init__(
        self,
        tools: Mapping[str, AnyTool],
        ctx: ToolContext,
        *,
        call_timeout_s: float | None = None,
        max_calls: int = MAX_CALLS,
    ) -> None:
        self.tools = dict(tools)
        self.ctx = ctx
        self.call_timeout_s = call_timeout_s if call_timeout_s is not None else ctx.timeout_s + 1.0
        self.max_calls = max_calls

    def run(self, plan: Plan) -> Execution:
        """Run ``plan`` to the end (from synchronous code, even inside a running event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(plan))
        box: list[Execution] = []
        worker = threading.Thread(target=lambda: box.append(asyncio.run(self.arun(plan))), name="grounded-plan")
        worker.start()
        worker.join()
        return box[0]

    async def arun(self, plan: Plan) -> Execution:
        execution = Execution(plan)
        started = time.perf_counter()
        problems = _check_plan(plan, self.tools, self.max_calls)
        tasks: dict[str, asyncio.Task[ToolResult]] = {}
        for call in plan.calls:
            if call.id in tasks:
                continue
            tasks[call.id] = asyncio.ensure_future(self._one(call, problems, tasks, execution, started))
        if tasks:
            await asyncio.gather(*tasks.values())
        execution.elapsed_ms = _ms(started)
        return execution

    async def _one(
        self,
        call: Call,
        problems: Mapping[str, str],
        tasks: Mapping[str, asyncio.Task[ToolResult]],
        execution: Execution,
        t0: float,
    ) -> ToolResult:
        deps = tuple(sorted(set(call.after) | references(call.arguments)))
        arguments: Mapping[str, Any] = call.arguments
        begin = _ms(t0)
        if call.id in problems:
            result = ToolResult.failure(call.tool, problems[call.id], refused=True)
        else:
            await asyncio.gather(*(tasks[d] for d in deps))
            failed = [d for d in deps if not execution.results[d].ok]
            begin = _ms(t0)
            if failed:
                result = ToolResult.failure(call.tool, f"skipped: it needs {', '.join(failed)}, which failed")
            else:
                try:
                    arguments = _resolved(call.arguments, execution.results)
                except (KeyError, IndexError, ValueError, TypeError) as exc:
                    result = ToolResult.failure(call.tool, f"cannot use an earlier result: {exc}", refused=True)
                else:
                    result = await self._call(call.tool, arguments)
        execution.results[call.id] = result
        execution.trace.append(
            TraceEntry(
                call=call.id,
                tool=call.tool,
                arguments=arguments,
                ok=result.ok,
                refused=result.refused,
                error=result.error,
                size=result.size,
                started_ms=begin,
                elapsed_ms=round(_ms(t0) - begin, 3),
                after=deps,
            )
        )
        return result

    async def _call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        tool = self.tools[name]
        try:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(_pool(), tool.call, arguments, self.ctx)
            return await asyncio.wait_for(future, self.call_timeout_s)
        except TimeoutError:
            return ToolResult.failure(name, f"timed out after {self.call_timeout_s:g}s", refused=True)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """Worker threads shared by every plan: a call that timed out finishes there on its own
    (the SQL tool interrupts itself) without holding up the answer that gave up on it."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="grounded-tool")
        return _POOL


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
