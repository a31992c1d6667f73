"""Tools declared by a JSON schema instead of a pydantic model: OpenAPI operations and MCP tools.

Their arguments are checked with ``jsonschema`` (Draft 2020-12) in :meth:`SchemaTool.validate`,
which :meth:`~grounded.tools.base.Tool.call` runs before :meth:`~grounded.tools.base.Tool.run`:
a call whose arguments do not match never leaves the machine, and the refusal names every
place it broke the schema.

``groups`` limits who may use a tool, as a source's ``acl`` limits who may read its documents
(empty: everyone); :class:`~grounded.tools.catalog.ToolCatalog` applies it per caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jsonschema

from grounded.tools.base import Tool, ToolSpec

__all__ = ["SchemaTool", "normalise_schema"]

_TYPES = {
    "dict": "object",
    "float": "number",
    "double": "number",
    "int": "integer",
    "long": "integer",
    "tuple": "array",
    "list": "array",
    "str": "string",
    "bool": "boolean",
    "any": None,
}


def normalise_schema(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """A parameters schema every validator and decoder accepts: an object at the top, Python-ish
    type names (``dict``, ``float``, ``tuple``, ``any``; BFCL and some generators write them)
    mapped to JSON-schema types, and no ``additionalProperties`` beyond what was declared."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, Mapping):
            return node
        out = {k: walk(v) for k, v in node.items() if k not in ("title", "properties", "$schema")}
        if "properties" in node and isinstance(node["properties"], Mapping):
            out["properties"] = {name: walk(prop) for name, prop in node["properties"].items()}
        kind = node.get("type")
        if isinstance(kind, str) and kind in _TYPES:
            mapped = _TYPES[kind]
            if mapped is None:
                out.pop("type")
            else:
                out["type"] = mapped
        if out.get("type") == "object" and "properties" not in out:
            out.setdefault("additionalProperties", True)
        return out

    base: dict[str, Any] = walk(dict(schema or {}))
    if base.get("type") != "object":
        base = {
            "type": "object",
            "properties": base.get("properties", {}),
            **({"required": base["required"]} if "required" in base else {}),
        }
    base.setdefault("properties", {})
    base["additionalProperties"] = False
    if "required" in base:
        base["required"] = [r for r in base["required"] if r in base["properties"]]
    return base


class SchemaTool(Tool[Any]):
    """A tool whose parameters are a JSON schema; subclasses implement :meth:`run`.

    ``source`` names where the tool came from (an OpenAPI document or an MCP server, ``""`` for
    a built-in); ``groups`` who may use it.
    """

    kind: ClassVar[str] = "schema"

    def __init__(
        self,
        name: str,
        description: str,
        parameters: Mapping[str, Any],
        *,
        source: str = "",
        groups: tuple[str, ...] = (),
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.description = description  # type: ignore[misc]
        self.parameters = normalise_schema(parameters)
        self.source = source
        self.groups = groups
        jsonschema.Draft202012Validator.check_schema(self.parameters)
        self._validator = jsonschema.Draft202012Validator(self.parameters)

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """``arguments`` when they match the schema; ``ValueError`` naming each problem otherwise."""
        value = dict(arguments)
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}" for e in errors[:5]
            )
            raise ValueError(f"arguments of {self.name!r} do not match its schema ({problems})")
        return value
