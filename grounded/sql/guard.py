"""The SQL guard: what a query may be before it runs, decided by DuckDB's own parser.

Two policies over one parser:

* :func:`check_statement` (``kb.sql``, for the people who own the knowledge base): exactly one
  statement, of type SELECT (``WITH``, ``DESCRIBE``, ``SUMMARIZE`` included). The sandboxed
  connection (:mod:`grounded.sql.database`) does the rest.
* :func:`check_sql` (the ``sql`` tool, for models and API callers): the same, and then a walk
  of the parsed tree (``json_serialize_sql``): every table must be one of the caller's mirrored
  tables (``<source>.<table>``), or a CTE *in scope where it is named* — a CTE's own body does
  not see its name (unless it is recursive), so ``WITH t AS (SELECT * FROM t)`` reads table
  ``t`` and is checked as such; never the catalog, the knowledge base's own tables or a file
  path; functions that read files, the network, settings or run SQL text (``read_csv``,
  ``glob``, ``query``, ``getenv``, ...) are refused; table functions other than
  ``range``/``generate_series``/``unnest`` are refused.

DuckDB parses, so each check needs a connection; opening one (an in-memory database) costs
about 8 ms, a parse on an open one 0.2 ms. Code that checks many queries in a row (synthesis,
a draft's candidate rewrites) wraps them in :func:`shared_parser`: one connection for the block
on this thread, closed when it ends.

The guard is the second layer. The first is structural: the ``sql`` tool's connection holds
only the caller's tables (:func:`grounded.sql.database.caller_database`), so a query the guard
wrongly accepted still finds nothing else to read.

Example::

    guard = check_sql("SELECT name FROM geo.state WHERE population > 1e7", tables)
    with shared_parser():  # many checks, one parser connection
        guards = [check_sql(q, tables) for q in queries]
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

from grounded.errors import InvalidRequest
from grounded.sql.database import CATALOG, TableInfo

__all__ = [
    "MAX_SQL_CHARS",
    "SqlGuard",
    "SqlRefused",
    "check_sql",
    "check_statement",
    "parser_connection",
    "shared_parser",
    "walk_tree",
]

MAX_SQL_CHARS = 10_000

_BLOCKED_FUNCTIONS = frozenset(
    {
        "query", "query_table", "getenv", "current_setting", "set_variable", "getvariable", "glob", "system",
        "shell", "load_extension", "install_extension", "checkpoint", "force_checkpoint", "sniff_csv",
        "json_execute_serialized_sql", "json_serialize_sql", "json_deserialize_sql", "make_timestamp_ms",
    }
)  # fmt: skip
_BLOCKED_PREFIXES = (
    "read_", "parquet_", "duckdb_", "pragma_", "sqlite_", "postgres_", "mysql_", "iceberg_", "delta_",
    "http", "s3", "gcs", "azure", "fts_", "which_secret", "sniff_",
)  # fmt: skip
_ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})


class SqlRefused(InvalidRequest):
    """The guard refused a query; the message says which rule and how to fix the query."""


@dataclass(frozen=True, slots=True)
class SqlGuard:
    """A query the guard accepted, with the mirrored tables it reads."""

    sql: str
    tables: tuple[TableInfo, ...]


def walk_tree(node: Any) -> Iterator[dict[str, Any]]:
    """Every object of a DuckDB JSON parse tree (``json_serialize_sql``), depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk_tree(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_tree(value)


def _tables_in_scope(node: Any, scope: frozenset[str] = frozenset()) -> Iterator[tuple[dict[str, Any], frozenset[str]]]:
    """Every ``BASE_TABLE`` node with the CTE names visible where it stands.

    A ``WITH`` list's names are visible in the query it belongs to and in *later* CTEs of the
    list, not in a CTE's own body (DuckDB resolves ``WITH t AS (SELECT * FROM t)``'s inner ``t``
    to the table ``t``); a recursive CTE (``RECURSIVE_CTE_NODE``) sees its own name.
    """
    if isinstance(node, list):
        for value in node:
            yield from _tables_in_scope(value, scope)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "BASE_TABLE":
        yield node, scope
    inner = scope
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict):
        for entry in cte_map.get("map", []):
            yield from _tables_in_scope(entry.get("value"), inner)
            inner = inner | {str(entry["key"]).lower()}
    if node.get("type") == "RECURSIVE_CTE_NODE" and node.get("cte_name"):
        inner = inner | {str(node["cte_name"]).lower()}
    for key, value in node.items():
        if key != "cte_map":
            yield from _tables_in_scope(value, inner)


def _function_blocked(name: str) -> bool:
    lowered = name.lower()
    return lowered in _BLOCKED_FUNCTIONS or lowered.startswith(_BLOCKED_PREFIXES)


_THREAD = threading.local()


@contextlib.contextmanager
def shared_parser() -> Iterator[None]:
    """Within the block, the guard's checks on this thread parse on one connection, closed at the end
    (also on error). Nested blocks share the outer one; other threads keep opening their own (a
    DuckDB connection is not for two threads at once)."""
    if getattr(_THREAD, "parser", None) is not None:
        yield
        return
    _THREAD.parser = duckdb.connect(":memory:")
    try:
        yield
    finally:
        parser, _THREAD.parser = _THREAD.parser, None
        parser.close()


@contextlib.contextmanager
def parser_connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """The block's shared parser (:func:`shared_parser`), or a connection of its own for one check."""
    shared: duckdb.DuckDBPyConnection | None = getattr(_THREAD, "parser", None)
    if shared is not None:
        yield shared
        return
    own = duckdb.connect(":memory:")
    try:
        yield own
    finally:
        own.close()


def check_statement(sql: object) -> str:
    """``sql`` if it is exactly one SELECT statement (DuckDB's parser decides); else :class:`SqlRefused`.

    ``WITH ... SELECT``, ``FROM t``, ``DESCRIBE`` and ``SUMMARIZE`` are SELECTs.
    """
    with parser_connection() as parser:
        return _one_select(sql, parser)


def _one_select(sql: object, parser: duckdb.DuckDBPyConnection) -> str:
    if not isinstance(sql, str) or not sql.strip():
        raise SqlRefused("the query is empty; pass one SELECT statement")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRefused(f"the query is {len(sql)} characters long; the limit is {MAX_SQL_CHARS}")
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlRefused(f"cannot parse the query ({str(exc).splitlines()[0]})") from exc
    if len(statements) != 1:
        raise SqlRefused(f"the query must be exactly one statement; got {len(statements)}: send them one at a time")
    kind = statements[0].type
    if kind.name != "SELECT":
        raise SqlRefused(
            f"the query is read-only: only SELECT (or WITH ... SELECT) is allowed; got a {kind.name} statement"
        )
    return sql


def check_sql(sql: str, tables: Iterable[TableInfo] | None, *, catalog: str = CATALOG) -> SqlGuard:
    """Accept ``sql`` only if it is one read-only SELECT over ``tables``; else raise :class:`SqlRefused`.

    ``tables=None`` allows any table of the attached ``catalog`` (the notebook's ``kb.sql``,
    which may read the knowledge base's own tables); the statement and function rules still hold.
    """
    with parser_connection() as parser:
        sql = _one_select(sql, parser)
        row = parser.execute("SELECT json_serialize_sql(?)", [sql.strip().rstrip(";")]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True, "error_message": "no parse tree"}
    if tree.get("error"):
        raise SqlRefused(f"the query is not a plain SELECT ({tree.get('error_message', 'unsupported syntax')})")
    known = {t.qualified.lower(): t for t in tables or ()}
    by_name: dict[str, list[TableInfo]] = {}
    for t in known.values():
        by_name.setdefault(t.name.lower(), []).append(t)
    used: dict[str, TableInfo] = {}
    for node in walk_tree(tree):
        if "function_name" in node and _function_blocked(str(node["function_name"])):
            raise SqlRefused(
                f"function {node['function_name']!r} is not allowed: the SQL tool reads mirrored tables only "
                "(no files, network, settings or dynamic SQL)"
            )
        if node.get("type") == "TABLE_FUNCTION":
            fn = str((node.get("function") or {}).get("function_name", "?"))
            if fn.lower() not in _ALLOWED_TABLE_FUNCTIONS:
                raise SqlRefused(
                    f"table function {fn!r} is not allowed; only mirrored tables and "
                    f"{', '.join(sorted(_ALLOWED_TABLE_FUNCTIONS))} may appear in FROM"
                )
    for node, ctes in _tables_in_scope(tree):
        catalog_name = str(node.get("catalog_name") or "").lower()
        schema = str(node.get("schema_name") or "").lower()
        name = str(node.get("table_name") or "").lower()
        if catalog_name not in ("", catalog.lower()):
            raise SqlRefused(f"table {catalog_name}.{schema}.{name} is outside the knowledge base")
        if (not schema and name in ctes) or tables is None:
            continue
        candidates = [known[f"{schema}.{name}"]] if f"{schema}.{name}" in known else []
        if not schema:
            candidates = by_name.get(name, [])
        if not candidates:
            listed = ", ".join(sorted(known)) or "none (sync a database source first)"
            raise SqlRefused(f"table {name if not schema else schema + '.' + name!r} is not a mirrored table; "
                             f"available: {listed}")  # fmt: skip
        used[candidates[0].qualified] = candidates[0]
    return SqlGuard(sql.strip().rstrip(";").strip(), tuple(used[k] for k in sorted(used)))
