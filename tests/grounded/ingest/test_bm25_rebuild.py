"""A sync that changes only mirrored tables keeps the version's BM25 index (issue 25, item 4)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from connectors.registry import build_connector
from indexes.duckdb_store import DuckDBStore
from tests.connectors.dbkit import make_kb


def test_only_a_change_of_text_rebuilds_bm25(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rebuilds: list[Path] = []
    rebuild = DuckDBStore.rebuild_fts

    def counted(store: DuckDBStore) -> None:
        rebuilds.append(store.path)
        rebuild(store)

    monkeypatch.setattr(DuckDBStore, "rebuild_fts", counted)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "kettle.txt").write_text("The kettle is in the kitchen. It boils water for tea.")
    db = tmp_path / "shop.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT)")
        con.executemany("INSERT INTO products VALUES (?, ?)", [(1, "kettle"), (2, "lamp")])
    shop = build_connector("sqlite", {"path": str(db), "tables": [{"name": "products"}]}, source="shop")
    kb = make_kb(tmp_path / "kb")
    kb.ingest(notes, source="notes")
    assert kb.sync("shop", shop).published
    assert len(rebuilds) == 1  # the table-only sync's version kept the ingest's index

    with sqlite3.connect(db) as con:
        con.execute("UPDATE products SET name = 'desk lamp' WHERE id = 2")
    changed = kb.sync("shop", shop)
    assert (changed.rows_upserted, changed.published) == (1, True)
    assert len(rebuilds) == 1
    hits = kb.search("kettle kitchen", k=3, mode="bm25")
    assert [h.title for h in hits] == ["kettle"]  # the copied index serves the new version
    assert hits.index_version == changed.version

    (notes / "kettle.txt").write_text("The kettle is on the shelf. It boils water for coffee.")
    kb.ingest(notes, source="notes")
    assert len(rebuilds) == 2
    assert [h.title for h in kb.search("shelf coffee", k=3, mode="bm25")] == ["kettle"]
