"""The tool registry: built-in and third-party tools through the ``grounded.tools`` entry points,
plus functions decorated with :func:`tool` in this process.

Built-ins are registered exactly like a plugin's tools (see ``pyproject.toml``)::

    [project.entry-points."grounded.tools"]
    weather = "my_package.tools:WeatherTool"      # a Tool subclass (or instance)
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint
from typing import Any, get_type_hints

from pydantic import create_model

from grounded import plugins
from grounded.errors import ConfigError
from grounded.tools.base import AnyTool, Params, Tool, ToolContext, ToolResult

__all__ = ["ENTRY_POINT_GROUP", "TOOLS", "FunctionTool", "get_tool", "load_tools", "register", "tool", "unregister"]

ENTRY_POINT_GROUP = plugins.TOOLS.name


def _tool(obj: object, ep: EntryPoint) -> AnyTool:
    instance = obj() if isinstance(obj, type) else obj
    if not isinstance(instance, Tool):
        raise ConfigError(f"tool plugin {ep.name!r} ({ep.value}) is not a grounded.tools.Tool")
    return instance


TOOLS = plugins.PluginGroup(plugins.TOOLS, check=_tool)
"""The installed tools (built-ins included), each instantiated when loaded."""

_lock = threading.Lock()
_user: dict[str, AnyTool] = {}
_plugins: dict[str, AnyTool] | None = None


class FunctionTool(Tool[Any]):
    """A plain function as a tool: its signature is the schema, its docstring the description."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__  # type: ignore[misc]
        self.description = description or inspect.getdoc(fn) or self.name  # type: ignore[misc]
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(fn).parameters.items():
            if pname == "ctx":
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (hints.get(pname, Any), default)
        self.Arguments = create_model(f"{self.name}_arguments", __base__=Params, **fields)
        self._wants_ctx = "ctx" in inspect.signature(fn).parameters

    def run(self, args: Any, ctx: ToolContext) -> ToolResult:
        kwargs = dict(args)
        if self._wants_ctx:
            kwargs["ctx"] = ctx
        value = self.fn(**kwargs)
        if isinstance(value, ToolResult):
            return value
        text = value if isinstance(value, str) else repr(value)
        return ToolResult(self.name, True, text, value, {"tool": self.name, "function": self.fn.__qualname__}, size=1)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None) -> Any:
    """Register ``fn`` as a tool (usable bare, ``@tool``, or with ``@tool(name=...)``)."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        register(FunctionTool(f, name=name, description=description))
        return f

    return wrap(fn) if fn is not None else wrap


def register(t: AnyTool) -> None:
    """Add a tool to this process's registry (replacing one of the same name)."""
    with _lock:
        _user[t.name] = t


def unregister(name: str) -> None:
    with _lock:
        _user.pop(name, None)


def _load_plugins() -> dict[str, AnyTool]:
    global _plugins
    with _lock:
        if _plugins is None:
            # One instance per tool for the process: tools may keep clients open (the api tool).
            _plugins = {t.name: t for t in TOOLS.load_all(what="tool plugin").values()}
        return _plugins


def load_tools() -> Mapping[str, AnyTool]:
    """Every tool by name: plugins (built-ins included), then decorated functions, sorted."""
    merged = {**_load_plugins()}
    with _lock:
        merged.update(_user)
    return dict(sorted(merged.items()))


def get_tool(name: str) -> AnyTool:
    tools = load_tools()
    if name not in tools:
        raise ConfigError(f"unknown tool {name!r}; available tools: {', '.join(tools) or 'none'}")
    return tools[name]
