"""The report of ``grounded optimize`` as tables, and the chosen configuration written to ``grounded.toml``.

:func:`apply_config` changes only the settings the chosen configuration changes, keeps the rest
of the file (comments included, through ``tomlkit``) and keeps the old file beside it as
``grounded.toml.bak`` (``.bak.1``, ``.bak.2`` ... when that exists).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

from grounded.errors import ConfigError
from grounded.optimize.space import settings_patch

__all__ = ["apply_config", "pareto_rows", "summary_rows"]

_COLUMNS = ("answer_rate", "abstention", "gold_cited", "recall", "entailment", "score", "p50", "p95")


def _fmt(value: Any, name: str) -> str:
    if value is None:
        return "-"
    if name in ("p50", "p95"):
        return f"{value:.2f} s"
    return f"{value:.3f}"


def _changes(changes: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "(baseline)"


def pareto_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """Header and one row per configuration on the Pareto front of the last rung (quality score vs p50)."""
    search = report["search"]
    chosen = next(i for i, t in enumerate(search) if t["config"] == report["chosen"])
    rows = [["", "configuration (changes from the baseline)", "questions", *_COLUMNS]]
    for index in report["pareto"]:
        t = search[index]
        mark = "*" if index == chosen else ("=" if not t["changes"] else "")
        rows.append([mark, _changes(t["changes"]), str(t["questions"]), *(_fmt(t["metrics"][c], c) for c in _COLUMNS)])
    return rows


def summary_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """Header and rows: the baseline and the chosen configuration on the held-back questions."""
    held = report.get("held_out")
    rows = [["held-back questions", *_COLUMNS]]
    if not held:
        return rows
    for name in ("baseline", "chosen"):
        rows.append([name, *(_fmt(held[name][c], c) for c in _COLUMNS)])
    return rows


def _backup(path: Path) -> Path:
    backup = path.with_name(path.name + ".bak")
    n = 0
    while backup.exists():
        n += 1
        backup = path.with_name(f"{path.name}.bak.{n}")
    shutil.copy2(path, backup)
    return backup


def apply_config(path: Path, changes: Mapping[str, Any]) -> Path | None:
    """Write ``changes`` (dimension -> value) into the TOML file ``path``; the old file is kept as a
    backup, whose path is returned (``None`` when there was no file)."""
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.TOMLKitError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; it must be a UTF-8 TOML file") from exc
    for section, fields in settings_patch(changes).items():
        table: Any = document
        for part in section.split("."):
            if part not in table:
                table[part] = tomlkit.table()
            table = table[part]
            if not isinstance(table, Table | dict):
                raise ConfigError(f"{path}: [{section}] is not a table; fix the file before --apply")
        for name, value in fields.items():
            if value is None:
                table.pop(name, None)  # unset: the setting's default
            else:
                table[name] = value
    backup = _backup(path) if path.exists() else None
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(tomlkit.dumps(document), encoding="utf-8")
    tmp.replace(path)
    return backup
