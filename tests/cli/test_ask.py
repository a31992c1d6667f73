"""``grounded ask`` as users run it, with the fake expert installed as a plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grounded.answering.types import Answer
from tests.conftest import REAL_QUESTION
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GROUNDED_ASK = [sys.executable, "-c", "from grounded.cli import main; main()", "ask"]


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
    command = [*GROUNDED_ASK, *args]
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


def test_ask_with_the_real_answer_model(real_kb_path: Path, real_answer: Any) -> None:
    """Once with SmolLM2 itself (no plugin, the default configuration): the engine's own answer."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    command = [*GROUNDED_ASK, REAL_QUESTION, "--kb", str(real_kb_path), "--no-cache", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["model"] == real_answer.model
    assert (body["abstained"], body["cached"]) == (False, False)
    assert body["timings"]["completion_tokens"] > 0  # decoded now, not read from a cache
    # Greedy decoding on the same version: byte for byte the answer asked in-process.
    assert Answer.from_dict(body).canonical_json() == real_answer.canonical_json()


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
