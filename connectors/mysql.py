"""MySQL and MariaDB tables mirrored into DuckDB, read with PyMySQL's unbuffered (streaming) cursor.

Example ``grounded.toml``::

    [sources.crm]
    type = "mysql"
    [sources.crm.params]
    host = "127.0.0.1"
    database = "crm"
    user = "reader"
    password_env = "CRM_MYSQL_PASSWORD"
    tables = [{ name = "contacts", cursor_column = "modified_at", document = { title = "{name}" } }]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import pymysql
import pymysql.cursors
from pydantic import BaseModel, Field
from pymysql.constants import FIELD_TYPE
from pymysql.converters import conversions

from connectors.sql import SQLConfig, SQLConnector, secret_from_env
from grounded.errors import ConnectorError, FatalConnectorError, RetriableConnectorError

__all__ = ["MySQLConfig", "MySQLConnector"]

_SCALARS = {
    "tinyint": "TINYINT",
    "smallint": "SMALLINT",
    "mediumint": "INTEGER",
    "int": "INTEGER",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "real": "DOUBLE",
    "char": "VARCHAR",
    "varchar": "VARCHAR",
    "tinytext": "VARCHAR",
    "text": "VARCHAR",
    "mediumtext": "VARCHAR",
    "longtext": "VARCHAR",
    "enum": "VARCHAR",
    "set": "VARCHAR",
    "json": "JSON",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "timestamp": "TIMESTAMP",
    "time": "INTERVAL",  # MySQL TIME spans -838..838 hours: a duration, not a time of day
    "year": "SMALLINT",
    "binary": "BLOB",
    "varbinary": "BLOB",
    "tinyblob": "BLOB",
    "blob": "BLOB",
    "mediumblob": "BLOB",
    "longblob": "BLOB",
    "bit": "UBIGINT",
}
# Temporal and decimal values stay text on the wire: DuckDB casts text to TIMESTAMP/DECIMAL in C++
# far faster than PyMySQL builds Python datetime/Decimal objects, row by row, in Python.
_AS_TEXT = {FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP, FIELD_TYPE.DATE, FIELD_TYPE.TIME}
_AS_TEXT |= {FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL}
_CONVERSIONS = {k: v for k, v in conversions.items() if k not in _AS_TEXT}

_UNSIGNED = {"TINYINT": "UTINYINT", "SMALLINT": "USMALLINT", "INTEGER": "UINTEGER", "BIGINT": "UBIGINT"}

# Error codes: https://mariadb.com/kb/en/mariadb-error-codes/
_ACCESS_DENIED = {1044, 1045, 1698}
_UNKNOWN_DB = 1049
_CANT_CONNECT = {2002, 2003, 2005, 2006, 2013}


class MySQLConfig(SQLConfig):
    """Where the server is and how to log in; the password comes from ``password_env``."""

    host: str = Field("127.0.0.1", description="Host name or IP address.")
    port: int = Field(3306, ge=1, le=65535)
    database: str = Field(description="Database (schema) name.")
    user: str = Field(description="User name.")
    password_env: str | None = Field(None, description="Environment variable holding the password.")
    unix_socket: str | None = Field(None, description="Socket path, instead of host and port.")
    connect_timeout: int = Field(10, ge=1, description="Seconds to wait for the server.")


class MySQLConnector(SQLConnector):
    """Mirror MySQL/MariaDB tables (and render rows into documents)."""

    name: ClassVar[str] = "mysql"
    Config: ClassVar[type[BaseModel]] = MySQLConfig
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (pymysql.err.Error,)

    def __init__(self, config: MySQLConfig) -> None:
        super().__init__(config)
        self.my = config

    def location(self) -> str:
        return f"mysql://{self.my.user}@{self.my.host}:{self.my.port}/{self.my.database}"

    def quote(self, ident: str) -> str:
        return "`" + ident.replace("`", "``") + "`"

    def connect(self) -> pymysql.connections.Connection[Any]:
        password = secret_from_env(self.my.password_env, f"mysql {self.location()}")
        return pymysql.connect(
            host=self.my.host,
            port=self.my.port,
            user=self.my.user,
            password=password or "",
            database=self.my.database,
            unix_socket=self.my.unix_socket,
            connect_timeout=self.my.connect_timeout,
            charset="utf8mb4",
            conv=_CONVERSIONS,
            # Session in UTC so TIMESTAMP columns come back as UTC wall-clock times.
            init_command="SET time_zone = '+00:00'",
        )

    def _split(self, table: str) -> tuple[str | None, str]:
        schema, _, name = table.rpartition(".")
        return (schema or None), name

    def describe(self, conn: Any, table: str) -> list[tuple[str, str]]:
        schema, name = self._split(table)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                [schema, name],
            )
            return [(str(n), str(t)) for n, t in cur.fetchall()]

    def primary_key_of(self, conn: Any, table: str) -> list[str]:
        schema, name = self._split(table)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE CONSTRAINT_NAME = 'PRIMARY' "
                "AND TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                [schema, name],
            )
            return [str(r[0]) for r in cur.fetchall()]

    def duckdb_type(self, source_type: str) -> str | None:
        lowered = source_type.lower()
        if re.fullmatch(r"tinyint\(1\)", lowered):
            return "BOOLEAN"
        if m := re.fullmatch(r"(?:decimal|numeric)\((\d+),(\d+)\)( unsigned)?( zerofill)?", lowered):
            precision, scale = int(m[1]), int(m[2])
            return f"DECIMAL({precision},{scale})" if precision <= 38 else "DOUBLE"
        base = re.sub(r"\(.*?\)", "", lowered).split()[0] if lowered else ""
        mapped = _SCALARS.get(base)
        if mapped is not None and " unsigned" in lowered:
            mapped = _UNSIGNED.get(mapped, mapped)
        return mapped

    def converter(self, source_type: str) -> Callable[[Any], Any] | None:
        lowered = source_type.lower()
        if lowered.startswith("bit"):
            return _bits
        if lowered.startswith("tinyint(1)"):
            return bool
        return None

    def stream_rows(self, conn: Any, sql: str, params: Sequence[Any], size: int) -> Iterator[list[tuple[Any, ...]]]:
        # SSCursor does not buffer the result: rows are read off the socket as they are fetched.
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(sql, list(params))
            while rows := cur.fetchmany(size):
                yield list(rows)

    def wrap_error(self, exc: Exception) -> ConnectorError:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        where = self.location()
        if code in _ACCESS_DENIED:
            return FatalConnectorError(
                f"mysql {where}: login failed ({message}); check user and the password in "
                f"${self.my.password_env or '(no password_env set)'}"
            )
        if code == _UNKNOWN_DB:
            return FatalConnectorError(f"mysql {where}: {message}; fix database in the source's config")
        if code in _CANT_CONNECT:
            if "name or service not known" in message.lower() or "nodename nor servname" in message.lower():
                return FatalConnectorError(f"mysql {where}: unknown host {self.my.host!r} ({message}); fix host")
            return RetriableConnectorError(
                f"mysql {where}: cannot reach the server ({message}); is it running and reachable?"
            )
        return FatalConnectorError(f"mysql {where}: {message}")


def _bits(value: Any) -> int:
    return int.from_bytes(value, "big") if isinstance(value, bytes | bytearray) else int(value)
