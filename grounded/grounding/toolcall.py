"""The tool-call expert: a question and the tools' schemas in, a plan of calls out.

The expert (``[experts.tool_call]``, any :class:`~grounded.experts.base.StructuredGenerator`)
sees the question, the offered tools' JSON schemas (the same ones each tool declares) and, when
``sql`` is offered, the names and column types of the linked tables — never retrieved text, so
an instruction hidden in a document cannot add a call. It answers under JSON-schema constrained
decoding (local backends) or the server's native ``tools`` API (OpenAI-compatible backends), so
its calls parse and match their schemas; each call is then validated once more by its tool (the
pydantic model that also runs it). A failed generation or a refused call is reported, and the
planner falls back to its rules (see :class:`grounded.grounding.planner.Planner`).

>>> caller = ToolCaller(get_expert("tool_call", settings))                      # doctest: +SKIP
>>> caller.propose("How many rivers are in Texas?", [load_tools()["sql"]], tables=["geo.river(...)"]).calls
(Call(id='m1', tool='sql', arguments={'query': "SELECT count(*) FROM geo.river WHERE ..."}),)
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grounded.errors import ExpertError
from grounded.experts.base import Message, StructuredGenerator
from grounded.grounding.executor import Call
from grounded.sql.database import TableInfo
from grounded.tools import AnyTool

__all__ = ["EXAMPLE", "SYSTEM", "ProposedPlan", "ToolCaller", "describe_table"]

SYSTEM = (
    "You choose the tool calls that fetch the facts needed to answer the user's question. "
    "Do not answer the question yourself. Use only the tools listed, with short arguments taken from "
    "the question: one call per fact, never the same call twice."
)
EXAMPLE = (
    "What is the population of Ohio and of Texas?",
    '{"calls": [{"tool": "search", "arguments": {"query": "population of Ohio"}}, '
    '{"tool": "search", "arguments": {"query": "population of Texas"}}]}',
)
"""One worked example, shown as a previous turn: small models copy a format they have seen."""


def describe_table(table: TableInfo) -> str:
    """``source.table(column type, ...)``: what the expert is told of a mirrored table."""
    return f"{table.qualified}({', '.join(f'{c} {t}' for c, t in table.columns)})"


@dataclass(frozen=True, slots=True)
class ProposedPlan:
    """The expert's calls (validated), the calls its tools refused, and any error, for the trace."""

    calls: tuple[Call, ...] = ()
    refused: tuple[str, ...] = ()
    error: str | None = None
    elapsed_ms: float = 0.0
    tokens: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": [{"id": c.id, "tool": c.tool, "arguments": dict(c.arguments)} for c in self.calls],
            "refused": list(self.refused),
            "error": self.error,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "tokens": dict(self.tokens),
        }


class ToolCaller:
    """Asks a structured-output expert for calls of the offered tools, at most ``max_calls``."""

    def __init__(
        self,
        expert: StructuredGenerator,
        *,
        max_calls: int = 2,
        max_tokens: int = 256,
        timeout_s: float | None = None,
    ) -> None:
        if not 1 <= max_calls <= 8:
            raise ValueError(f"max_calls must be between 1 and 8; got {max_calls}")
        self.expert = expert
        self.max_calls = max_calls
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s

    def messages(self, question: str, *, tables: Sequence[str] = ()) -> list[Message]:
        """The prompt: the task, the tables ``sql`` may read, and the question (nothing retrieved)."""
        system = SYSTEM
        if tables:
            system += "\nTables the sql tool can read (DuckDB SQL, one SELECT):\n" + "\n".join(tables)
        return [
            Message("system", system),
            Message("user", EXAMPLE[0]),
            Message("assistant", EXAMPLE[1]),
            Message("user", question),
        ]

    def propose(
        self, question: str, tools: Sequence[AnyTool], *, tables: Sequence[str] = (), max_calls: int | None = None
    ) -> ProposedPlan:
        """The expert's calls for ``question``; never raises for what the expert does wrong."""
        started = time.perf_counter()
        by_name = {t.name: t for t in tools}
        try:
            out = self.expert.generate_tool_calls(
                self.messages(question, tables=tables),
                [t.spec for t in tools],
                max_calls=max_calls or self.max_calls,
                max_tokens=self.max_tokens,
                timeout_s=self.timeout_s,
            )
        except ExpertError as exc:  # ExpertTimeout included: the planner falls back to its rules
            return ProposedPlan(error=str(exc), elapsed_ms=(time.perf_counter() - started) * 1000)
        calls: list[Call] = []
        refused: list[str] = []
        seen: set[str] = set()
        for request in out.calls:
            tool = by_name.get(request.name)
            if tool is None:
                refused.append(f"{request.name}: not an offered tool")
                continue
            try:
                tool.validate(request.arguments)
            except ValueError as exc:
                refused.append(str(exc))
                continue
            key = json.dumps([request.name, request.arguments], sort_keys=True, default=str)
            if key not in seen:  # the same call twice fetches nothing new
                seen.add(key)
                calls.append(Call(f"m{len(calls) + 1}", request.name, dict(request.arguments)))
        generation = out.generation
        return ProposedPlan(
            calls=tuple(calls),
            refused=tuple(refused),
            elapsed_ms=(time.perf_counter() - started) * 1000,
            tokens={"prompt": generation.prompt_tokens, "completion": generation.completion_tokens},
        )
