"""`grounded sync` over configured sources: failures stay with their source, renames are caught."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from dbkit import make_kb, mirror_rows
from typer.testing import CliRunner

from connectors.registry import load_connector
from grounded.config import SourceConfig, load_settings
from grounded.errors import ConfigError
from grounded.ingest.sources import sync_sources
from grounded.sql.database import ReadOnlyDatabase


def notes_db(path: Path, n: int = 5) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.executemany("INSERT INTO notes VALUES (?, ?)", [(i, f"note {i}") for i in range(n)])
    con.commit()
    con.close()
    return path


def source(db: Path, table: str = "notes") -> dict[str, Any]:
    return {"type": "sqlite", "params": {"path": str(db), "tables": [{"name": table}]}}


def test_failing_source_is_named_and_others_still_sync(tmp_path: Path) -> None:
    db = notes_db(tmp_path / "a.db")
    settings = load_settings(
        kb_path=tmp_path / "kb",
        sources={"good": source(db), "broken": source(db, "missing_table"), "absent": source(tmp_path / "nope.db")},
    )
    kb = make_kb(tmp_path / "kb")
    results = {r.name: r for r in sync_sources(kb.store, settings)}
    assert results["good"].ok
    assert results["broken"].error is not None
    assert results["broken"].error.startswith("source 'broken' (sqlite): table 'missing_table' does not exist")
    assert "does not exist; fix path" in (results["absent"].error or "")
    assert mirror_rows(kb, "SELECT count(*) FROM good.notes") == [(5,)]

    # The failing source keeps its last good state when it breaks later.
    before = kb.version
    settings.sources["good"].params["tables"] = [{"name": "gone"}]
    assert not sync_sources(kb.store, settings, ["good"])[0].ok
    assert kb.version == before
    assert mirror_rows(kb, "SELECT count(*) FROM good.notes") == [(5,)]


def test_renamed_source_is_caught(tmp_path: Path) -> None:
    db = notes_db(tmp_path / "a.db")
    kb = make_kb(tmp_path / "kb")
    assert sync_sources(kb.store, load_settings(sources={"old": source(db)}))[0].ok
    renamed = load_settings(sources={"new": source(db)})
    result = sync_sources(kb.store, renamed)[0]
    assert result.error is not None
    assert "looks renamed" in result.error
    assert "--allow-rename" in result.error
    assert sync_sources(kb.store, renamed, allow_rename=True)[0].ok
    assert mirror_rows(
        kb, "SELECT schema_name FROM information_schema.schemata WHERE schema_name IN ('old', 'new')"
    ) == [("new",)]


@pytest.mark.parametrize("name", ["store", "_grounded_export"])
def test_a_source_named_like_a_duckdb_catalog_syncs_and_resyncs(tmp_path: Path, name: str) -> None:
    """The store's DuckDB file is catalog ``store`` and the export attaches ``_grounded_export``:
    a source (schema) of that name made ``store.notes`` ambiguous and the sync failed."""
    db = notes_db(tmp_path / "a.db")
    kb = make_kb(tmp_path / "kb")
    settings = load_settings(sources={name: source(db)})
    assert sync_sources(kb.store, settings)[0].ok
    con = sqlite3.connect(db)
    con.execute("DELETE FROM notes WHERE id = 0")
    con.execute("UPDATE notes SET body = 'changed' WHERE id = 1")
    con.commit()
    con.close()
    [again] = sync_sources(kb.store, settings)  # a full scan: upserts and the key diff
    assert again.ok, again.error
    assert again.stats is not None
    assert (again.stats.rows_upserted, again.stats.rows_deleted) == (1, 1)
    tables = ReadOnlyDatabase.for_version(kb.store.versions.current().store_path)
    rows = tables.execute(f"SELECT id, body FROM {name}.notes ORDER BY id LIMIT 2", timeout_s=5, row_limit=10).rows
    assert rows == ((1, "changed"), (2, "note 2"))


def test_unknown_type_and_bad_params_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown connector type 'oracle'; installed connector types: .*postgres"):
        load_connector("oracle")
    kb = make_kb(tmp_path / "kb")
    settings = load_settings(sources={"s": {"type": "postgres", "params": {"tables": []}}})
    [result] = sync_sources(kb.store, settings)
    assert result.error is not None
    assert "sources.s.params.database: Field required" in result.error
    with pytest.raises(ConfigError, match=r"unknown source\(s\) \['x'\]"):
        sync_sources(kb.store, settings, ["x"])


def test_env_overrides_source_params(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "grounded.toml"
    config.write_text('[sources.shop]\ntype = "postgres"\nparams = { database = "shop", user = "reader" }\n')
    monkeypatch.setenv("GROUNDED_CONFIG", str(config))
    monkeypatch.setenv("GROUNDED_SOURCES__SHOP__PARAMS__HOST", "db.internal")
    assert load_settings().sources["shop"] == SourceConfig(
        type="postgres", params={"database": "shop", "user": "reader", "host": "db.internal"}
    )


def test_cli_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from grounded.cli import app

    db = notes_db(tmp_path / "a.db", n=3)
    config = tmp_path / "grounded.toml"
    config.write_text(
        f'kb_path = "{tmp_path / "kb"}"\n'
        f'[sources.notes]\ntype = "sqlite"\nparams = {{ path = "{db}", tables = [{{ name = "notes" }}] }}\n'
        f'[sources.bad]\ntype = "sqlite"\nparams = {{ path = "{db}", tables = [{{ name = "nope" }}] }}\n'
    )
    monkeypatch.setenv("GROUNDED_CONFIG", str(config))
    monkeypatch.setattr("grounded.kb.SentenceEmbedder", _FakeEmbedder)
    result = CliRunner().invoke(app, ["sync", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "notes: 3 rows upserted" in result.output
    assert "source 'bad' (sqlite): table 'nope' does not exist" in result.output


class _FakeEmbedder:
    @classmethod
    def shared(cls, *args: Any, **kwargs: Any) -> _FakeEmbedder:
        return cls()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from dbkit import HashEmbedder

        self._inner = HashEmbedder()
        self.fingerprint = self._inner.fingerprint
        self.dim = self._inner.dim
        self.embed = self._inner.embed
