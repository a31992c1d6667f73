"""The CI switch (tests/ci.py): under any CI value but ''/false/0, a missing service fails the run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import ci
from tests.connectors.dbkit import unavailable

TESTS = Path(__file__).parent


@pytest.mark.parametrize("value", ["true", "1", "yes", "True", "github-actions"])
def test_any_ci_value_requires_services(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert ci.required()
    # Caught as BaseException: a skip escaping here would turn this very test into a skip.
    with pytest.raises(BaseException, match="PostgreSQL") as missing_server:
        unavailable("PostgreSQL on 127.0.0.1:5432", ConnectionRefusedError("refused"))
    assert missing_server.type is pytest.fail.Exception
    with pytest.raises(BaseException, match="no_such_module_for_ci") as missing_module:
        ci.import_or_skip("no_such_module_for_ci", "pip install it")
    assert missing_module.type is pytest.fail.Exception


@pytest.mark.parametrize("value", [None, "", "false", "FALSE", "0", " 0 "])
def test_without_ci_a_missing_service_skips(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not ci.required()
    with pytest.raises(BaseException, match="MariaDB") as missing:
        unavailable("MariaDB on 127.0.0.1:3306", ConnectionRefusedError("refused"))
    assert missing.type is pytest.skip.Exception


def test_every_test_reads_ci_through_the_one_helper() -> None:
    """A second reading of CI (``== "true"`` here, truthy there) is how CI=1 once skipped the databases."""
    readers = re.compile(r"""environ(?:\.get\(|\[)\s*["']CI["']|getenv\(\s*["']CI["']|importorskip\(""")
    offenders = [
        str(path.relative_to(TESTS))
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "ci.py" and path != Path(__file__) and readers.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], f"use tests/ci.py (required, skip_or_fail, import_or_skip) in {offenders}"
