"""``grounded ask`` as users run it, with the fake expert installed as a plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def ask(*args: str) -> subprocess.CompletedProcess[str]:
    site = next(p for p in sys.path if p.endswith(tuple(f"plugin-site{i}" for i in range(10))))
    env = {
        **os.environ,
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "PYTHONPATH": os.pathsep.join([site, str(ROOT)]),
        "GROUNDED_EXPERTS__ANSWER__BACKEND": "fake",
        "GROUNDED_EXPERTS__ANSWER__MODEL": "echo",
    }
    command = [sys.executable, "-c", "from grounded.cli import main; main()", "ask", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


@pytest.mark.usefixtures("fake_backend")
def test_ask_prints_the_cited_answer_and_numbered_sources(built_kb_path: Path) -> None:
    result = ask("What does the pass statement do?", "--kb", str(built_kb_path), "--no-cache")
    assert result.returncode == 0, result.stderr
    first, _, rest = result.stdout.partition("\n")
    assert first.endswith("[1]")
    assert "Sources" in rest
    assert "  [1] pass — " in rest
    assert "index version" in rest


@pytest.mark.usefixtures("fake_backend")
def test_ask_rejects_an_empty_question_with_exit_code_2(built_kb_path: Path) -> None:
    result = ask("   ", "--kb", str(built_kb_path))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: query must be a non-empty string"


@pytest.mark.usefixtures("fake_backend")
def test_ask_explain_shows_how_each_sentence_was_checked(built_kb_path: Path) -> None:
    result = ask("What does the pass statement do?", "--kb", str(built_kb_path), "--no-cache", "--explain")
    assert result.returncode == 0, result.stderr
    checks = result.stdout.split("\nChecks\n", 1)[1]
    # The suite pins answer.checks = lexical (tests/conftest.py): the lexical scores and each sentence's fate.
    assert "lexical checks" in checks
    assert "evidence similarity" in checks
    assert "1. “" in checks
    assert "→ kept" in checks or "→ quoted or dropped" in checks
