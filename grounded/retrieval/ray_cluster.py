"""Joining a Ray cluster, for what runs on one: ingestion (``[scale] engine = "ray"``) and the
search of a version's vector parts (``[scale] search = "ray"``).

Ray is optional (``pip install 'grounded[ray]'``): nothing imports it until one of those is asked
for, and then a missing install is a :class:`~grounded.errors.ConfigError` that says how to fix it.
"""

from __future__ import annotations

from typing import Any

from grounded.config import Settings
from grounded.errors import ConfigError

__all__ = ["INSTALL_HINT", "connect_ray", "require_ray"]

INSTALL_HINT = "pip install 'grounded[ray]' (or: pip install 'ray[data]==2.60.0')"


def require_ray() -> Any:
    """The ``ray`` module, or a :class:`ConfigError` that says how to install it."""
    try:
        import ray
        import ray.data  # ray without the data extra has no ray.data
    except ImportError as exc:
        raise ConfigError(
            f"scale.engine = 'ray' and scale.search = 'ray' need Ray Data, which is not installed ({exc}); "
            f"install it with {INSTALL_HINT}, or set them to 'local' (grounded ingest --engine local)"
        ) from exc
    return ray


def connect_ray(settings: Settings, *, local_cpus: int) -> Any:
    """The ``ray`` module, joined to ``scale.address`` (or to the cluster this process already
    joined; else a local one with ``local_cpus`` CPUs started here)."""
    ray = require_ray()
    if not ray.is_initialized():
        address = settings.scale.address
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=local_cpus, include_dashboard=False, log_to_driver=False)
    return ray
