"""``grounded keys`` and ``grounded refresh``, run in-process through the typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grounded.cli import app
from grounded.ops.keys import KEYS_FILE, KeyStore
from tests.conftest import write_topics


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    kb = str(tmp_path / "kb")
    created = runner.invoke(app, ["keys", "create", "--name", "ci", "--groups", "staff,eng", "--kb", kb])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[0]
    assert token.startswith("gk_")
    principal = KeyStore(tmp_path / "kb" / KEYS_FILE).authenticate(token)
    assert principal.groups == ("eng", "staff")

    listed = runner.invoke(app, ["keys", "list", "--json", "--kb", kb])
    keys = json.loads(listed.stdout)
    assert [(k["name"], k["groups"], k["admin"]) for k in keys] == [("ci", ["eng", "staff"], False)]
    assert token not in listed.stdout

    revoked = runner.invoke(app, ["keys", "revoke", keys[0]["id"], "--kb", kb])
    assert revoked.exit_code == 0
    assert json.loads(runner.invoke(app, ["keys", "list", "--json", "--kb", kb]).stdout)[0]["revoked_at"]
    missing = runner.invoke(app, ["keys", "revoke", "nope", "--kb", kb])
    assert missing.exit_code == 1


def test_refresh_runs_a_configured_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_topics(tmp_path / "corpus", ("pass",))
    (tmp_path / "grounded.toml").write_text(
        f'kb_path = "{tmp_path / "kb"}"\n\n[sources.docs]\ntype = "files"\nschedule = "1h"\n'
        f'params = {{ path = "{corpus}" }}\n\n[sources.gone]\ntype = "files"\nparams = {{ path = "{tmp_path / "no"}" }}\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(app, ["refresh", "docs"])
    assert ok.exit_code == 0, ok.output
    assert "docs: job 1 succeeded" in ok.stdout
    assert "version 000001" in ok.stdout
    failed = runner.invoke(app, ["refresh"])
    assert failed.exit_code == 1
    assert "gone: job" in failed.output
    assert "does not exist" in failed.output
