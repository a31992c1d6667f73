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
from importlib.metadata import EntryPoint
from typing import Any

from pydantic import ValidationError

from connectors.base import Connector
from grounded import plugins
from grounded.errors import ConfigError

__all__ = ["CONNECTORS", "ENTRY_POINT_GROUP", "available_connectors", "build_connector", "load_connector"]

ENTRY_POINT_GROUP = plugins.CONNECTORS.name


def _connector_class(obj: object, ep: EntryPoint) -> type[Connector]:
    for attr in ("name", "Config", "check", "streams", "read"):
        if not hasattr(obj, attr):
            raise ConfigError(f"connector {ep.value} lacks {attr!r}; it does not implement Connector")
    return obj  # type: ignore[return-value]


CONNECTORS = plugins.PluginGroup(plugins.CONNECTORS, check=_connector_class)
"""The installed connector classes (built-ins included)."""


def available_connectors() -> dict[str, EntryPoint]:
    """Connector types installed in this environment, by name."""
    return CONNECTORS.available()


def load_connector(type_: str) -> type[Connector]:
    """The connector class registered as ``type_``; :class:`ConfigError` lists the known types."""
    return CONNECTORS.load(type_, what="connector type")


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
