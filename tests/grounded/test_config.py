"""Configuration mistakes are refused with one clear line: misspelt keys in any section, a
malformed grounded.toml, a source name that collides with the knowledge base's own tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from connectors.registry import available_connectors, load_connector
from grounded.cli import app
from grounded.config import Settings, load_settings
from grounded.errors import ConfigError
from tests.grounded.test_config_docs import _models


def _inner(annotation: Any) -> Iterator[type[BaseModel]]:
    """Every model an annotation holds, however nested (``list[X]``, ``tuple[X, ...]``, ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _inner(arg)


def _nested_models(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[type[BaseModel]]:
    if model in seen:
        return []
    seen.add(model)
    found = [model]
    for info in model.model_fields.values():
        for inner in _inner(info.annotation):
            found += _nested_models(inner, seen)
    return found


def test_every_settings_section_refuses_unknown_keys() -> None:
    """Issue 23, item 5, made structural: a new section without extra="forbid" fails here."""
    loose = [m.__name__ for m in _models(Settings) if m.model_config.get("extra") != "forbid"]
    assert not loose, f"give these settings models model_config = ConfigDict(extra='forbid'): {loose}"


def test_every_connector_config_refuses_unknown_keys() -> None:
    seen: set[type[BaseModel]] = set()
    models = [m for name in available_connectors() for m in _nested_models(load_connector(name).Config, seen)]
    loose = [m.__name__ for m in models if m.model_config.get("extra") != "forbid"]
    assert not loose, f"give these connector configs model_config = ConfigDict(extra='forbid'): {loose}"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[server]\nrate_limt = 5\n", "server.rate_limt"),
        ("[search]\ncandidate = 10\n", "search.candidate"),
        ("[answer]\nkk = 3\n", "answer.kk"),
        ("[chunking]\nmax_char = 300\n", "chunking.max_char"),
        ("[scheduler]\njiter_s = 1\n", "scheduler.jiter_s"),
        ("[experts.answer]\nbackedn = 'openai'\n", "experts.answer.backedn"),
        ("[experts]\nsummary = { backend = 'openai' }\n", "experts.summary"),
    ],
)
def test_a_misspelt_nested_key_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, key: str
) -> None:
    (tmp_path / "grounded.toml").write_text(toml, encoding="utf-8")
    monkeypatch.setenv("GROUNDED_CONFIG", str(tmp_path / "grounded.toml"))
    with pytest.raises(ConfigError, match=f"{key}: Extra inputs are not permitted"):
        load_settings()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"[server\nport = 1\n", "Expected ']'"),
        (b"kb_path = \n", "Invalid value"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "cannot read"),
    ],
    ids=["syntax", "no-value", "binary"],
)
def test_a_malformed_config_file_is_a_one_line_error_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, says: str
) -> None:
    """Issue 23, item 7: a traceback and exit 1 before; now `error: cannot read ...` and exit 2."""
    (tmp_path / "grounded.toml").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GROUNDED_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"cannot read grounded\.toml"):
        load_settings()
    for command in (["search", "anything"], ["sync"], ["keys", "list"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: cannot read grounded.toml"), lines[0]
        assert says in lines[0], lines[0]
        assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "name", ["main", "MAIN", "information_schema", "pg_catalog", "memory", "system", "temp", "kb", "fts_main_chunks"]
)
def test_a_source_named_like_the_knowledge_bases_own_tables_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"source name '{name}' is reserved"):
        load_settings(sources={name: {"type": "files", "params": {"path": "docs"}}})


def test_sync_of_a_source_named_main_is_refused_before_touching_the_kb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "grounded.toml").write_text(
        f'kb_path = "{tmp_path / "kb"}"\n[sources.main]\ntype = "files"\nparams = {{ path = "{tmp_path / "docs"}" }}\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GROUNDED_CONFIG", raising=False)
    result = CliRunner().invoke(app, ["sync", "main", "--full"])
    assert result.exit_code == 2, result.output
    assert "source name 'main' is reserved" in result.stderr
    assert not (tmp_path / "kb").exists()
