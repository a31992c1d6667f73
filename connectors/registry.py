"""Find connector classes through the ``grounded.connectors`` entry-point group.

Built-in connectors register exactly as third-party ones do, in ``pyproject.toml``::

    [project.entry-points."grounded.connectors"]
    postgres = "connectors.postgres:PostgresConnector"

Example::

    cls = load_connector("postgres")
    connector = build_connector("postgres", {"database": "shop", "user": "reader", "tables": [...]})
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from connectors.base import Connector
from grounded.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "available_connectors", "build_connector", "load_connector"]

ENTRY_POINT_GROUP = "grounded.connectors"


def available_connectors() -> dict[str, EntryPoint]:
    """Connector types installed in this environment, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_connector(type_: str) -> type[Connector]:
    """The connector class registered as ``type_``; :class:`ConfigError` lists the known types."""
    found = available_connectors()
    if type_ not in found:
        raise ConfigError(
            f"unknown connector type {type_!r}; installed types: {', '.join(sorted(found)) or '(none)'} "
            f"(a plugin registers one under the entry-point group {ENTRY_POINT_GROUP!r})"
        )
    try:
        cls = found[type_].load()
    except ImportError as exc:
        raise ConfigError(
            f"connector type {type_!r} ({found[type_].value}) cannot be imported: {exc}; install its dependencies"
        ) from exc
    for attr in ("name", "Config", "check", "streams", "read"):
        if not hasattr(cls, attr):
            raise ConfigError(f"connector {found[type_].value} lacks {attr!r}; it does not implement Connector")
    return cls  # type: ignore[no-any-return]


def build_connector(type_: str, params: Mapping[str, Any], *, source: str = "") -> Connector:
    """Validate ``params`` against the connector's ``Config`` and construct it."""
    cls = load_connector(type_)
    try:
        config = cls.Config.model_validate(dict(params))
    except ValidationError as exc:
        where = f"sources.{source}.params" if source else "params"
        problems = "; ".join(f"{where}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"source {source or type_!r} ({type_}): {problems}") from exc
    return cls(config)  # type: ignore[call-arg]
