"""What every SQL database connector shares: table config, type mapping, paging, cursors, documents.

A dialect (PostgreSQL, MySQL, SQLite, DuckDB files) subclasses :class:`SQLConnector` and supplies
a DB-API connection, a server-side (streaming) cursor, its catalog queries and its type map. The
rest is here:

- each configured table is one stream, mirrored into DuckDB as ``<source>.<table>``;
- rows stream through a server-side cursor, ``page_size`` rows per page, so memory stays flat;
- with a ``cursor_column`` the stream is incremental: rows come ordered by
  ``(cursor_column, primary key)`` and each page carries the last row's values, so the next sync
  resumes exactly after it (keyset pagination: no gaps, no repeats, even with equal timestamps);
  deleted rows are found by a key diff (the live keys are read after the changed rows);
- without one, every sync reads the whole table and rows missing from it are deleted;
- optional templates render each row into a document for retrieval;
- a full read divides into key ranges of about equal row counts (:meth:`SQLConnector.splits`),
  which the Ray engine reads in parallel tasks.

Example config (TOML)::

    [[sources.shop.params.tables]]
    name = "public.products"
    cursor_column = "updated_at"
    document = { title = "{name}", text = "{name}: {description}" }
"""

from __future__ import annotations

import base64
import os
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from itertools import pairwise
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.base import (
    Column,
    Cursor,
    Document,
    JSONValue,
    LiveKeys,
    Page,
    Record,
    RowBatch,
    Split,
    StreamSpec,
    row_document_key,
)
from grounded.errors import ConnectorError, FatalConnectorError

__all__ = [
    "DocumentTemplate",
    "SQLConfig",
    "SQLConnector",
    "TableConfig",
    "decode_value",
    "encode_value",
    "secret_from_env",
]


class DocumentTemplate(BaseModel):
    """How a row becomes a document: Python format strings over the row's columns."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    title: str = Field("", description="Title template, e.g. '{name}'.")
    text: str | None = Field(None, description="Text template; default: 'column: value' lines of `columns`.")
    columns: list[str] = Field(default_factory=list, description="Columns listed in the text when no template.")
    uri: str = Field("", description="URI template, e.g. 'https://shop.example/p/{id}'.")

    def fields(self) -> set[str]:
        names: set[str] = set(self.columns)
        for template in (self.title, self.text or "", self.uri):
            names.update(f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(template) if f)
        return names


class TableConfig(BaseModel):
    """One table (or view) to mirror."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    name: str = Field(description="Table in the source, optionally schema-qualified: 'public.orders'.")
    mirror_as: str | None = Field(None, description="Table name in the mirror (default: name without schema).")
    columns: list[str] | None = Field(None, description="Columns to read (default: all).")
    exclude_columns: list[str] = Field(default_factory=list, description="Columns to leave out.")
    primary_key: list[str] | None = Field(None, description="Key columns (default: the table's primary key).")
    cursor_column: str | None = Field(None, description="Monotonic column (updated_at) for incremental sync.")
    deletes: Literal["key_diff", "none"] = Field(
        "key_diff", description="How an incremental table finds deleted rows: compare keys, or not at all."
    )
    document: DocumentTemplate | None = Field(None, description="Render rows into documents for retrieval.")

    @property
    def stream(self) -> str:
        return self.mirror_as or self.name.split(".")[-1]


class SQLConfig(BaseModel):
    """Settings every SQL connector has."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    tables: list[TableConfig] = Field(description="Tables to mirror.")
    page_size: int = Field(5000, ge=1, le=1_000_000, description="Rows per page (one transaction each).")
    acl: list[str] = Field(default_factory=list, description="Groups allowed to read rendered documents.")

    @model_validator(mode="after")
    def _unique_streams(self) -> SQLConfig:
        names = [t.stream for t in self.tables]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tables {dupes} would mirror under the same name; set mirror_as on one of them")
        return self


def secret_from_env(variable: str | None, what: str) -> str | None:
    """A secret read from the environment variable the config names (never from the config)."""
    if not variable:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise FatalConnectorError(f"{what}: environment variable {variable} is not set; export it or fix the name")
    return value


# -- cursor values: JSON with tags so datetimes and decimals survive the round trip ------------


def encode_value(value: Any) -> JSONValue:
    """A column value as JSON for a cursor (tagged so :func:`decode_value` restores the type)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    return str(value)


def decode_value(value: JSONValue) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        tag, raw = next(iter(value.items()))
        if isinstance(raw, str):
            decoders: dict[str, Callable[[str], Any]] = {
                "$datetime": datetime.fromisoformat,
                "$date": date.fromisoformat,
                "$time": time.fromisoformat,
                "$decimal": Decimal,
                "$bytes": base64.b64decode,
            }
            if tag in decoders:
                return decoders[tag](raw)
    return value


class SQLConnector(ABC):
    """Base class of the database connectors; see the module docstring."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    placeholder: ClassVar[str] = "%s"
    """The driver's parameter marker."""

    def __init__(self, config: SQLConfig) -> None:
        self.config = config
        self._tables = {t.stream: t for t in config.tables}

    # -- what a dialect supplies ------------------------------------------------------------

    @abstractmethod
    def connect(self) -> Any:
        """A DB-API connection; driver errors become :class:`ConnectorError`."""

    @abstractmethod
    def describe(self, conn: Any, table: str) -> list[tuple[str, str]]:
        """``[(column, source type)]`` in table order; an empty list when the table is missing."""

    @abstractmethod
    def primary_key_of(self, conn: Any, table: str) -> list[str]:
        """The table's primary-key columns, in key order (empty when it has none)."""

    @abstractmethod
    def duckdb_type(self, source_type: str) -> str | None:
        """The DuckDB type mirroring ``source_type``; ``None`` when it has no faithful mapping."""

    @abstractmethod
    def stream_rows(self, conn: Any, sql: str, params: Sequence[Any], size: int) -> Iterator[list[tuple[Any, ...]]]:
        """Run ``sql`` through a server-side cursor, yielding lists of at most ``size`` rows."""

    @abstractmethod
    def wrap_error(self, exc: Exception) -> ConnectorError:
        """A driver exception as a fatal or retriable connector error with a helpful message."""

    driver_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def quote(self, ident: str) -> str:
        return '"' + ident.replace('"', '""') + '"'

    def quote_table(self, table: str) -> str:
        return ".".join(self.quote(p) for p in table.split("."))

    def converter(self, source_type: str) -> Callable[[Any], Any] | None:
        """Per-column value conversion before mirroring (e.g. JSON to text); ``None`` for as-is."""
        return None

    def location(self) -> str:
        """Where the data lives, for messages (``host:port/db``, a path); never a secret."""
        return self.name

    # -- the Connector protocol -------------------------------------------------------------

    def check(self) -> None:
        conn = self._connect()
        try:
            for table in self.config.tables:
                self._columns(conn, table)
        finally:
            conn.close()

    def streams(self) -> list[StreamSpec]:
        return [
            StreamSpec(
                name=t.stream,
                kind="table",
                full_scan=t.cursor_column is None,
                primary_key=tuple(t.primary_key or ()),
                cursor_field=t.cursor_column,
                table=t.stream,
            )
            for t in self.config.tables
        ]

    def size_hint(self) -> int | None:
        return None

    def read(self, stream: str, cursor: Cursor | None) -> Iterator[Page]:
        table = self._table(stream)
        conn = self._connect()
        try:
            yield from self._read(conn, table, cursor)
        except self.driver_errors as exc:
            raise self.wrap_error(exc) from exc
        finally:
            conn.close()

    def splits(self, stream: str, parts: int) -> list[Split]:
        """Key ranges of a full read of ``stream`` with about equal row counts, in read order.

        A range is ``(after, upto]`` in the read's order (the cursor column, then the primary
        key): unique, so the ranges are disjoint and, read in order, yield exactly the rows of
        :meth:`read` from no cursor. The boundaries are the rows at every ``count / parts``-th
        place (one ``LIMIT 1 OFFSET`` query each, an index walk where the key is indexed).
        """
        table = self._table(stream)
        conn = self._connect()
        try:
            _, _, pk = self._columns(conn, table)
            order = self._order(table, pk)
            bounds = self._boundaries(conn, table, order, parts)
        except self.driver_errors as exc:
            raise self.wrap_error(exc) from exc
        finally:
            conn.close()
        edges: list[list[JSONValue] | None] = [None, *bounds, None]
        return [Split(stream, i, {"after": lo, "upto": hi}) for i, (lo, hi) in enumerate(pairwise(edges))]

    def read_split(self, split: Split) -> Iterator[Page]:
        """The rows of one key range (and their documents); the first range also declares the
        table's shape, as a full read does."""
        table = self._table(split.stream)
        after, upto = (split.spec.get(k) for k in ("after", "upto"))
        for bound in (after, upto):
            if bound is not None and not isinstance(bound, list):
                raise FatalConnectorError(
                    f"split {split.index} of table {split.stream!r} has a bound that is not a key: {split.spec!r}"
                )
        assert after is None or isinstance(after, list)
        assert upto is None or isinstance(upto, list)
        conn = self._connect()
        try:
            yield from self._read(
                conn,
                table,
                None,
                after=None if after is None else [decode_value(v) for v in after],
                upto=None if upto is None else [decode_value(v) for v in upto],
                declare=split.index == 0,
            )
        except self.driver_errors as exc:
            raise self.wrap_error(exc) from exc
        finally:
            conn.close()

    # -- the shared machinery ---------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            return self.connect()
        except self.driver_errors as exc:
            raise self.wrap_error(exc) from exc

    def _table(self, stream: str) -> TableConfig:
        table = self._tables.get(stream)
        if table is None:
            raise FatalConnectorError(
                f"{self.name} has no stream {stream!r}; configured tables: {sorted(self._tables)}"
            )
        return table

    @staticmethod
    def _order(table: TableConfig, pk: list[str]) -> list[str]:
        """The columns a read is ordered by: the cursor column first, then the primary key."""
        return [table.cursor_column, *pk] if table.cursor_column else list(pk)

    def _boundaries(self, conn: Any, table: TableConfig, order: list[str], parts: int) -> list[list[JSONValue]]:
        """The last key (encoded) of each range but the last, ``parts`` ranges of about equal size."""
        source = self.quote_table(table.name)
        where = f" WHERE {self.quote(table.cursor_column)} IS NOT NULL" if table.cursor_column else ""
        counted = self._one_row(conn, f"SELECT COUNT(*) FROM {source}{where}")
        count = int(counted[0]) if counted else 0
        step = -(-count // max(parts, 1))
        if parts <= 1 or count <= step:
            return []
        columns = ", ".join(self.quote(c) for c in order)
        bounds: list[list[JSONValue]] = []
        for offset in range(step - 1, count - 1, step):
            sql = f"SELECT {columns} FROM {source}{where} ORDER BY {columns} LIMIT 1 OFFSET {int(offset)}"
            row = self._one_row(conn, sql)
            if row is not None:
                bounds.append([encode_value(v) for v in row])
        return bounds

    def _one_row(self, conn: Any, sql: str) -> tuple[Any, ...] | None:
        # Read to the end: an unfinished server-side cursor would block the connection's next query.
        rows = [row for batch in self.stream_rows(conn, sql, [], 1) for row in batch]
        return rows[0] if rows else None

    def _columns(self, conn: Any, table: TableConfig) -> tuple[list[Column], list[str], list[str]]:
        """Mirror columns, source types, and primary key of ``table``, checked against the config."""
        try:
            described = self.describe(conn, table.name)
            pk = table.primary_key or self.primary_key_of(conn, table.name)
        except self.driver_errors as exc:
            raise self.wrap_error(exc) from exc
        if not described:
            raise FatalConnectorError(
                f"table {table.name!r} does not exist in {self.location()} (or is not visible to this user); "
                "fix the table name in the source's config"
            )
        names = [n for n, _ in described]
        wanted = table.columns or names
        unknown = [c for c in dict.fromkeys([*wanted, *table.exclude_columns, *pk]) if c not in names]
        if table.cursor_column and table.cursor_column not in names:
            unknown.append(table.cursor_column)
        if unknown:
            raise FatalConnectorError(
                f"table {table.name!r} in {self.location()} has no column(s) {unknown}; it has {names}"
            )
        if not pk:
            raise FatalConnectorError(
                f"table {table.name!r} in {self.location()} has no primary key; set primary_key for it "
                "in the source's config (mirrored rows are upserted by key)"
            )
        keep = [c for c in wanted if c not in table.exclude_columns]
        for needed in [*pk, *([table.cursor_column] if table.cursor_column else [])]:
            if needed not in keep:
                raise FatalConnectorError(
                    f"table {table.name!r}: column {needed!r} is the key or cursor and cannot be excluded"
                )
        types = dict(described)
        columns: list[Column] = []
        for col in keep:
            mapped = self.duckdb_type(types[col])
            if mapped is None:
                raise FatalConnectorError(
                    f"column {col!r} of table {table.name!r} has type {types[col]!r}, which the DuckDB mirror "
                    f"cannot map; add it to exclude_columns, or mirror a view that casts it to text"
                )
            columns.append(Column(col, mapped))
        if table.document is not None:
            missing = sorted(table.document.fields() - set(keep))
            if missing:
                raise FatalConnectorError(
                    f"table {table.name!r}: document template uses {missing}, which are not read columns {keep}"
                )
        return columns, [types[c] for c in keep], list(pk)

    def _read(
        self,
        conn: Any,
        table: TableConfig,
        cursor: Cursor | None,
        *,
        after: list[Any] | None = None,
        upto: list[Any] | None = None,
        declare: bool = True,
    ) -> Iterator[Page]:
        """Rows after ``cursor`` (or in the key range ``(after, upto]`` of a split), in key order."""
        columns, source_types, pk = self._columns(conn, table)
        names = [c.name for c in columns]
        convert = [(i, f) for i, t in enumerate(source_types) if (f := self.converter(t)) is not None]
        order = self._order(table, pk)
        order_idx = [names.index(c) for c in order]
        pk_idx = [names.index(k) for k in pk]
        sql = f"SELECT {', '.join(self.quote(c) for c in names)} FROM {self.quote_table(table.name)}"
        where: list[str] = []
        params: list[Any] = []
        if table.cursor_column:
            where.append(f"{self.quote(table.cursor_column)} IS NOT NULL")
            resume = (cursor or {}).get("after")
            if isinstance(resume, list) and len(resume) == len(order):
                after = [decode_value(v) for v in resume]
        if after is not None:
            clause, values = self._keyset(order, after)
            where.append(clause)
            params.extend(values)
        if upto is not None:
            clause, values = self._keyset(order, upto)
            where.append(f"NOT {clause}")
            params.extend(values)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + ", ".join(self.quote(c) for c in order)
        spec = StreamSpec(name=table.stream, kind="table", primary_key=tuple(pk))
        last: Cursor | None = cursor
        # An empty batch first declares the table's shape, so a changed schema is caught now,
        # not only when a changed row happens to arrive.
        if declare:
            yield Page(records=[RowBatch(spec.name, tuple(columns), [], tuple(pk))], cursor=last)
        for rows in self.stream_rows(conn, sql, params, self.config.page_size):
            if convert:
                rows = [_convert(row, convert) for row in rows]
            records: list[Record] = [RowBatch(spec.name, tuple(columns), rows, tuple(pk))]
            if table.document is not None:
                records.extend(self._documents(table, names, pk_idx, rows))
            if table.cursor_column:
                last = {"after": [encode_value(rows[-1][i]) for i in order_idx]}
            yield Page(records=records, cursor=last)
        # A read from no cursor delivered every live row: the runner diffs keys against those rows
        # (connectors.base.LiveKeys), so only a read that resumed after a cursor lists all keys.
        if table.cursor_column and table.deletes == "key_diff" and cursor is not None:
            yield from self._live_keys(conn, table, pk, last)

    def _keyset(self, order: list[str], values: list[Any]) -> tuple[str, list[Any]]:
        """``(a, b, c) > (x, y, z)`` spelled out, which every dialect understands."""
        ors: list[str] = []
        params: list[Any] = []
        for i in range(len(order)):
            ands = [f"{self.quote(order[j])} = {self.placeholder}" for j in range(i)]
            ands.append(f"{self.quote(order[i])} > {self.placeholder}")
            ors.append("(" + " AND ".join(ands) + ")")
            params.extend(values[: i + 1])
        return "(" + " OR ".join(ors) + ")", params

    def _live_keys(self, conn: Any, table: TableConfig, pk: list[str], cursor: Cursor | None) -> Iterator[Page]:
        sql = f"SELECT {', '.join(self.quote(k) for k in pk)} FROM {self.quote_table(table.name)}"
        sent = False
        for rows in self.stream_rows(conn, sql, [], max(self.config.page_size, 50_000)):
            sent = True
            yield Page(records=[LiveKeys(table.stream, rows)], cursor=cursor)
        if not sent:
            yield Page(records=[LiveKeys(table.stream, [])], cursor=cursor)

    def _documents(
        self, table: TableConfig, names: list[str], pk_idx: list[int], rows: list[tuple[Any, ...]]
    ) -> list[Document]:
        template = table.document
        assert template is not None
        docs: list[Document] = []
        for row in rows:
            values = dict(zip(names, row, strict=True))
            fields = {k: "" if v is None else v for k, v in values.items()}
            if template.text is not None:
                text = template.text.format_map(fields)
            else:
                cols = template.columns or names
                text = "\n".join(f"{c}: {fields[c]}" for c in cols if fields[c] != "")
            docs.append(
                Document(
                    key=row_document_key(table.stream, [row[i] for i in pk_idx]),
                    text=text,
                    title=template.title.format_map(fields),
                    uri=template.uri.format_map(fields),
                    metadata={"table": table.stream, **{n: encode_value(row[i]) for n, i in _pk_items(names, pk_idx)}},
                    acl=tuple(self.config.acl),
                )
            )
        return docs


def _pk_items(names: list[str], pk_idx: list[int]) -> list[tuple[str, int]]:
    return [(names[i], i) for i in pk_idx]


def _convert(row: tuple[Any, ...], convert: list[tuple[int, Callable[[Any], Any]]]) -> tuple[Any, ...]:
    out = list(row)
    for i, fn in convert:
        if out[i] is not None:
            out[i] = fn(out[i])
    return tuple(out)
