"""A record of the DuckDB connections a piece of code opens (the real ones, wrapped by a spy on
``duckdb.connect``), for tests that check how many a code path opens and that it closes them."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest


def count_connections(monkeypatch: pytest.MonkeyPatch) -> list[duckdb.DuckDBPyConnection]:
    """Every DuckDB connection opened from here on, in order."""
    opened: list[duckdb.DuckDBPyConnection] = []
    real = duckdb.connect

    def spy(*args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(duckdb, "connect", spy)
    return opened
