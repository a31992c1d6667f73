"""Mirror source tables into DuckDB: one schema per source, one table per source table.

Rows arrive as :class:`~connectors.base.RowBatch` pages and are upserted by primary key, inside
the caller's transaction (the one that also commits the page's cursor), so a crash never leaves
rows without the cursor that covers them or the reverse. Deletions come as tombstones
(:class:`~connectors.base.Deletion` with ``table``) or by key diff: the keys a stream saw are
collected in a temporary table and, when the stream ends, mirrored rows with other keys go.

Every name is written in full, ``"<catalog>"."<source>"."<table>"``: the store's DuckDB file is
itself a catalog (``store`` for ``store.duckdb``), so a source named ``store`` would otherwise make
``store.notes`` ambiguous (catalog ``store``, or schema ``store``?).

When a version is published, each changed source's tables are copied into a DuckDB file of its
own (:func:`export_tables`, ``tables/<source>.duckdb`` in the version): callers' SQL runs on
connections that attach only the files of the sources they may read.

Example::

    mirror = TableMirror(con, "shop")
    with transaction(con):
        mirror.upsert(batch)
    mirror.mark_seen("orders", [(1,), (2,)])
    gone = mirror.delete_unseen("orders")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from connectors.base import Column, RowBatch
from grounded.errors import FatalConnectorError
from indexes.arrow_scan import arrow_view

__all__ = ["TableMirror", "export_tables", "quote_ident"]


def quote_ident(name: str) -> str:
    """A DuckDB identifier, quoted so any name (spaces, capitals, quotes) is safe."""
    return '"' + name.replace('"', '""') + '"'


class TableMirror:
    """The mirrored tables of one source in one DuckDB database, as one sync writes them (a new
    sync takes a new mirror: the tables it creates are the ones that need no key diff)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str) -> None:
        self.con = con
        self.source = source
        self.catalog = _current_database(con)
        self._ensured: dict[str, tuple[tuple[Column, ...], tuple[str, ...]]] = {}
        self._seen: set[str] = set()
        self._seen_ready: set[str] = set()  # tables whose temporary key table exists
        self._created: set[str] = set()
        """Tables this mirror created: they hold only rows read since, so no key diff applies."""
        self.changed = False
        """Whether this mirror created, wrote, deleted or dropped anything (its export is stale)."""

    @property
    def schema(self) -> str:
        """The source's schema, catalog-qualified (see the module docstring)."""
        return f"{quote_ident(self.catalog)}.{quote_ident(self.source)}"

    def qualified(self, table: str) -> str:
        return f"{self.schema}.{quote_ident(table)}"

    def _seen_table(self, table: str) -> str:
        return quote_ident(f"_seen_{self.source}_{table}")

    # -- schema ---------------------------------------------------------------------------

    def ensure_table(self, table: str, columns: Sequence[Column], primary_key: Sequence[str]) -> None:
        """Create ``<source>.<table>`` or check that the existing one has these columns."""
        cols, pk = tuple(columns), tuple(primary_key)
        if self._ensured.get(table) == (cols, pk):
            return
        if not pk:
            raise FatalConnectorError(
                f"source {self.source!r}: table {table!r} has no primary key; mirroring upserts by key, "
                "so set primary_key for this table in the source's config"
            )
        names = [c.name for c in cols]
        missing = [k for k in pk if k not in names]
        if missing:
            raise FatalConnectorError(
                f"source {self.source!r}: primary key column(s) {missing} of table {table!r} are not among "
                f"its columns {names}; fix primary_key in the source's config"
            )
        existing = self.columns(table)
        if existing is None:
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            defs = ", ".join(f"{quote_ident(c.name)} {c.type}" for c in cols)
            keys = ", ".join(quote_ident(k) for k in pk)
            self.changed = True
            try:
                self.con.execute(f"CREATE TABLE {self.qualified(table)} ({defs}, PRIMARY KEY ({keys}))")
            except duckdb.Error as exc:
                raise FatalConnectorError(
                    f"source {self.source!r}: cannot create mirror table {table!r} ({exc})"
                ) from exc
            self._created.add(table)
        else:
            wanted = [(c.name, _normal_type(c.type)) for c in cols]
            if existing != wanted:
                raise FatalConnectorError(
                    f"source {self.source!r}: table {table!r} changed shape since the last sync (mirror has "
                    f"{existing}, source now has {wanted}); rebuild it: `grounded sync {self.source} --full`"
                )
        self._ensured[table] = (cols, pk)

    def columns(self, table: str) -> list[tuple[str, str]] | None:
        """``[(name, type)]`` of the mirrored table, or ``None`` when it does not exist."""
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = ? AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [self.catalog, self.source, table],
        ).fetchall()
        return [(str(n), _normal_type(str(t))) for n, t in rows] or None

    def primary_key(self, table: str) -> list[str]:
        if table in self._ensured:
            return list(self._ensured[table][1])
        row = self.con.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE database_name = ? AND schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [self.catalog, self.source, table],
        ).fetchone()
        return list(row[0]) if row else []

    def tables(self) -> list[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? ORDER BY 1",
            [self.catalog, self.source],
        ).fetchall()
        return [str(r[0]) for r in rows]

    def drop_all(self, *, keep_schema: bool = True) -> None:
        """Remove every mirrored table of this source (a full rebuild, or a removed source).

        Tables are dropped one by one and the schema kept: DuckDB 1.4 cannot commit a table
        created in a schema that was dropped and re-created on the same connection.
        """
        for table in self.tables():
            self.con.execute(f"DROP TABLE IF EXISTS {self.qualified(table)}")
            self.changed = True
        if not keep_schema:
            self.con.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        self._ensured.clear()
        self._seen_ready.clear()

    # -- rows -----------------------------------------------------------------------------

    def upsert(self, batch: RowBatch) -> int:
        """Insert or replace ``batch.rows`` by primary key; returns how many rows were new or changed."""
        self.ensure_table(batch.table, batch.columns, batch.primary_key)
        if not batch.rows:
            return 0
        names = [c.name for c in batch.columns]
        key_idx = [names.index(k) for k in batch.primary_key]
        rows = batch.rows
        if len(key_idx) == 1:
            if len({r[key_idx[0]] for r in rows}) != len(rows):
                rows = _last_per_key(rows, key_idx)
        else:
            rows = _last_per_key(rows, key_idx)
        data = _arrow(names, rows, [c.type for c in batch.columns])
        view = "_grounded_rows"
        target = self.qualified(batch.table)
        select = ", ".join(f"{quote_ident(c.name)}::{c.type} AS {quote_ident(c.name)}" for c in batch.columns)
        match = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in batch.primary_key)
        source_rows = f"(SELECT {select} FROM {view}) s"
        try:
            # Each statement reads the rows once, through its own view (indexes.arrow_scan).
            with arrow_view(self.con, view, data):
                existing = self.con.execute(f"SELECT count(*) FROM {target} t JOIN {source_rows} ON {match}").fetchone()
            if existing and existing[0]:
                # Only rows that are new or differ are written: re-reading an unchanged table
                # (a full scan) changes nothing and publishes nothing.
                differs = " OR ".join(
                    f"t.{quote_ident(c.name)} IS DISTINCT FROM s.{quote_ident(c.name)}" for c in batch.columns
                )
                first_key = quote_ident(batch.primary_key[0])
                with arrow_view(self.con, view, data):
                    written = self.con.execute(
                        f"INSERT OR REPLACE INTO {target} SELECT s.* FROM {source_rows} LEFT JOIN {target} t "
                        f"ON {match} WHERE t.{first_key} IS NULL OR {differs} RETURNING 1"
                    ).fetchall()
                count = len(written)
            else:
                # A plain INSERT is a third faster than INSERT OR REPLACE; most pages hold only new keys.
                with arrow_view(self.con, view, data):
                    self.con.execute(f"INSERT INTO {target} SELECT {select} FROM {view}")
                count = len(rows)
        except duckdb.Error as exc:
            raise FatalConnectorError(
                f"source {self.source!r}: rows of table {batch.table!r} do not fit its mirror ({exc})"
            ) from exc
        self.changed = self.changed or count > 0
        if batch.table in self._seen:
            self.mark_seen(batch.table, [tuple(r[i] for i in key_idx) for r in rows])
        return count

    def delete(self, table: str, keys: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Delete rows by primary key (tombstones); returns the keys that were present."""
        if not keys or self.columns(table) is None:
            return []
        pk = self.primary_key(table)
        match = " AND ".join(f"t.{quote_ident(k)} = d.{quote_ident(k)}" for k in pk)
        cols = ", ".join(quote_ident(k) for k in pk)
        with arrow_view(self.con, "_grounded_keys", _arrow(pk, [tuple(k) for k in keys])) as view:
            rows = self.con.execute(
                f"DELETE FROM {self.qualified(table)} t USING {view} d WHERE {match} RETURNING {cols}"
            ).fetchall()
        self.changed = self.changed or bool(rows)
        return [tuple(r) for r in rows]

    def track_seen(self, table: str) -> None:
        """Start collecting the keys ``table``'s stream delivers, for :meth:`delete_unseen`."""
        self._seen.add(table)
        self._seen_ready.discard(table)
        self.con.execute(f"DROP TABLE IF EXISTS {self._seen_table(table)}")

    def mark_seen(self, table: str, keys: Sequence[tuple[Any, ...]]) -> None:
        """Record live keys of ``table`` (from a full scan or :class:`~connectors.base.LiveKeys`)."""
        if table not in self._seen or not keys or not self._ensure_seen_table(table):
            return
        pk = self.primary_key(table)
        cols = ", ".join(quote_ident(k) for k in pk)
        with arrow_view(self.con, "_grounded_seen", _arrow(pk, [tuple(k) for k in keys])) as view:
            self.con.execute(f"INSERT INTO {self._seen_table(table)} SELECT {cols} FROM {view}")

    def mark_live(self, table: str, keys: Sequence[tuple[Any, ...]]) -> None:
        """Live keys from an incremental stream: the first batch starts the key diff.

        Ignored for a table this mirror created (a first sync, or one after ``--full``): it holds
        only rows this sync read, so a diff could only catch a row deleted during the read, and
        the next sync's diff catches that one.
        """
        if table in self._created:
            return
        if table not in self._seen:
            self.track_seen(table)
        self.mark_seen(table, keys)

    def _ensure_seen_table(self, table: str) -> bool:
        """Create the temporary key table (typed like the mirror); ``False`` when no mirror exists."""
        if table in self._seen_ready:
            return True
        pk = self.primary_key(table)
        if not pk:
            return False
        cols = ", ".join(quote_ident(k) for k in pk)
        self.con.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {self._seen_table(table)} AS "
            f"SELECT {cols} FROM {self.qualified(table)} LIMIT 0"
        )
        self._seen_ready.add(table)
        return True

    def delete_unseen(self, table: str) -> list[tuple[Any, ...]]:
        """Delete mirrored rows whose keys were not seen since :meth:`track_seen`; returns them."""
        if table not in self._seen:
            return []
        self._seen.discard(table)
        if not self._ensure_seen_table(table):
            return []
        pk = self.primary_key(table)
        cols = ", ".join(quote_ident(k) for k in pk)
        seen = self._seen_table(table)
        match = " AND ".join(f"s.{quote_ident(k)} = m.{quote_ident(k)}" for k in pk)
        rows = self.con.execute(
            f"DELETE FROM {self.qualified(table)} AS m WHERE NOT EXISTS "
            f"(SELECT 1 FROM {seen} AS s WHERE {match}) RETURNING {cols}"
        ).fetchall()
        self.con.execute(f"DROP TABLE IF EXISTS {seen}")
        self._seen_ready.discard(table)
        self.changed = self.changed or bool(rows)
        return [tuple(r) for r in rows]

    def count(self, table: str) -> int:
        row = self.con.execute(f"SELECT count(*) FROM {self.qualified(table)}").fetchone()
        return int(row[0]) if row else 0


def export_tables(con: duckdb.DuckDBPyConnection, source: str, target: Path) -> int:
    """Copy ``source``'s mirrored tables (schema ``source`` of ``con``'s current database) into a
    DuckDB file of their own, ``target``, as ``main.<table>`` with their types and primary keys.

    The file is written beside ``target`` and renamed over it, so a reader never sees half of
    it; a source without tables leaves no file. Returns the number of tables copied.
    """
    tables = [
        str(r[0])
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ? "
            "AND NOT temporary ORDER BY 1",
            [source],
        ).fetchall()
    ]
    if not tables:
        target.unlink(missing_ok=True)
        return 0
    catalog = _current_database(con)
    tmp = target.with_name(f".{target.name}.tmp")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    alias = "_grounded_export"
    con.execute(f"ATTACH '{_sql_text(str(tmp))}' AS {alias}")
    open_transaction = False
    try:
        con.execute("BEGIN TRANSACTION")
        open_transaction = True
        for table in tables:
            columns = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ? ORDER BY column_index",
                [source, table],
            ).fetchall()
            key = con.execute(
                "SELECT constraint_column_names FROM duckdb_constraints() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
                [source, table],
            ).fetchone()
            defs = [f"{quote_ident(str(name))} {type_}" for name, type_ in columns]
            if key and key[0]:
                defs.append(f"PRIMARY KEY ({', '.join(quote_ident(str(k)) for k in key[0])})")
            copy = f"{alias}.main.{quote_ident(table)}"
            con.execute(f"CREATE TABLE {copy} ({', '.join(defs)})")
            origin = f"{quote_ident(catalog)}.{quote_ident(source)}.{quote_ident(table)}"
            con.execute(f"INSERT INTO {copy} SELECT * FROM {origin}")
        con.execute("COMMIT")
        open_transaction = False
        con.execute(f"CHECKPOINT {alias}")
    except BaseException:
        if open_transaction:
            con.execute("ROLLBACK")
        raise
    finally:
        con.execute(f"DETACH {alias}")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return len(tables)


def _current_database(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT current_database()").fetchone()
    return str(row[0]) if row else "main"


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _normal_type(type_: str) -> str:
    aliases = {
        "INT": "INTEGER", "INT4": "INTEGER", "INT8": "BIGINT", "INT2": "SMALLINT", "FLOAT8": "DOUBLE",
        "FLOAT4": "FLOAT", "REAL": "FLOAT", "TEXT": "VARCHAR", "STRING": "VARCHAR", "BOOL": "BOOLEAN",
        "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ", "BYTEA": "BLOB", "NUMERIC": "DECIMAL(18,3)",
    }  # fmt: skip
    upper = " ".join(type_.upper().split()).replace(", ", ",")
    return aliases.get(upper, upper)


def _key_type(batch: RowBatch, key: str) -> str:
    return next(c.type for c in batch.columns if c.name == key)


def _last_per_key(rows: Sequence[tuple[Any, ...]], key_idx: list[int]) -> list[tuple[Any, ...]]:
    """Rows with duplicate keys collapsed to the last one (an upsert cannot hold both)."""
    out: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        out[tuple(row[i] for i in key_idx)] = row
    return list(out.values())


def _arrow(names: Sequence[str], rows: Sequence[tuple[Any, ...]], types: Sequence[str] | None = None) -> pa.Table:
    """Rows as an Arrow table, column by column.

    With the mirror's DuckDB ``types``, columns convert straight to the matching Arrow type,
    several times faster than letting Arrow infer (decimals and timestamps especially).
    """
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    # The rows live for one statement and DuckDB copies them: plain malloc serves them, where
    # pyarrow's default mimalloc pool would keep ~9 MB resident for the rest of the process
    # after its first use (a table sync's peak, measured: 281 vs 272 MB).
    pool = pa.system_memory_pool()
    arrays = []
    for i, values in enumerate(columns):
        arrow_type = _arrow_type(types[i]) if types else None
        try:
            arrays.append(pa.array(values, type=arrow_type, memory_pool=pool))
            continue
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            pass
        try:
            arrays.append(pa.array(values, memory_pool=pool))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # Mixed Python types in one column: hand DuckDB text and let the cast decide.
            text = [None if v is None else str(v) for v in values]
            arrays.append(pa.array(text, type=pa.string(), memory_pool=pool))
    return pa.table(dict(zip(names, arrays, strict=True)))


_ARROW_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(), "INTEGER": pa.int32(), "SMALLINT": pa.int16(), "TINYINT": pa.int8(),
    "UBIGINT": pa.uint64(), "UINTEGER": pa.uint32(), "USMALLINT": pa.uint16(), "UTINYINT": pa.uint8(),
    "DOUBLE": pa.float64(), "FLOAT": pa.float32(), "VARCHAR": pa.string(), "JSON": pa.string(),
    "BOOLEAN": pa.bool_(), "DATE": pa.date32(), "TIMESTAMP": pa.timestamp("us"),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"), "BLOB": pa.binary(),
}  # fmt: skip


def _arrow_type(duckdb_type: str) -> pa.DataType | None:
    normal = _normal_type(duckdb_type)
    if normal in _ARROW_TYPES:
        return _ARROW_TYPES[normal]
    if normal.startswith("DECIMAL(") and normal.endswith(")"):
        precision, scale = (int(x) for x in normal[8:-1].split(","))
        return pa.decimal128(precision, scale)
    return None
