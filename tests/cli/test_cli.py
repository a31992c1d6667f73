"""The ``grounded`` command as users run it: a subprocess, its output and exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GROUNDED = [sys.executable, "-c", "from grounded.cli import main; main()"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([*GROUNDED, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def test_search_prints_a_table(built_kb_path: Path) -> None:
    result = run("search", "leave the innermost loop", "--kb", str(built_kb_path), "-k", "2")
    assert result.returncode == 0, result.stderr
    assert "2 results for 'leave the innermost loop'" in result.stdout
    assert "break" in result.stdout


def test_search_json_output_parses(built_kb_path: Path) -> None:
    result = run("search", "with statement", "--kb", str(built_kb_path), "-k", "1", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert hits[0]["title"] == "with"


def test_bad_k_is_a_one_line_error_with_exit_code_2(built_kb_path: Path) -> None:
    result = run("search", "x", "--kb", str(built_kb_path), "-k", "0")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: k must be an integer from 1 to 100")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_filter_is_a_one_line_error(built_kb_path: Path) -> None:
    result = run("search", "x", "--kb", str(built_kb_path), "--filter", '{"colour": "red"}')
    assert result.returncode == 2
    assert "unknown filter 'colour'" in result.stderr


def test_ingest_then_reingest_reports_what_changed(tmp_path: Path, corpus: Path) -> None:
    kb = tmp_path / "kb"
    first = run("ingest", str(corpus), "--kb", str(kb), "--no-progress")
    assert first.returncode == 0, first.stderr
    assert "published version 000001" in first.stdout
    again = run("ingest", str(corpus), "--kb", str(kb), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "0 added" in again.stdout
    assert "nothing changed (version 000001)" in again.stdout


def test_ingest_of_a_missing_path_fails_cleanly(tmp_path: Path) -> None:
    result = run("ingest", str(tmp_path / "missing"), "--kb", str(tmp_path / "kb"), "--no-progress")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_search_on_a_foreign_directory_refuses_and_touches_nothing(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    result = run("search", "x", "--kb", str(tmp_path))
    assert result.returncode == 1
    assert "not a grounded knowledge base" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("ingest", "search", "serve", "demo"):
        assert command in result.stdout
