"""The configuration reference in docs/configuration.md is generated from grounded/config.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from grounded import config_docs
from grounded.config import Settings, load_settings


def _models(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> list[type[BaseModel]]:
    """``model`` and every settings model reachable from its fields."""
    seen = set() if seen is None else seen
    if model in seen:
        return []
    seen.add(model)
    found = [model]
    for info in model.model_fields.values():
        inner, _ = config_docs._model_of(info.annotation)
        if inner is not None:
            found += _models(inner, seen)
    return found


def test_every_setting_has_a_description() -> None:
    missing = [
        f"{model.__name__}.{name}"
        for model in _models(Settings)
        for name, info in model.model_fields.items()
        if not (info.description or "").strip()
    ]
    assert not missing, f"give these fields a description= in grounded/config.py: {missing}"


def test_docs_configuration_is_current() -> None:
    assert config_docs.check(), (
        "docs/configuration.md is out of date with grounded/config.py: run `make docs` and commit the result"
    )


def test_reference_lists_every_leaf_key_once() -> None:
    reference = config_docs.render_reference()
    keys = [row.key for section in config_docs.sections() for row in section.rows]
    assert len(keys) == len(set(keys))
    for key in ("`kb_path`", "`search.rrf_k`", "`experts.<task>.grammar`", "`sources.<name>.schedule`"):
        assert key in keys
        assert f"| {key} |" in reference
    assert "### `[experts.<task>]`" in reference


@pytest.mark.parametrize(
    ("documented", "env", "value", "read"),
    [
        ("GROUNDED_SEARCH__RRF_K", "GROUNDED_SEARCH__RRF_K", "30", lambda s: s.search.rrf_k == 30),
        (
            "GROUNDED_EXPERTS__<TASK>__THREADS",
            "GROUNDED_EXPERTS__ANSWER__THREADS",
            "2",
            lambda s: s.experts.answer.threads == 2,
        ),
        ("GROUNDED_SCHEDULER__HISTORY", "GROUNDED_SCHEDULER__HISTORY", "50", lambda s: s.scheduler.history == 50),
        ("GROUNDED_KEEP_VERSIONS", "GROUNDED_KEEP_VERSIONS", "5", lambda s: s.keep_versions == 5),
    ],
)
def test_documented_environment_variables_work(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    documented: str,
    env: str,
    value: str,
    read: Callable[[Settings], bool],
) -> None:
    """The names the reference prints are the ones the settings read."""
    assert f"`{documented}`" in config_docs.render_reference()
    monkeypatch.chdir(tmp_path)  # no grounded.toml from the working tree
    monkeypatch.delenv("GROUNDED_CONFIG", raising=False)
    monkeypatch.setenv(env, value)
    assert read(load_settings())


def test_placeholder_environment_variables_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reference = config_docs.render_reference()
    assert "`GROUNDED_SOURCES__<NAME>__PARAMS__<KEY>`" in reference
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GROUNDED_CONFIG", raising=False)
    monkeypatch.setenv("GROUNDED_SOURCES__SHOP__TYPE", "postgres")
    monkeypatch.setenv("GROUNDED_SOURCES__SHOP__PARAMS__HOST", "db2")
    monkeypatch.setenv("GROUNDED_SOURCES__SHOP__ACL", '["staff"]')
    shop = load_settings().sources["shop"]
    assert (shop.type, shop.params, shop.acl) == ("postgres", {"host": "db2"}, ["staff"])


def test_descriptions_are_safe_in_a_table() -> None:
    assert config_docs._text("a | b <kb>/x `<kb>/y`") == "a \\| b &lt;kb&gt;/x `<kb>/y`"


def test_check_and_rewrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "configuration.md"
    page.write_text(f"# Configuration\n\n{config_docs.BEGIN}\nstale\n{config_docs.END}\n\nafter\n")
    assert config_docs.main(["--check", "--path", str(page)]) == 1
    assert "run `make docs`" in capsys.readouterr().err
    assert config_docs.main(["--path", str(page)]) == 0
    text = page.read_text()
    assert "stale" not in text
    assert text.endswith(f"{config_docs.END}\n\nafter\n")
    assert "| `search.rrf_k` |" in text
    assert config_docs.main(["--check", "--path", str(page)]) == 0


def test_a_page_without_markers_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "configuration.md"
    page.write_text("# Configuration\n")
    assert config_docs.main(["--path", str(page)]) == 2
    assert "lacks the markers" in capsys.readouterr().err
    with pytest.raises(ValueError, match="lacks the markers"):
        config_docs.update("no markers here")
