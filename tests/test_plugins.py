"""Every plugin group grounded reads is declared once in grounded.plugins and documented."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from grounded import plugins

ROOT = Path(__file__).resolve().parents[1]


def test_every_entry_point_group_in_pyproject_is_a_declared_group() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    ours = {g for g in project["entry-points"] if g.startswith("grounded.")}
    assert ours == {g.name for g in plugins.GROUPS}


def test_every_group_is_documented_with_an_example() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for group in plugins.GROUPS:
        assert f"`{group.name}`" in text, f"docs/plugins.md does not document the {group.name!r} group"
        assert f'[project.entry-points."{group.name}"]' in text, f"docs/plugins.md has no example for {group.name!r}"
        assert group.description
        assert group.provides


def test_each_group_has_one_registry_on_the_one_mechanism() -> None:
    from connectors.registry import CONNECTORS
    from grounded.experts.registry import BACKENDS
    from grounded.tools.registry import TOOLS

    registries = {r.name: r for r in (CONNECTORS, TOOLS, BACKENDS)}
    assert set(registries) == {g.name for g in plugins.GROUPS}
    assert all(isinstance(r, plugins.PluginGroup) for r in registries.values())
    assert "postgres" in CONNECTORS.names()
    assert {"search", "sql", "calculate"} <= set(TOOLS.names())
    assert {"transformers", "llama-cpp", "openai"} <= set(BACKENDS.names())


def test_no_module_reads_entry_points_but_the_plugin_mechanism() -> None:
    readers = [
        p.relative_to(ROOT).as_posix()
        for package in ("grounded", "connectors", "indexes")
        for p in (ROOT / package).rglob("*.py")
        if re.search(r"\bentry_points\(", p.read_text(encoding="utf-8"))
    ]
    assert readers == ["grounded/plugins.py"]
