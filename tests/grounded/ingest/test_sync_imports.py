"""A table-only sync loads only what it uses (issue 25, item 4): no model, no answering engine,
and not ``pyarrow.dataset`` (~36 MB resident, which DuckDB imports to scan a registered Arrow table)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import grounded
from connectors.registry import build_connector

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import json, sys
import grounded
from connectors.registry import build_connector
kb = grounded.open({kb!r})
stats = kb.sync("shop", build_connector("sqlite", {{"path": {db!r}, "tables": [{{"name": "products"}}]}}, source="shop"))
heavy = ["torch", "transformers", "sentence_transformers", "onnxruntime", "grounded.answering.engine",
         "grounded.optimize", "grounded.tools.catalog", "httpx", "pyarrow.dataset", "faiss"]
print(json.dumps({{"rows": stats.rows_upserted, "loaded": [m for m in heavy if m in sys.modules]}}))
"""


def test_a_table_sync_imports_no_model_and_no_answering_engine(tmp_path: Path) -> None:
    db = tmp_path / "shop.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT)")
        con.executemany("INSERT INTO products VALUES (?, ?)", [(1, "kettle"), (2, "lamp")])
    script = textwrap.dedent(SCRIPT).format(kb=str(tmp_path / "kb"), db=str(db))
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == {"rows": 2, "loaded": []}


def test_a_table_only_version_has_no_vectors_file_and_reads_as_an_empty_index(tmp_path: Path) -> None:
    db = tmp_path / "shop.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO products VALUES (1, 'kettle')")
    kb = grounded.open(tmp_path / "kb")
    kb.sync("shop", build_connector("sqlite", {"path": str(db), "tables": [{"name": "products"}]}, source="shop"))
    snapshot = kb.snapshot()
    assert not snapshot.version.vectors_path.exists()
    assert (snapshot.vectors.ntotal, snapshot.vectors.dim) == (0, kb.store.embedder.dim)
