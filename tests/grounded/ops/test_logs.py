"""Logging follows stderr as it is when a record is written."""

from __future__ import annotations

import io
import json
import logging

import pytest

from grounded.ops.logs import configure_logging


def test_records_go_to_the_current_stderr_not_a_closed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    configure_logging("json")
    # A command runner (or a notebook) swaps stderr and closes the old one between commands.
    first.close()
    second = io.StringIO()
    monkeypatch.setattr("sys.stderr", second)
    logging.getLogger("grounded.test").info("after the swap")
    assert json.loads(second.getvalue().splitlines()[-1])["msg"] == "after the swap"
