"""Commands that refuse an operator's mistake before touching anything (issue 23): one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from grounded.cli import app
from tests.conftest import write_topics


def test_ingest_into_a_configured_source_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_topics(tmp_path / "corpus", ("pass",))
    (tmp_path / "grounded.toml").write_text(
        f'kb_path = "{tmp_path / "kb"}"\n[sources.private]\ntype = "files"\nacl = ["staff"]\n'
        f'params = {{ path = "{corpus}" }}\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GROUNDED_CONFIG", raising=False)
    result = CliRunner().invoke(app, ["ingest", str(corpus), "--source", "private", "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: source 'private' is configured in grounded.toml (files, acl ['staff'])")
    assert "grounded sync private" in lines[0]
    assert not (tmp_path / "kb" / "versions").exists() or not any((tmp_path / "kb" / "versions").iterdir())


def test_demo_refuses_a_public_address_without_keys_before_ingesting(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--kb", str(tmp_path / "kb"), "--host", "0.0.0.0"])
    assert result.exit_code == 2, result.output
    assert "refusing to serve 0.0.0.0 without API keys" in result.stderr
