"""PostgreSQL connector against the real server: types, incremental sync, deletions, errors, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from dbkit import make_kb, mirror_rows, pg_exec

from connectors.postgres import PostgresConfig, PostgresConnector
from connectors.testing import ConnectorContract
from grounded.errors import FatalConnectorError
from grounded.kb import KnowledgeBase
from grounded.sql.database import ReadOnlyDatabase
from grounded.sql.guard import check_sql

pytestmark = pytest.mark.integration

ITEMS = """
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE items (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    price numeric(10,2),
    tags text[],
    attrs jsonb,
    ref uuid,
    active boolean,
    feeling mood,
    born date,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO items SELECT i, 'item ' || i, i * 1.5, ARRAY['t' || i], jsonb_build_object('n', i),
    md5(i::text)::uuid, i % 2 = 0, 'happy', DATE '2024-01-01' + i,
    TIMESTAMPTZ '2024-01-01 00:00:00+00' + (i || ' minutes')::interval
FROM generate_series(1, 50) i;
"""


def connector(db: dict[str, Any], **table: Any) -> PostgresConnector:
    tables = [{"name": "items", "cursor_column": "updated_at", **table}]
    return PostgresConnector(PostgresConfig(**db, tables=tables, page_size=7))


class TestPostgresContract(ConnectorContract):
    entry_point = "postgres"

    @pytest.fixture
    def connector(self, pg_db: dict[str, Any]) -> PostgresConnector:
        pg_exec(pg_db, ITEMS)
        return connector(pg_db, document={"title": "{name}", "text": "{name} costs {price}"})

    @pytest.fixture
    def failing_connector(self, pg_db: dict[str, Any]) -> PostgresConnector:
        return PostgresConnector(PostgresConfig(**{**pg_db, "user": "no_such_role"}, tables=[{"name": "items"}]))


def test_mirror_keeps_types_and_syncs_only_changes(pg_db: dict[str, Any], kb: KnowledgeBase) -> None:
    pg_exec(pg_db, ITEMS)
    src = connector(pg_db, document={"title": "{name}", "text": "{name} costs {price} ({feeling})"})
    first = kb.sync("shop", src)
    assert (first.rows_upserted, first.documents_added) == (50, 50)
    types = dict(mirror_rows(kb, "SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_schema = 'shop' AND table_name = 'items'"))  # fmt: skip
    assert types == {
        "id": "BIGINT", "name": "VARCHAR", "price": "DECIMAL(10,2)", "tags": "VARCHAR[]", "attrs": "JSON",
        "ref": "UUID", "active": "BOOLEAN", "feeling": "VARCHAR", "born": "DATE", "updated_at": "TIMESTAMP WITH TIME ZONE",
    }  # fmt: skip
    row = mirror_rows(kb, "SELECT name, price::VARCHAR, tags, attrs->>'n', feeling FROM shop.items WHERE id = 3")
    assert row == [("item 3", "4.50", ["t3"], "3", "happy")]

    embedder = kb.embedder
    embedder.embedded.clear()  # type: ignore[attr-defined]
    pg_exec(
        pg_db,
        "UPDATE items SET price = 99, updated_at = now() WHERE id IN (5, 6)",
        "DELETE FROM items WHERE id IN (7, 8, 9)",
        "INSERT INTO items (id, name) VALUES (51, 'new item')",
    )
    second = kb.sync("shop", src)
    assert (second.rows_upserted, second.rows_deleted) == (3, 3)
    assert (second.documents_added, second.documents_updated, second.documents_deleted) == (1, 2, 3)
    # Only the changed rows' 3 documents: each one chunk and its one evidence sentence ("title: text").
    assert len(embedder.embedded) == 6  # type: ignore[attr-defined]
    assert mirror_rows(kb, "SELECT count(*), sum(id) FROM shop.items") == [(48, sum(range(1, 52)) - 24)]
    assert mirror_rows(kb, "SELECT price FROM shop.items WHERE id = 5")[0][0] == 99
    third = kb.sync("shop", src)
    assert (third.rows_upserted, third.rows_deleted, third.published) == (0, 0, False)


def test_full_scan_table_deletes_by_key_diff(pg_db: dict[str, Any], kb: KnowledgeBase) -> None:
    pg_exec(pg_db, "CREATE TABLE tags (a int, b text, label text, PRIMARY KEY (a, b))",
            "INSERT INTO tags VALUES (1, 'x', 'one'), (2, 'y', 'two'), (3, 'z', 'three')")  # fmt: skip
    src = PostgresConnector(PostgresConfig(**pg_db, tables=[{"name": "public.tags"}]))
    kb.sync("t", src)
    unchanged = kb.sync("t", src)
    assert (unchanged.rows_upserted, unchanged.published) == (0, False)  # a full re-read that changes nothing
    pg_exec(pg_db, "DELETE FROM tags WHERE a = 2")
    stats = kb.sync("t", src)
    assert (stats.rows_upserted, stats.rows_deleted) == (0, 1)
    assert mirror_rows(kb, "SELECT a, b FROM t.tags ORDER BY a") == [(1, "x"), (3, "z")]


def test_a_first_incremental_read_lists_no_live_keys(pg_db: dict[str, Any], kb: KnowledgeBase) -> None:
    """Issue 25, item 4: a read from no cursor delivers every row, so it skips the query of all keys;
    a read that resumes after a cursor lists them, and the diff deletes rows gone meanwhile."""
    from connectors.base import LiveKeys

    pg_exec(pg_db, ITEMS)
    src = connector(pg_db)
    first = [r for page in src.read("items", None) for r in page.records]
    assert not any(isinstance(r, LiveKeys) for r in first)
    assert kb.sync("shop", src).rows_upserted == 50
    pg_exec(pg_db, "DELETE FROM items WHERE id IN (7, 8)")
    cursor = kb.store.snapshot().store.get_cursor("shop", "items")
    resumed = [r for page in src.read("items", cursor) for r in page.records]
    assert sum(len(r.keys) for r in resumed if isinstance(r, LiveKeys)) == 48
    assert kb.sync("shop", src).rows_deleted == 2


def test_a_table_switched_to_incremental_still_deletes_gone_rows(pg_db: dict[str, Any], kb: KnowledgeBase) -> None:
    """A full-scan table that gets a cursor column is read from no cursor once: that read lists no
    live keys, so the runner diffs the mirror against the rows it delivered instead."""
    pg_exec(pg_db, ITEMS)
    assert kb.sync("shop", PostgresConnector(PostgresConfig(**pg_db, tables=[{"name": "items"}]))).rows_upserted == 50
    pg_exec(pg_db, "DELETE FROM items WHERE id IN (7, 8, 9)")
    switched = kb.sync("shop", connector(pg_db))
    assert (switched.rows_upserted, switched.rows_deleted) == (0, 3)
    assert mirror_rows(kb, "SELECT count(*) FROM shop.items") == [(47,)]


def test_unmappable_type_names_column_and_fix(pg_db: dict[str, Any], kb: KnowledgeBase) -> None:
    pg_exec(pg_db, "CREATE TABLE places (id int PRIMARY KEY, name text, spot point)",
            "INSERT INTO places VALUES (1, 'home', point(1, 2))")  # fmt: skip
    src = PostgresConnector(PostgresConfig(**pg_db, tables=[{"name": "places"}]))
    with pytest.raises(FatalConnectorError, match=r"column 'spot' .* type 'point'.*exclude_columns"):
        src.check()
    ok = PostgresConnector(PostgresConfig(**pg_db, tables=[{"name": "places", "exclude_columns": ["spot"]}]))
    assert kb.sync("geo", ok).rows_upserted == 1


def test_missing_table_and_bad_connection_are_clear(pg_db: dict[str, Any]) -> None:
    missing = PostgresConnector(PostgresConfig(**pg_db, tables=[{"name": "nope"}]))
    with pytest.raises(FatalConnectorError, match=r"table 'nope' does not exist in postgresql://"):
        missing.check()
    role = PostgresConnector(PostgresConfig(**{**pg_db, "user": "ghost"}, tables=[{"name": "x"}]))
    with pytest.raises(FatalConnectorError, match=r"role \"ghost\" does not exist.*fix user"):
        role.check()
    host = PostgresConnector(PostgresConfig(**{**pg_db, "host": "no-such-host.invalid"}, tables=[{"name": "x"}]))
    with pytest.raises(FatalConnectorError, match=r"unknown host 'no-such-host.invalid'"):
        host.check()
    secret = PostgresConnector(PostgresConfig(**pg_db, password_env="GROUNDED_TEST_UNSET_PW", tables=[{"name": "x"}]))
    with pytest.raises(FatalConnectorError, match="GROUNDED_TEST_UNSET_PW is not set"):
        secret.check()


SYNC_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from dbkit import make_kb
from connectors.postgres import PostgresConfig, PostgresConnector
kb = make_kb({kb!r})
src = PostgresConnector(PostgresConfig(**{db!r}, tables=[{{"name": "big", "cursor_column": "seq"}}], page_size=500))
class Bar:
    done = 0
    def update(self, n):
        self.done += n
        print(self.done, flush=True)
        time.sleep(0.02)
    def close(self): pass
kb.sync("big", src, progress=lambda total, desc: Bar())
print("finished", flush=True)
"""


def test_sigkill_mid_table_then_resync_has_every_row_once(pg_db: dict[str, Any], tmp_path: Path) -> None:
    pg_exec(pg_db, "CREATE TABLE big (id int PRIMARY KEY, seq bigint NOT NULL, body text)",
            "INSERT INTO big SELECT i, i, repeat('x', 50) FROM generate_series(1, 20000) i")  # fmt: skip
    kb_path = tmp_path / "kb"
    kb = make_kb(kb_path)
    src = PostgresConnector(PostgresConfig(**pg_db, tables=[{"name": "big", "cursor_column": "seq"}]))
    kb.sync("big", src)  # a last good version with the first 20,000 rows
    pg_exec(pg_db, "INSERT INTO big SELECT i, i, repeat('y', 50) FROM generate_series(20001, 60000) i",
            "UPDATE big SET seq = 100000 + id, body = 'changed' WHERE id % 1000 = 0")  # fmt: skip
    script = SYNC_SCRIPT.format(tests=str(Path(__file__).parent), kb=str(kb_path), db=pg_db)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if line.strip().isdigit() and int(line) >= 10_000:
            break
        assert time.monotonic() < deadline, "the sync subprocess made no progress"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    # The killed sync published nothing: readers still see the last good version.
    assert mirror_rows(kb, "SELECT count(*) FROM big.big") == [(20000,)]
    stats = make_kb(kb_path).sync("big", src)
    assert stats.published
    total, distinct, changed = mirror_rows(
        kb, "SELECT count(*), count(DISTINCT id), count(*) FILTER (body = 'changed') FROM big.big"
    )[0]
    assert (total, distinct, changed) == (60000, 60000, 60)
    assert json.dumps(mirror_rows(kb, "SELECT min(id), max(id), sum(id) FROM big.big")) == json.dumps(
        [[1, 60000, 60000 * 60001 // 2]]
    )


def test_full_rebuild_after_a_shape_change(pg_db: dict[str, Any], kb: KnowledgeBase) -> None:
    pg_exec(pg_db, ITEMS)
    src = connector(pg_db, document={"title": "{name}", "text": "{name}"})
    kb.sync("shop", src)
    pg_exec(pg_db, "ALTER TABLE items ADD COLUMN color text", "DELETE FROM items WHERE id > 40")
    with pytest.raises(FatalConnectorError, match=r"changed shape since the last sync.*--full"):
        kb.sync("shop", src)
    stats = kb.sync("shop", src, full=True)
    assert stats.rows_upserted == 40
    assert stats.documents_deleted == 10
    assert mirror_rows(kb, "SELECT count(*), count(color) FROM shop.items") == [(40, 0)]


AWKWARD = [
    'CREATE TABLE "Order Lines" ("Id" int PRIMARY KEY, "Order" int, "select" text, "user" text, "Unit Price" numeric(8,2))',
    """INSERT INTO "Order Lines" VALUES (1, 10, 'kettle', 'ann', 24.50), (2, 10, 'lamp', 'ann', 15.00),
       (3, 11, 'sofa', 'bob', 899.00), (4, 12, 'mug', 'cy', 6.50)""",
    'CREATE TABLE "user" (id int PRIMARY KEY, "Name" text, "group" text, "Order" int)',
    """INSERT INTO "user" VALUES (1, 'Ann Lee', 'gold', 10), (2, 'Bob Ray', 'silver', 11), (3, 'Cy Dunn', 'gold', 12)""",
]


@pytest.fixture
def awkward_db(pg_db: dict[str, Any], kb: KnowledgeBase) -> ReadOnlyDatabase:
    """A new user's own schema: a table name with a space, reserved-word and mixed-case column names."""
    pg_exec(pg_db, *AWKWARD)
    tables = [{"name": "public.Order Lines"}, {"name": "public.user"}]
    kb.sync("shop", PostgresConnector(PostgresConfig(**pg_db, tables=tables)))
    return ReadOnlyDatabase.for_version(kb.store.versions.current().store_path)  # type: ignore[union-attr]


def test_awkward_names_are_written_quoted_in_what_a_model_reads(awkward_db: ReadOnlyDatabase) -> None:
    """Issue 25, item 3: prompts showed ``shop.Order Lines(Order, select, ...)``, names a model copies
    into SQL that does not parse; they are written as the SQL must write them (plain ones bare)."""
    from dbkit import HashEmbedder

    from grounded.sql.prompts import compact_schema
    from grounded.sql.schema_link import SchemaLinker
    from grounded.sql.writer import SqlWriter

    lines, user = awkward_db.tables()
    assert compact_schema([user]) == 'shop.user(id, "Name", "group", "Order")'
    prompt = SchemaLinker(awkward_db, HashEmbedder()).describe_columns(lines)
    assert prompt.splitlines()[:4] == [
        'CREATE TABLE shop."Order Lines" (',
        '  "Id" INTEGER, -- e.g. 1, 2, 3',
        '  "Order" INTEGER, -- e.g. 10, 11, 12',
        "  \"select\" VARCHAR, -- e.g. 'kettle', 'lamp', 'sofa'",
    ]
    linker = SchemaLinker(awkward_db, HashEmbedder())
    question = "What is the unit price of the kettle?"
    link = next(k for k in linker.link(question) if k.table == lines)
    chat = SqlWriter(None, linker, db=awkward_db).messages(question, [link], linker.values.match(question))
    assert '- \'kettle\': "Order Lines"."select"' in chat[-1].content
    # What the prompt shows runs as written.
    sql = 'SELECT "Order Lines"."Unit Price" FROM shop."Order Lines" WHERE "Order Lines"."select" = \'kettle\''
    assert awkward_db.execute(check_sql(sql, awkward_db.tables()).sql, timeout_s=5, row_limit=5).rows == ((24.5,),)


def test_templates_and_rewrites_quote_reserved_column_names(awkward_db: ReadOnlyDatabase) -> None:
    """A template over ``group`` or a table named ``Order Lines`` was written bare, failed and was
    silently skipped; a value moved to column ``select`` made a query that did not parse."""
    from grounded.sql.candidates import rewrites
    from grounded.sql.templates import template_queries
    from grounded.sql.values import ValueIndex

    made = [m.sql for m in islice(template_queries(awkward_db, "shop", seed=0), 12)]
    assert 'SELECT "group", count(*) FROM shop.user GROUP BY "group"' in made
    assert any('FROM shop."Order Lines"' in sql for sql in made)
    wrong_column = 'SELECT "Order Lines"."Unit Price" FROM shop."Order Lines" WHERE "Order Lines".user = \'kettle\''
    [moved] = rewrites(wrong_column, awkward_db.tables(), ValueIndex.build(awkward_db))
    assert moved.sql.endswith('WHERE "Order Lines"."select" = \'kettle\'')
    rows = awkward_db.execute(check_sql(moved.sql, awkward_db.tables()).sql, timeout_s=5, row_limit=5).rows
    assert rows == ((24.5,),)
