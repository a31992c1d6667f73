"""Segmented versions: a version reads the documents of several versions' stores as one.

A version's ``store.duckdb`` holds the documents, chunks and sentences *it* wrote (its own
segment), its BM25 index over them, and the state every version carries: ``meta``,
``sync_state``, ``sources``, mirrored tables, and ``dead(segment, doc_id)``, the documents of
older segments that it (or a version before it) replaced or deleted. ``meta.segments`` lists
the segments it reads, oldest first (see :mod:`indexes.versions`).

The rows a version sees are the union of its segments' rows minus the dead ones. Both sides
name that union as plain tables, so every query written for one file reads a segmented version
unchanged:

- a reader opens an in-memory database, attaches each segment read-only and creates views
  ``documents``, ``chunks``, ``sentences`` (and views of the state tables) in it;
- a writer opens the new version's file, attaches the older segments read-only and creates the
  views in an attached in-memory catalog ``live``, so it writes its own tables and reads the
  union (one transaction writes one database: its own).

Compaction (:func:`absorb`) copies the live rows of older segments into the writer's own tables,
so their files can go once no kept version reads them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import duckdb

from indexes.versions import STORE_FILE, segment_dir

__all__ = [
    "DEAD_SQL",
    "LIVE",
    "absorb",
    "attach_segments",
    "catalog",
    "copy_state",
    "create_live_views",
    "dead_chunk_sql",
    "has_table",
    "live_union",
]

DEAD_SQL = (
    "CREATE TABLE IF NOT EXISTS dead (segment VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, PRIMARY KEY (segment, doc_id))"
)
LIVE = "live"
"""The writer's in-memory catalog holding the union views."""
DOC_TABLES = ("documents", "chunks", "sentences")
STATE_TABLES = ("meta", "sync_state", "sources", "dead")


def catalog(sid: str) -> str:
    """The catalog name a segment is attached under."""
    return f"seg_{sid}"


def _text(value: str) -> str:
    return value.replace("'", "''")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def attach_segments(con: duckdb.DuckDBPyConnection, root: Path, sids: Sequence[str]) -> None:
    """Attach each segment's store read-only under :func:`catalog` of its id."""
    for sid in sids:
        path = segment_dir(root, sid) / STORE_FILE
        con.execute(f"ATTACH '{_text(str(path))}' AS {catalog(sid)} (READ_ONLY)")


def has_table(con: duckdb.DuckDBPyConnection, database: str, table: str, schema: str = "main") -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
        [database, schema, table],
    ).fetchone()
    return bool(row and row[0])


def dead_chunk_sql(sid: str, dead: str) -> str:
    """Chunk ids of segment ``sid`` whose documents ``dead`` (a qualified table) marks dead."""
    cat = catalog(sid)
    return (
        f"SELECT c.chunk_id FROM {cat}.main.chunks c JOIN {dead} x "
        f"ON x.segment = '{_text(sid)}' AND x.doc_id = c.doc_id"
    )


def live_union(con: duckdb.DuckDBPyConnection, table: str, sids: Sequence[str], dead: str, own: str | None) -> str:
    """SQL of ``table``'s live rows over segments ``sids`` (and ``own``, a catalog whose rows are
    all live, or ``None``); ``dead`` is the qualified dead table."""
    parts: list[str] = []
    for sid in sids:
        cat = catalog(sid)
        if not has_table(con, cat, table):
            continue  # a version written before sentences were stored has no sentences table
        where = ""
        if table != "sentences":  # a sentence is reached through its chunk, never on its own
            where = f" WHERE doc_id NOT IN (SELECT doc_id FROM {dead} WHERE segment = '{_text(sid)}')"
        parts.append(f"SELECT * FROM {cat}.main.{table}{where}")
    if own is not None and has_table(con, own, table):
        parts.append(f"SELECT * FROM {own}.main.{table}")
    if not parts:
        return f"SELECT * FROM {catalog(sids[0]) if sids else own}.main.chunks WHERE false"
    return " UNION ALL ".join(parts)


def create_live_views(
    con: duckdb.DuckDBPyConnection, target: str, sids: Sequence[str], dead: str, own: str | None
) -> None:
    """(Re)create ``target``.documents/chunks/sentences as the live union (see :func:`live_union`)."""
    for table in DOC_TABLES:
        con.execute(f"CREATE OR REPLACE VIEW {target}.main.{table} AS {live_union(con, table, sids, dead, own)}")


def state_views(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Views in the in-memory main database of ``source``'s state tables and mirrored schemas."""
    for table in STATE_TABLES:
        if has_table(con, source, table):
            con.execute(f"CREATE VIEW main.{table} AS SELECT * FROM {source}.main.{table}")
    for schema, table in _mirrored(con, source):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
        con.execute(
            f"CREATE VIEW {_ident(schema)}.{_ident(table)} AS SELECT * FROM {source}.{_ident(schema)}.{_ident(table)}"
        )


def _mirrored(con: duckdb.DuckDBPyConnection, database: str) -> list[tuple[str, str]]:
    rows = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name <> 'main' "
        "AND NOT starts_with(schema_name, 'fts_') AND NOT temporary ORDER BY 1, 2",
        [database],
    ).fetchall()
    return [(str(s), str(t)) for s, t in rows]


def copy_state(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Copy the state tables and mirrored tables of catalog ``source`` into ``con``'s own
    database (new and empty but for the schema): what every version carries, however little
    of it changed. The cost is the state's size, not the knowledge base's."""
    own = str(con.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]
    for table in ("sync_state", "sources", "dead"):
        if has_table(con, source, table):
            con.execute(f"INSERT INTO {table} SELECT * FROM {source}.main.{table}")
    con.execute(f"INSERT OR REPLACE INTO meta SELECT * FROM {source}.main.meta WHERE key <> 'schema_version'")
    for schema, table in _mirrored(con, source):
        columns = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? "
            "AND schema_name = ? AND table_name = ? ORDER BY column_index",
            [source, schema, table],
        ).fetchall()
        key = con.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE database_name = ? "
            "AND schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [source, schema, table],
        ).fetchone()
        defs = [f"{_ident(str(name))} {type_}" for name, type_ in columns]
        if key and key[0]:
            defs.append(f"PRIMARY KEY ({', '.join(_ident(str(k)) for k in key[0])})")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {own}.{_ident(schema)}")
        con.execute(f"CREATE TABLE {own}.{_ident(schema)}.{_ident(table)} ({', '.join(defs)})")
        con.execute(
            f"INSERT INTO {own}.{_ident(schema)}.{_ident(table)} SELECT * FROM {source}.{_ident(schema)}.{_ident(table)}"
        )


def absorb(con: duckdb.DuckDBPyConnection, sid: str) -> int:
    """Copy segment ``sid``'s live documents, chunks and sentences into ``con``'s own tables and
    forget its dead rows; returns the chunks copied. Rebuild the live views afterwards."""
    cat = catalog(sid)
    alive = f"doc_id NOT IN (SELECT doc_id FROM dead WHERE segment = '{_text(sid)}')"
    con.execute(f"INSERT INTO documents SELECT * FROM {cat}.main.documents WHERE {alive}")
    row = con.execute(f"INSERT INTO chunks SELECT * FROM {cat}.main.chunks WHERE {alive}").fetchone()
    if has_table(con, cat, "sentences"):
        con.execute(
            f"INSERT OR IGNORE INTO sentences SELECT * FROM {cat}.main.sentences "
            f"WHERE chunk_id IN (SELECT chunk_id FROM {LIVE}.main.chunks)"
        )
    con.execute("DELETE FROM dead WHERE segment = ?", [sid])
    return int(row[0]) if row else 0


def segment_list(value: str | None) -> list[str] | None:
    """``meta.segments`` parsed (``None``: a version from before segments)."""
    return None if value is None else [str(s) for s in json.loads(value)]
