"""Fuzz every route from the OpenAPI schema with schemathesis: no input may cause a 5xx.

Runs the ``schemathesis`` command against a real server (fake answer expert, no rate limit,
development mode so the admin routes are reached too), with a fixed seed so failures replay.
The default is kept short for the test suite; for a deeper run (about 2 minutes here)::

    GROUNDED_FUZZ_PHASES=examples,coverage,fuzzing,stateful GROUNDED_FUZZ_EXAMPLES=15 \
        .venv/bin/pytest tests/api/test_fuzz.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import grounded
from grounded.api.app import create_app
from tests.api.serving import serving
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("GROUNDED_FUZZ_EXAMPLES", "5"))


@pytest.fixture(scope="module")
def fuzz_url(built_kb_path: Path, fake_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    root = tmp_path_factory.mktemp("fuzz") / "kb"
    shutil.copytree(built_kb_path, root)
    kb = grounded.open(
        root,
        create=False,
        experts={"answer": {"backend": fake_backend, "model": "echo"}},
        server={"rate_limit": 0},
        sources={"docs": {"type": "files", "params": {"path": str(root.parent / "missing")}}},
    )
    with serving(create_app(kb)) as base:
        yield base


def test_no_input_makes_a_server_error(fuzz_url: str, tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(cli),
            "run",
            f"{fuzz_url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--phases",
            os.environ.get("GROUNDED_FUZZ_PHASES", "examples,fuzzing"),
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "20261127",
            "--request-timeout",
            "30",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    report = "".join(p.read_text(encoding="utf-8") for p in tmp_path.glob("*.xml"))
    for route in ("/v1/search", "/v1/query", "/v1/chat/completions", "/v1/sources/{name}/refresh", "/v1/jobs"):
        assert route in report, f"{route} was not fuzzed: {output[-2000:]}"
