"""One plugin mechanism for every extension point: typed entry-point groups.

A plugin is a Python package that declares entry points in its ``pyproject.toml``; grounded's
own built-ins are registered exactly the same way (see grounded's ``pyproject.toml``), so a
third-party connector, tool or expert backend is used exactly like ours::

    [project.entry-points."grounded.connectors"]
    shopify = "grounded_shopify:ShopifyConnector"

Every group is declared once in :data:`GROUPS` (its name, what a plugin provides, a one-line
description: ``docs/plugins.md`` documents each, and a test fails when one is not); the module
that uses a group wraps it in a :class:`PluginGroup` with the check a loaded object must pass::

    CONNECTORS = PluginGroup(plugins.CONNECTORS, check=_connector_class)
    CONNECTORS.load("postgres")        # -> the class, or ConfigError listing what is installed

A plugin that cannot be imported, or that does not provide what its group expects, is a
:class:`~grounded.errors.ConfigError` naming the plugin, its entry point and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from grounded.errors import ConfigError

__all__ = ["CONNECTORS", "EXPERTS", "GROUPS", "TOOLS", "GroupSpec", "PluginGroup"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """An entry-point group: its name, what each entry point names, and what it is for."""

    name: str
    provides: str
    description: str


CONNECTORS = GroupSpec(
    "grounded.connectors",
    "a connector class (``connectors.base.Connector``: ``name``, ``Config``, ``check``, ``streams``, ``read``)",
    "Where data comes from: a database, a folder, a REST API; used by ``[sources.NAME] type = ...``.",
)
TOOLS = GroupSpec(
    "grounded.tools",
    "a ``grounded.tools.Tool`` subclass or instance",
    "What the grounding layer can call before the writer speaks (search, sql, api, ...).",
)
EXPERTS = GroupSpec(
    "grounded.experts",
    "a backend factory: ``Factory(ExpertSpec)`` returning a ``grounded.experts.base.TextGenerator``",
    "How a small model is run for a task (``[experts.TASK] backend = ...``): transformers, llama-cpp, openai.",
)

GROUPS: tuple[GroupSpec, ...] = (CONNECTORS, TOOLS, EXPERTS)
"""Every plugin group grounded reads, each documented in ``docs/plugins.md``."""


@dataclass(frozen=True, slots=True)
class PluginGroup(Generic[T]):
    """The installed plugins of one group, loaded on demand and checked by ``check``.

    ``check(obj, entry_point)`` returns the plugin as the group's type or raises
    :class:`ConfigError` saying what the plugin lacks.
    """

    spec: GroupSpec
    check: Callable[[object, EntryPoint], T]

    @property
    def name(self) -> str:
        return self.spec.name

    def available(self) -> dict[str, EntryPoint]:
        """The group's entry points in this environment, by name (sorted)."""
        found = {ep.name: ep for ep in entry_points(group=self.spec.name)}
        return dict(sorted(found.items()))

    def names(self) -> list[str]:
        """Names of the installed plugins, sorted."""
        return list(self.available())

    def load(self, name: str, *, what: str = "plugin") -> T:
        """The plugin registered as ``name``, imported (Python caches the module) and checked.

        Nothing is cached here: a plugin installed or removed while the process runs is seen
        on the next call.
        """
        found = self.available()
        if name not in found:
            raise ConfigError(
                f"unknown {what} {name!r}; installed {what}s: {', '.join(found) or '(none)'} "
                f"(a plugin registers one under the entry-point group {self.spec.name!r}; "
                "for grounded's own, reinstall it: pip install -e .)"
            )
        return self._import(found[name], what)

    def load_all(self, *, what: str = "plugin") -> dict[str, T]:
        """Every installed plugin of the group, by entry-point name, sorted."""
        return {name: self.load(name, what=what) for name in self.available()}

    def _import(self, ep: EntryPoint, what: str) -> T:
        try:
            obj = ep.load()
        except ImportError as exc:
            raise ConfigError(
                f"{what} {ep.name!r} ({ep.value}) cannot be imported: {exc}; install its dependencies"
            ) from exc
        return self.check(obj, ep)
