"""JSON-schema output for local experts: decoding schemas, validation and tool calls as JSON.

A small model keeps writing as long as it is allowed to, so the schema a local backend decodes
under is a *narrowed* copy of the one it must match (:func:`decoding_schema`): strings get a
length cap that fits the token budget, optional properties that are not plain scalars are left
out, and no undeclared property may appear. Every value of the narrowed schema is valid for the
original one, so "decoded under it" still means "valid for the tool". :func:`validate` checks
values with ``jsonschema`` all the same: a server that ignores ``response_format``, or a value cut
off by ``max_tokens``, is an :class:`~grounded.errors.ExpertError`, never a bad call.

Local backends get tool calls by decoding one JSON object, ``{"calls": [{"tool": ..., "arguments":
{...}}, ...]}`` (:func:`calls_schema`), with the tools listed in the system message
(:func:`tools_message`); :func:`json_tool_calls` implements ``generate_tool_calls`` that way on
top of a backend's ``generate_json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from grounded.errors import ExpertError
from grounded.experts.base import FunctionSchema, Message, StructuredGenerator, ToolCallRequest, ToolCalls

__all__ = [
    "calls_from_value",
    "calls_schema",
    "decoding_schema",
    "json_tool_calls",
    "parse_json",
    "tools_message",
    "validate",
]

MAX_STRING = 120
"""Longest string a local model may write inside a call (a search query, an expression)."""

_SCALARS = frozenset({"integer", "number", "boolean"})


def _is_scalar(node: Mapping[str, Any]) -> bool:
    return "enum" in node or "const" in node or node.get("type") in _SCALARS


def decoding_schema(schema: Mapping[str, Any], *, max_string: int = MAX_STRING) -> dict[str, Any]:
    """``schema`` narrowed for decoding by a small model: every value it allows, ``schema`` allows.

    >>> decoding_schema({"type": "object", "properties": {"q": {"type": "string", "maxLength": 2000},
    ...     "source": {"type": "string"}}, "required": ["q"]})["properties"]
    {'q': {'type': 'string', 'maxLength': 120}}
    """

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, Mapping):
            return node
        out: dict[str, Any] = {k: walk(v) for k, v in node.items() if k not in ("properties", "default", "examples")}
        if node.get("type") == "string" and "enum" not in node and "const" not in node:
            cap = max(max_string, int(node.get("minLength", 0)))  # never below what the schema requires
            out["maxLength"] = min(int(node.get("maxLength", cap)), cap)
        if "properties" in node:
            required = set(node.get("required", ()))
            out["properties"] = {
                name: walk(prop)
                for name, prop in node["properties"].items()
                if name in required or (isinstance(prop, Mapping) and _is_scalar(prop))
            }
            out["additionalProperties"] = False
        return out

    narrowed: dict[str, Any] = walk(schema)
    return narrowed


def calls_schema(tools: Sequence[FunctionSchema], *, max_calls: int, max_string: int = MAX_STRING) -> dict[str, Any]:
    """The JSON schema of ``{"calls": [...]}``: 1 to ``max_calls`` calls, each of one of ``tools``."""
    if not tools:
        raise ExpertError("no tools to call: offer at least one tool to the tool-call expert")
    if max_calls < 1:
        raise ExpertError(f"max_calls must be at least 1; got {max_calls}")
    variants = [
        {
            "type": "object",
            "properties": {
                "tool": {"const": t.name},
                "arguments": decoding_schema(t.parameters, max_string=max_string),
            },
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    call = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {
        "type": "object",
        "properties": {"calls": {"type": "array", "items": call, "minItems": 1, "maxItems": max_calls}},
        "required": ["calls"],
        "additionalProperties": False,
    }


def validate(value: Any, schema: Mapping[str, Any], *, what: str = "value") -> None:
    """Raise :class:`ExpertError` naming the first place where ``value`` breaks ``schema``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(dict(schema))
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        raise ExpertError(f"the model's {what} does not match its schema at {where}: {first.message}")


def parse_json(text: str, schema: Mapping[str, Any], *, what: str = "output", finish_reason: str = "stop") -> Any:
    """``text`` parsed as JSON and validated against ``schema``; :class:`ExpertError` otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        cut = " (cut off by max_tokens: raise it)" if finish_reason == "length" else ""
        raise ExpertError(f"the model's {what} is not JSON{cut}: {exc.msg} at {exc.pos} in {text[:200]!r}") from exc
    validate(value, schema, what=what)
    return value


def calls_from_value(value: Any, tools: Sequence[FunctionSchema]) -> tuple[ToolCallRequest, ...]:
    """The calls in a ``{"calls": [...]}`` value, each checked against its tool's full schema."""
    by_name = {t.name: t for t in tools}
    calls = value.get("calls") if isinstance(value, Mapping) else None
    if not isinstance(calls, list):
        raise ExpertError(f'the model\'s tool calls are not an object {{"calls": [...]}}: {str(value)[:200]}')
    out = []
    for i, call in enumerate(calls):
        name = call.get("tool") if isinstance(call, Mapping) else None
        if name not in by_name:
            raise ExpertError(f"call {i} names tool {name!r}, which was not offered; offered: {', '.join(by_name)}")
        arguments = call.get("arguments")
        validate(arguments, by_name[name].parameters, what=f"arguments of {name!r}")
        out.append(ToolCallRequest(name, dict(arguments)))
    return tuple(out)


def tools_message(messages: Sequence[Message], tools: Sequence[FunctionSchema], *, max_calls: int) -> list[Message]:
    """``messages`` with the tools and the reply format appended to the system message."""
    listing = "\n".join(
        json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters}, sort_keys=True)
        for t in tools
    )
    note = (
        f"Tools:\n{listing}\n"
        f'Reply with JSON only: {{"calls": [{{"tool": "<name>", "arguments": {{...}}}}]}}, 1 to {max_calls} calls.'
    )
    out = list(messages)
    if out and out[0].role == "system":
        out[0] = Message("system", f"{out[0].content}\n\n{note}")
    else:
        out.insert(0, Message("system", note))
    return out


def json_tool_calls(
    generator: StructuredGenerator,
    messages: Sequence[Message],
    tools: Sequence[FunctionSchema],
    *,
    max_calls: int,
    max_tokens: int,
    timeout_s: float | None = None,
) -> ToolCalls:
    """``generate_tool_calls`` for a local backend: one JSON object decoded under :func:`calls_schema`,
    then each call checked against its tool's own schema."""
    out = generator.generate_json(
        tools_message(messages, tools, max_calls=max_calls),
        calls_schema(tools, max_calls=max_calls),
        max_tokens=max_tokens,
        name="tool calls",
        timeout_s=timeout_s,
    )
    return ToolCalls(calls_from_value(out.value, tools), out.generation)
