"""Joins a query does not need, found and dropped on DuckDB's own parse tree.

A small model shown three tables tends to join all of them, although the question needs one:
``SELECT T1.area FROM geo.state AS T1 JOIN geo.border_info AS T2 ON T1.state_name = T2.state_name
WHERE T1.state_name = 'texas'`` returns Texas's area once per border. A joined table that nothing
but its own join condition reads (not the select list, ``WHERE``, ``GROUP BY``, ``HAVING``,
``ORDER BY`` nor a subquery) repeats the rows of the others, and may also filter them: an inner join
drops every row that finds no match (``river JOIN lake ON river.traverse = lake.state_name`` keeps
only the states with a lake). :func:`drop_unused_joins` writes the query without such a table only
when that changes nothing but repeats, for the candidates to run beside the draft
(:mod:`grounded.sql.candidates`):

* the table is the right side of a ``LEFT JOIN`` (every row of the left is kept), or
* it is joined by one equality ``kept.x = dropped.y`` and ``covers`` (the caller's data, see
  :func:`match_query`) says every row of ``kept`` finds a match in ``dropped``.

Without ``covers`` an inner join stays.

The query is parsed by DuckDB (``json_serialize_sql``), the tree is edited, and DuckDB writes it
back (``json_deserialize_sql``): no regular expression guesses where a clause ends. Tables in
``FROM a, b`` joined by an equality in ``WHERE`` are dropped with that equality. ``SELECT *``
reads every table, so such a query is left alone.

>>> drop_unused_joins("SELECT s.area FROM geo.state AS s LEFT JOIN geo.border_info AS b ON s.state_name = b.state_name")
'SELECT s.area FROM geo.state AS s'
>>> drop_unused_joins("SELECT s.area FROM geo.state AS s JOIN geo.border_info AS b ON s.state_name = b.state_name")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import duckdb

from grounded.sql.database import TableInfo, quote_ident
from grounded.sql.guard import parser_connection, walk_tree

__all__ = ["Column", "Covers", "drop_unused_joins", "match_query"]

_Columns = dict[tuple[str, str], set[str]]

Column = tuple[str, str, str]
"""``(schema, table, column)`` as the query names them (``schema`` empty when the query has none)."""
Covers = Callable[[Column, Column], bool]
"""``covers(kept, dropped)``: whether every row of ``kept``'s table has a match in ``dropped``'s
(``kept = dropped`` holds for some row); answered on the data, e.g. by running :func:`match_query`."""


def match_query(kept: Column, dropped: Column) -> str:
    """A query returning one boolean: whether every row of ``kept``'s table finds a row of
    ``dropped``'s table with an equal value (a ``NULL`` never does)."""

    def table(column: Column) -> str:
        return ".".join(quote_ident(part) for part in column[:2] if part)

    return (
        f"SELECT NOT EXISTS (SELECT 1 FROM {table(kept)} AS k WHERE NOT EXISTS "
        f"(SELECT 1 FROM {table(dropped)} AS d WHERE d.{quote_ident(dropped[2])} = k.{quote_ident(kept[2])}))"
    )


def drop_unused_joins(sql: str, tables: Sequence[TableInfo] = (), covers: Covers | None = None) -> str | None:
    """``sql`` without the joined tables nothing reads and that filter no row; ``None`` when there
    is none (or it does not parse).

    ``tables`` (their columns) tells whose an unqualified column is; a table not among them is
    taken to have every column, so an unqualified name keeps it. ``covers`` answers whether an
    inner join keeps every row (see the module docstring); without it only left joins go.
    """
    columns = {(t.schema.lower(), t.name.lower()): {c.lower() for c, _ in t.columns} for t in tables}
    with parser_connection() as con:  # the guard's shared one within `shared_parser()`
        try:
            row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
        except duckdb.Error:
            return None
        if row is None:
            return None
        tree = json.loads(row[0])
        if tree.get("error") or len(tree.get("statements", ())) != 1:
            return None
        if not any(
            _prune(node, columns, covers)
            for node in [n for n in walk_tree(tree["statements"][0]["node"]) if n.get("type") == "SELECT_NODE"]
        ):
            return None
        try:
            back = con.execute("SELECT json_deserialize_sql(?::JSON)", [json.dumps(tree)]).fetchone()
        except duckdb.Error:
            return None
        if back is None:
            return None
        out = back[0]
        # DuckDB writes COUNT(*) back as its internal name; the query reads as the model wrote it.
        return str(out).replace("count_star()", "count(*)")


def _leaves(source: Any) -> list[dict[str, Any]]:
    """The base tables of a ``FROM`` tree, in order."""
    if not isinstance(source, dict):
        return []
    if source.get("type") == "BASE_TABLE":
        return [source]
    if source.get("type") == "JOIN":
        return _leaves(source.get("left")) + _leaves(source.get("right"))
    return []


def _name(table: dict[str, Any]) -> str:
    return str(table.get("alias") or table.get("table_name") or "").lower()


def _refs(node: Any, skip: tuple[int, ...] = ()) -> Iterator[dict[str, Any]]:
    """Column references and stars under ``node``, except under the nodes whose ``id`` is in ``skip``."""
    if id(node) in skip:
        return
    if isinstance(node, dict):
        if node.get("class") in ("COLUMN_REF", "STAR"):
            yield node
        for value in node.values():
            yield from _refs(value, skip)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value, skip)


def _reads(ref: dict[str, Any], table: dict[str, Any], columns: _Columns) -> bool:
    """Whether a reference may read ``table``."""
    if ref.get("class") == "STAR":
        relation = str(ref.get("relation_name") or "").lower()
        return not relation or relation == _name(table)
    names = [str(n).lower() for n in ref.get("column_names", ())]
    if len(names) >= 2:
        return names[-2] == _name(table) or (len(names) == 2 and names[0] == str(table.get("table_name", "")).lower())
    known = columns.get((str(table.get("schema_name", "")).lower(), str(table.get("table_name", "")).lower()))
    return known is None or (bool(names) and names[-1] in known)


def _join_equalities(where: Any) -> list[dict[str, Any]]:
    """The ``a.x = b.y`` conjuncts of a ``WHERE`` (how ``FROM a, b`` is joined)."""
    if not isinstance(where, dict):
        return []
    if where.get("class") == "CONJUNCTION" and where.get("type") == "CONJUNCTION_AND":
        return [c for child in where.get("children", ()) for c in _join_equalities(child)]
    if (
        where.get("class") == "COMPARISON"
        and where.get("type") == "COMPARE_EQUAL"
        and all(
            isinstance(where.get(side), dict)
            and where[side].get("class") == "COLUMN_REF"
            and len(where[side].get("column_names", ())) >= 2
            for side in ("left", "right")
        )
    ):
        return [where]
    return []


def _prune(select: dict[str, Any], columns: _Columns, covers: Covers | None) -> bool:
    """Drop the unread joined tables of one ``SELECT`` node in place; whether any was dropped."""
    dropped = False
    while True:
        leaves = _leaves(select.get("from_table"))
        if len(leaves) < 2:
            return dropped
        equalities = _join_equalities(select.get("where_clause"))
        conditions = [c for t in leaves if (j := _joins_of(select.get("from_table"), t)) and (c := j[1])]
        # What each table is read for, outside the joins' own conditions.
        skip = tuple(id(n) for n in [*equalities, *conditions])
        read = [t for t in leaves if any(_reads(ref, t, columns) for ref in _refs(select, skip))]
        if not read:
            return dropped  # nothing names a table (COUNT(*)): which one counts is the model's choice
        for table in leaves:
            joins = _joins_of(select.get("from_table"), table)
            if joins is None or any(t is table for t in read):
                continue
            parent, condition = joins
            own = tuple(id(e) for e in equalities if _mentions(e, table)) + ((id(condition),) if condition else ())
            if any(_reads(ref, table, columns) for ref in _refs(select, own)):
                continue  # another join's condition reads it: that join goes first
            if not _other_side_named(condition, table, leaves) or any(
                not _other_side_named(e, table, leaves) for e in equalities if _mentions(e, table)
            ):
                continue
            if not _keeps_rows(parent, table, [e for e in equalities if _mentions(e, table)], leaves, covers):
                continue  # an inner join may filter rows: the model may have meant it as a filter
            _replace(select, parent, table)
            select["where_clause"] = _without(
                select.get("where_clause"), [e for e in equalities if _mentions(e, table)]
            )
            dropped = True
            break
        else:
            return dropped


def _keeps_rows(
    join: dict[str, Any],
    table: dict[str, Any],
    equalities: list[dict[str, Any]],
    leaves: list[dict[str, Any]],
    covers: Covers | None,
) -> bool:
    """Whether dropping ``table`` (one side of ``join``, also named by ``equalities`` of the ``WHERE``)
    leaves every row the query had, repeats aside."""
    condition = join.get("condition")
    if join.get("join_type") == "LEFT" and join.get("right") is table:
        return not equalities  # a WHERE equality on it makes the left join an inner one
    if join.get("join_type") != "INNER" or covers is None:
        return False
    # One equality, ON or WHERE, between the table and one kept column: kept.x = dropped.y.
    links = [*equalities, *([condition] if condition is not None else [])]
    if len(links) != 1 or _join_equalities(links[0]) != [links[0]]:
        return False
    sides = [links[0]["left"]["column_names"], links[0]["right"]["column_names"]]
    by_name = {_name(t): t for t in leaves}
    ends = []
    for parts in sides:
        leaf = by_name.get(str(parts[-2]).lower())
        if leaf is None:
            return False
        ends.append((leaf, (str(leaf.get("schema_name") or ""), str(leaf.get("table_name") or ""), str(parts[-1]))))
    (left, left_column), (right, right_column) = ends
    if left is table and right is not table:
        return covers(right_column, left_column)
    if right is table and left is not table:
        return covers(left_column, right_column)
    return False


def _mentions(node: Any, table: dict[str, Any]) -> bool:
    return any(
        r.get("class") == "COLUMN_REF"
        and len(r.get("column_names", ())) >= 2
        and r["column_names"][-2].lower() == _name(table)
        for r in _refs(node)
    )


def _other_side_named(condition: Any, table: dict[str, Any], leaves: list[dict[str, Any]]) -> bool:
    """A join condition (or none) whose every other reference names a table of the query: dropping
    ``table`` leaves nothing in it that could have meant ``table``."""
    if condition is None:
        return True
    names = {_name(t) for t in leaves}
    for ref in _refs(condition):
        parts = [str(n).lower() for n in ref.get("column_names", ())]
        if ref.get("class") == "STAR" or len(parts) < 2 or parts[-2] not in names:
            return False
    return True


def _joins_of(source: Any, table: dict[str, Any]) -> tuple[dict[str, Any], Any] | None:
    """The join node with ``table`` as one side, and its condition; ``None`` when ``table`` is not
    one side of a plain inner, left or cross join."""
    if not isinstance(source, dict) or source.get("type") != "JOIN":
        return None
    if source.get("ref_type") not in ("REGULAR", "CROSS") or source.get("join_type") not in ("INNER", "LEFT"):
        return None
    if source.get("using_columns"):
        return None
    if source.get("left") is table or source.get("right") is table:
        return source, source.get("condition")
    return _joins_of(source.get("left"), table) or _joins_of(source.get("right"), table)


def _replace(select: dict[str, Any], join: dict[str, Any], table: dict[str, Any]) -> None:
    """Put the other side of ``join`` where ``join`` was."""
    keep = join["right"] if join["left"] is table else join["left"]

    def walk(node: dict[str, Any]) -> None:
        for side in ("left", "right"):
            if node.get(side) is join:
                node[side] = keep
            elif isinstance(node.get(side), dict) and node[side].get("type") == "JOIN":
                walk(node[side])

    if select["from_table"] is join:
        select["from_table"] = keep
    else:
        walk(select["from_table"])


def _without(where: Any, drop: list[dict[str, Any]]) -> Any:
    """``where`` with the conjuncts in ``drop`` removed (``None`` when nothing is left)."""
    if where is None or any(where is d for d in drop):
        return None
    if where.get("class") == "CONJUNCTION" and where.get("type") == "CONJUNCTION_AND":
        children = [c for c in (_without(child, drop) for child in where["children"]) if c is not None]
        if not children:
            return None
        if len(children) == 1:
            return children[0]
        return {**where, "children": children}
    return where
