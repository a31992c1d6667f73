"""The experts registry: task -> backend + model, resolved from config and entry points.

Backends are found in the ``grounded.experts`` entry-point group; the built-ins
(``transformers``, ``llama-cpp``, ``openai``) are registered there too, so a third-party
backend is used exactly like ours::

    [experts.answer]              # grounded.toml
    backend = "openai"
    model = "qwen2.5-0.5b-instruct"
    url = "http://127.0.0.1:8080/v1"

Generators are created once per (task, spec) and shared by every caller in the process.
"""

from __future__ import annotations

import threading
from importlib.metadata import EntryPoint

from grounded import plugins
from grounded.config import ExpertSpec, Settings
from grounded.errors import ConfigError
from grounded.experts.base import BackendFactory, StructuredGenerator, TextGenerator

__all__ = [
    "BACKENDS",
    "ENTRY_POINT_GROUP",
    "STRUCTURED_TASKS",
    "TASKS",
    "available_backends",
    "backend_factory",
    "clear",
    "get_expert",
    "get_structured_expert",
]

ENTRY_POINT_GROUP = plugins.EXPERTS.name


def _factory(obj: object, ep: EntryPoint) -> BackendFactory:
    if not callable(obj):
        raise ConfigError(f"expert backend {ep.name!r} ({ep.value}) is not callable: it must be a Factory(spec)")
    return obj


BACKENDS = plugins.PluginGroup(plugins.EXPERTS, check=_factory)
"""The installed expert backends (built-ins included)."""
TASKS = ("answer", "sql", "tool_call")
STRUCTURED_TASKS = frozenset({"tool_call"})
"""Tasks whose expert must hold its output to a JSON schema (a :class:`StructuredGenerator`)."""

_lock = threading.Lock()
_instances: dict[tuple[str, str], TextGenerator] = {}


def available_backends() -> list[str]:
    """Names of every installed backend, sorted."""
    return BACKENDS.names()


def backend_factory(name: str) -> BackendFactory:
    """The factory registered under ``name`` in the ``grounded.experts`` entry-point group."""
    return BACKENDS.load(name, what="expert backend")


def get_expert(task: str, settings: Settings) -> TextGenerator:
    """The generator configured for ``task`` (created on first use, then shared)."""
    if task not in TASKS:
        raise ConfigError(f"unknown expert task {task!r}; known tasks: {', '.join(TASKS)}")
    spec: ExpertSpec | None = getattr(settings.experts, task)
    if spec is None:
        raise ConfigError(f"no expert is configured for task {task!r}; add [experts.{task}] to grounded.toml")
    key = (task, spec.model_dump_json())
    with _lock:
        expert = _instances.get(key)
        if expert is None:
            expert = backend_factory(spec.backend)(spec)
            if not isinstance(expert, TextGenerator):
                raise ConfigError(
                    f"expert backend {spec.backend!r} returned {type(expert).__name__}, which lacks "
                    "generate() or fingerprint"
                )
            if task in STRUCTURED_TASKS and not isinstance(expert, StructuredGenerator):
                raise _not_structured(spec, task)
            _instances[key] = expert
        return expert


def get_structured_expert(task: str, settings: Settings) -> StructuredGenerator:
    """The generator configured for ``task``, which must hold its output to JSON schemas."""
    expert = get_expert(task, settings)
    if not isinstance(expert, StructuredGenerator):
        raise _not_structured(getattr(settings.experts, task), task)
    return expert


def _not_structured(spec: ExpertSpec, task: str) -> ConfigError:
    return ConfigError(
        f"expert backend {spec.backend!r} cannot serve task {task!r}: it lacks generate_json() and "
        "generate_tool_calls() (constrained JSON output); use transformers, llama-cpp or openai"
    )


def clear() -> None:
    """Forget every created generator (tests, or after changing config in a long-lived process)."""
    with _lock:
        _instances.clear()
