"""``grounded sql``: read-only SQL over the mirrored tables, as the configured caller; and
``--no-progress`` printing no bar at all, a model's loading bar included."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.cli.test_cli import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def table_kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import grounded
    from connectors.registry import build_connector

    root = tmp_path_factory.mktemp("cli-sql")
    con = sqlite3.connect(root / "shop.sqlite")
    con.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, room TEXT)")
    con.executemany("INSERT INTO products VALUES (?, ?, ?)", [(1, "kettle", "kitchen"), (2, "lamp", "living")])
    con.commit()
    con.close()
    kb = grounded.open(root / "kb")
    kb.sync(
        "shop",
        build_connector("sqlite", {"path": str(root / "shop.sqlite"), "tables": [{"name": "products"}]}, source="shop"),
    )
    return root / "kb"


def test_sql_prints_rows_and_json(table_kb: Path) -> None:
    result = run("sql", "SELECT name FROM shop.products WHERE room = 'kitchen'", "--kb", str(table_kb), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"columns": ["name"], "rows": [["kettle"]], "truncated": False}
    table = run("sql", "SELECT count(*) AS n FROM shop.products", "--kb", str(table_kb))
    assert table.returncode == 0, table.stderr
    assert "1 row" in table.stdout
    assert " 2 " in table.stdout


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("DROP TABLE shop.products", "only SELECT"),
        ("SELECT * FROM documents", "is not a mirrored table; available: shop.products"),
        ("SELECT nme FROM shop.products", 'Referenced column "nme" not found'),
    ],
)
def test_sql_errors_are_one_clear_line(table_kb: Path, query: str, message: str) -> None:
    result = run("sql", query, "--kb", str(table_kb))
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_sql_with_keys_needs_a_key(table_kb: Path, tmp_path: Path) -> None:
    import shutil

    from grounded.ops.keys import KEYS_FILE, KeyStore

    copy = tmp_path / "kb"
    shutil.copytree(table_kb, copy)
    keys = KeyStore(copy / KEYS_FILE)
    outsider = keys.create("outsider", groups=["nobody"])[0]
    admin = keys.create("ops", admin=True)[0]
    refused = run("sql", "SELECT 1 AS one FROM shop.products", "--kb", str(copy))
    assert refused.returncode == 2
    assert "GROUNDED_API_KEY" in refused.stderr
    hidden = run("sql", "SELECT name FROM shop.products", "--kb", str(copy), "--key", outsider)
    assert hidden.returncode == 2  # the caller's connection has no table of a source it may not read
    assert "available: none" in hidden.stderr
    allowed = run("sql", "SELECT name FROM shop.products ORDER BY id", "--kb", str(copy), "--key", admin, "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["rows"] == [["kettle"], ["lamp"]]


def test_no_progress_prints_no_bar(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("The kettle is in the kitchen. It boils water.")
    result = run("ingest", str(tmp_path / "notes"), "--kb", str(tmp_path / "kb"), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "%|" not in result.stderr, result.stderr  # neither ours nor the model's loading bar
