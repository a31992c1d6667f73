"""The one switch for "this run must prove everything": the ``CI`` environment variable.

Tests that need something outside the repository (PostgreSQL, MariaDB, Chromium, an optional
extra, the llama.cpp wheel) call :func:`skip_or_fail` when it is missing: on a developer's machine
the test is skipped with the message; in CI it fails, so a green CI never hides a missing service.

``CI`` counts as set when it holds anything but ``""``, ``"false"`` or ``"0"`` (any case): CI
systems write ``true``, ``1`` or ``yes``, and a run with ``CI=1`` must not skip what ``CI=true``
requires.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

__all__ = ["import_or_skip", "required", "skip_or_fail"]

_OFF = frozenset({"", "false", "0"})


def required() -> bool:
    """Whether this run is CI, where missing services are failures rather than skips."""
    return os.environ.get("CI", "").strip().lower() not in _OFF


def skip_or_fail(message: str, *, module_level: bool = False) -> NoReturn:
    """Skip the test with ``message``, or fail it when :func:`required`."""
    if required():
        pytest.fail(f"{message} (CI={os.environ.get('CI')!r}: required here)", pytrace=False)
    pytest.skip(message, allow_module_level=module_level)


def import_or_skip(module: str, hint: str, *, module_level: bool = False) -> ModuleType:
    """Import ``module``; when it is missing, :func:`skip_or_fail` with ``hint`` (how to install it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        skip_or_fail(f"{module} is not importable ({exc}): {hint}", module_level=module_level)
