"""PostgreSQL tables mirrored into DuckDB, read with psycopg 3 through server-side cursors.

Example ``grounded.toml``::

    [sources.shop]
    type = "postgres"
    [sources.shop.params]
    host = "db.internal"
    database = "shop"
    user = "reader"
    password_env = "SHOP_PG_PASSWORD"     # the password itself stays in the environment
    tables = [{ name = "public.orders", cursor_column = "updated_at" }]
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import psycopg
from pydantic import BaseModel, Field

from connectors.sql import SQLConfig, SQLConnector, secret_from_env
from grounded.errors import ConnectorError, FatalConnectorError, RetriableConnectorError

__all__ = ["PostgresConfig", "PostgresConnector"]

_SCALARS = {
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "FLOAT",
    "double precision": "DOUBLE",
    "numeric": "DOUBLE",  # no declared precision: any scale, which no DECIMAL holds
    "boolean": "BOOLEAN",
    "text": "VARCHAR",
    "character varying": "VARCHAR",
    "character": "VARCHAR",
    "citext": "VARCHAR",
    "name": "VARCHAR",
    "date": "DATE",
    "time without time zone": "TIME",
    "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMPTZ",
    "interval": "INTERVAL",
    "bytea": "BLOB",
    "uuid": "UUID",
    "json": "JSON",
    "jsonb": "JSON",
    "inet": "VARCHAR",
    "cidr": "VARCHAR",
    "macaddr": "VARCHAR",
}
_STRINGIFY = frozenset({"uuid", "inet", "cidr", "macaddr"})


class PostgresConfig(SQLConfig):
    """Where the database is and how to log in; the password comes from ``password_env``."""

    host: str = Field("127.0.0.1", description="Host name, IP address, or a socket directory.")
    port: int = Field(5432, ge=1, le=65535)
    database: str = Field(description="Database name.")
    user: str = Field(description="User name.")
    password_env: str | None = Field(None, description="Environment variable holding the password.")
    sslmode: str = Field("prefer", description="libpq sslmode: disable, prefer, require, verify-full...")
    connect_timeout: int = Field(10, ge=1, description="Seconds to wait for the server.")


class PostgresConnector(SQLConnector):
    """Mirror PostgreSQL tables (and render rows into documents)."""

    name: ClassVar[str] = "postgres"
    Config: ClassVar[type[BaseModel]] = PostgresConfig
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (psycopg.Error,)

    def __init__(self, config: PostgresConfig) -> None:
        super().__init__(config)
        self.pg = config

    def location(self) -> str:
        return f"postgresql://{self.pg.user}@{self.pg.host}:{self.pg.port}/{self.pg.database}"

    def connect(self) -> psycopg.Connection[Any]:
        password = secret_from_env(self.pg.password_env, f"postgres {self.location()}")
        return psycopg.connect(
            host=self.pg.host,
            port=self.pg.port,
            dbname=self.pg.database,
            user=self.pg.user,
            password=password,
            sslmode=self.pg.sslmode,
            connect_timeout=self.pg.connect_timeout,
            application_name="grounded-sync",
        )

    def describe(self, conn: Any, table: str) -> list[tuple[str, str]]:
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typtype, "
            "coalesce(et.typname, '') FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A' "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [self.quote_table(table)],
        ).fetchall()
        conn.rollback()
        # Enums are text to the mirror; tag them so duckdb_type can tell them from unknown types.
        return [(str(n), "enum" if kind == "e" else str(t)) for n, t, kind, _ in rows]

    def primary_key_of(self, conn: Any, table: str) -> list[str]:
        rows = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n) ON true "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY k.n",
            [self.quote_table(table)],
        ).fetchall()
        conn.rollback()
        return [str(r[0]) for r in rows]

    def duckdb_type(self, source_type: str) -> str | None:
        if source_type == "enum":
            return "VARCHAR"
        if source_type.endswith("[]"):
            element = self.duckdb_type(source_type[:-2])
            return None if element is None or element == "JSON" else f"{element}[]"
        base = re.sub(r"\(.*\)", "", source_type).strip()
        if base == "numeric" and (m := re.fullmatch(r"numeric\((\d+),(\d+)\)", source_type.replace(" ", ""))):
            precision, scale = int(m[1]), int(m[2])
            return f"DECIMAL({precision},{scale})" if precision <= 38 else "DOUBLE"
        return _SCALARS.get(base)

    def converter(self, source_type: str) -> Callable[[Any], Any] | None:
        base = re.sub(r"\(.*\)", "", source_type).strip()
        if base in _STRINGIFY:
            return str
        if base in ("json", "jsonb"):
            return _json_text
        if base == "enum":
            return _text  # enums arrive as bytes over the binary protocol
        return None

    def stream_rows(self, conn: Any, sql: str, params: Sequence[Any], size: int) -> Iterator[list[tuple[Any, ...]]]:
        # A named cursor lives on the server: rows arrive `size` at a time, memory stays flat.
        with conn.transaction(), conn.cursor(name=f"grounded_{uuid.uuid4().hex}", binary=True) as cur:
            cur.itersize = size
            cur.execute(sql, list(params))
            while rows := cur.fetchmany(size):
                yield rows

    def wrap_error(self, exc: Exception) -> ConnectorError:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = self.location()
        lowered = message.lower()
        if "password authentication failed" in lowered or "no password supplied" in lowered:
            return FatalConnectorError(
                f"postgres {where}: login failed ({message}); check user and the password in "
                f"${self.pg.password_env or '(no password_env set)'}"
            )
        if "does not exist" in lowered and ("role" in lowered or "database" in lowered):
            return FatalConnectorError(f"postgres {where}: {message}; fix user/database in the source's config")
        if "could not translate host name" in lowered or "name or service not known" in lowered:
            return FatalConnectorError(f"postgres {where}: unknown host {self.pg.host!r} ({message}); fix host")
        if isinstance(exc, psycopg.OperationalError):
            return RetriableConnectorError(
                f"postgres {where}: cannot reach the server ({message}); is it running and reachable?"
            )
        return FatalConnectorError(f"postgres {where}: {message}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
