"""Every tool one deployment offers, and who may use which: :class:`ToolCatalog`.

The catalog joins the registry (built-ins, ``grounded.tools`` plugins, ``@tool`` functions) and
the configured tool sources (``[tools.sources.NAME]``: OpenAPI documents, MCP servers). Each
tool's groups are its source's ``acl`` narrowed by a matching ``[tools.acl]`` entry, the same
rule as a document's ACL under its source's (:func:`grounded.access.effective_acl`); a caller
sees a tool it may not use exactly as a tool that does not exist.

A source that cannot be loaded (a missing document, a server that does not start) leaves its
tools out and its reason in :attr:`ToolCatalog.errors`, so one broken source never stops
answers; ``grounded tools list`` shows the reasons.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from grounded.access import effective_acl
from grounded.config import Settings, ToolSourceConfig
from grounded.errors import ConfigError
from grounded.tools.base import AnyTool
from grounded.tools.mcp_client import McpSource
from grounded.tools.openapi import OpenApiSource
from grounded.tools.registry import load_tools

__all__ = ["BUILTIN", "ToolCatalog", "may_use"]

BUILTIN = frozenset({"search", "lookup", "sql", "api", "calculate"})
"""Tools the planner's routes use directly; every other tool is retrieved per question."""

log = logging.getLogger("grounded.tools")


def may_use(groups: Sequence[str], acl_groups: Sequence[str] | None) -> bool:
    """Whether a caller with ``acl_groups`` (``None``: unrestricted) may use a tool of ``groups``."""
    return acl_groups is None or not groups or bool(set(groups) & set(acl_groups))


class ToolCatalog:
    """The tools of one configuration (see the module docstring); loaded on first use."""

    def __init__(self, settings: Settings, *, base: Path | None = None) -> None:
        self.settings = settings
        self.base = base
        self.errors: dict[str, str] = {}
        self.groups: dict[str, tuple[str, ...]] = {}
        """Tool name -> groups allowed to use it (empty: everyone)."""
        self._sources: list[OpenApiSource | McpSource] = []
        self._tools: dict[str, AnyTool] | None = None
        self._lock = threading.Lock()

    def _groups(self, tool: AnyTool) -> tuple[str, ...]:
        configured = [
            groups for pattern, groups in self.settings.tools.acl.items() if fnmatch.fnmatchcase(tool.name, pattern)
        ]
        own: tuple[str, ...] = tuple(tool.groups)
        for groups in configured:
            own = effective_acl(own, groups)
        return own

    def _load_source(self, name: str, config: ToolSourceConfig) -> list[AnyTool]:
        source: OpenApiSource | McpSource
        source = OpenApiSource(name, config, base=self.base) if config.type == "openapi" else McpSource(name, config)
        self._sources.append(source)
        return list(source.tools())

    def tools(self) -> dict[str, AnyTool]:
        """Every tool by name, sorted; a source's tool never replaces a registered one."""
        with self._lock:
            if self._tools is None:
                merged: dict[str, AnyTool] = dict(load_tools())
                for name, config in sorted(self.settings.tools.sources.items()):
                    if not config.enabled:
                        continue
                    try:
                        loaded = self._load_source(name, config)
                    except (ConfigError, OSError, ValueError) as exc:
                        self.errors[name] = str(exc)
                        log.warning("tool source %s not loaded: %s", name, exc)
                        continue
                    for tool in loaded:
                        if tool.name in merged:
                            self.errors[f"{name}:{tool.name}"] = f"a tool named {tool.name!r} exists already; skipped"
                            continue
                        merged[tool.name] = tool
                # Kept here, not on the tools: a built-in is one instance shared by every catalog.
                self.groups = {n: self._groups(t) for n, t in merged.items()}
                self._tools = dict(sorted(merged.items()))
            return self._tools

    def allowed(self, acl_groups: Sequence[str] | None) -> dict[str, AnyTool]:
        """The tools a caller with ``acl_groups`` may use (``None``: all of them)."""
        tools = self.tools()
        return {n: t for n, t in tools.items() if may_use(self.groups.get(n, ()), acl_groups)}

    def retrievable(self, tools: Mapping[str, AnyTool]) -> dict[str, AnyTool]:
        """The tools chosen per question by retrieval: all but the planner's built-ins."""
        return {n: t for n, t in tools.items() if n not in BUILTIN}

    def get(self, name: str, acl_groups: Sequence[str] | None = None) -> AnyTool:
        tools = self.allowed(acl_groups)
        if name not in tools:
            raise ConfigError(f"unknown tool {name!r}; available tools: {', '.join(tools) or 'none'}")
        return tools[name]

    def close(self) -> None:
        """Close the sources' HTTP clients and MCP sessions (stdio servers exit)."""
        for source in self._sources:
            source.close()
        self._sources.clear()
        self._tools = None
