"""What a tool is: a spec a model sees (name, description, JSON-schema parameters) and a call.

Each tool is declared once. Its parameters are a pydantic model: the same model gives the JSON
schema shown to a model (``ToolSpec.parameters``, the OpenAI ``tools`` format) and validates the
arguments a model or a plan passes, so a call that does not match its schema never runs.

A tool never raises for a bad call or a failing backend: it returns a :class:`ToolResult` with
``ok=False`` and an ``error`` (``refused=True`` when a guard said no), which the planner records
in the trace and the writer sees as evidence of failure.

Example (a user tool, registered with :func:`grounded.tools.tool`)::

    @tool
    def exchange_rate(currency: str) -> str:
        "Today's EUR exchange rate for a currency code."
        return f"1 EUR = {rates[currency]} {currency}"
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from grounded.store import View

__all__ = ["AnyTool", "ArgsT", "Params", "Tool", "ToolContext", "ToolResult", "ToolSpec", "clean_schema", "utc_now"]


class Params(BaseModel):
    """Base of every tool's parameters: unknown arguments are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema without ``title`` noise, as a model should see it."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    out.setdefault("additionalProperties", False)
    return out


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What a model sees of a tool."""

    name: str
    description: str
    parameters: dict[str, Any]

    def openai(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one call: content for the writer and provenance for the citation.

    ``text`` is what becomes evidence (short sentences, numbers written as the tool returned
    them); ``data`` is the structured result (rows, a value) later calls may use;
    ``provenance`` says where it came from (source, table, query, row keys, fetched_at).
    """

    tool: str
    ok: bool
    text: str = ""
    data: Any = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    refused: bool = False
    size: int = 0
    """Rows, hits or characters returned: what the trace reports as the result size."""

    @classmethod
    def failure(cls, tool: str, error: str, *, refused: bool = False) -> ToolResult:
        return cls(tool=tool, ok=False, error=error, refused=refused, text=f"The {tool} tool failed: {error}")


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a call may use: the request's view of the knowledge base, and limits.

    ``view`` pins the version the question is answered from and carries the caller's filters
    and ACL groups (see :class:`grounded.store.View`); ``None`` for tools that need no knowledge
    base (``calculate``).
    """

    view: View | None = None
    timeout_s: float = 10.0
    row_limit: int = 200


def utc_now() -> str:
    """Now, as an ISO-8601 UTC timestamp (seconds): a live result's ``fetched_at``."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


ArgsT = TypeVar("ArgsT", bound=Params)


class Tool(Generic[ArgsT]):
    """A tool: subclasses set ``name``, ``description``, ``Arguments`` and implement :meth:`run`.

    ``Tool[MyArguments]`` types :meth:`run`'s ``args`` as the validated ``MyArguments``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Arguments: type[ArgsT]
    source: str = ""
    """Where the tool comes from: ``""`` for a built-in, a plugin or a ``@tool``; else a tool source."""
    groups: tuple[str, ...] = ()
    """Groups allowed to use the tool (empty: everyone); ``[tools.acl]`` and a source's ``acl`` set it."""

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, clean_schema(self.Arguments.model_json_schema()))

    def validate(self, arguments: Mapping[str, Any]) -> ArgsT:
        """The arguments checked against the schema; raises ``ValueError`` naming each problem."""
        try:
            return self.Arguments.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"arguments of {self.name!r} do not match its schema ({problems})") from exc

    def run(self, args: ArgsT, ctx: ToolContext) -> ToolResult:
        """Run with validated ``args``; may raise (:meth:`call` turns it into a failed result)."""
        raise NotImplementedError

    def call(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Validate and run; every failure becomes a failed :class:`ToolResult`, never an exception."""
        try:
            args = self.validate(arguments)
        except ValueError as exc:
            return ToolResult.failure(self.name, str(exc), refused=True)
        started = time.perf_counter()
        try:
            return self.run(args, ctx)
        except Exception as exc:  # a tool's failure is evidence, not a crash
            elapsed = round(time.perf_counter() - started, 3)
            return ToolResult.failure(self.name, f"{type(exc).__name__}: {exc} (after {elapsed}s)")


AnyTool = Tool[Any]
"""A tool of any argument type (what registries and plans hold)."""
