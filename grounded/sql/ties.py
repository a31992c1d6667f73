"""Superlatives that keep every row at the extreme, not the first one: ``ORDER BY ... LIMIT 1`` read as
``= (SELECT MAX(...))``.

A small model writes "which state has the shortest river" as ``SELECT river.traverse FROM geo.river
ORDER BY river.length ASC LIMIT 1``: one row, although the shortest river crosses four states (one
row each), and although two rivers may share the shortest length. The question asks for every row
at the extreme, which is what :func:`all_ties` writes:

``SELECT river.traverse FROM geo.river WHERE river.length = (SELECT MIN(river.length) FROM geo.river)``

and, over groups, ``... GROUP BY g HAVING COUNT(*) = (SELECT MAX(n) FROM (SELECT COUNT(*) AS n ...
GROUP BY g))``. The inner query repeats the outer one's ``FROM``/``WHERE`` (the same aliases: inside
the subquery they name its own tables). Subqueries in parentheses are rewritten the same way ("the
rivers of the state with the largest area"). The clauses are found by a scan that skips string
literals, quoted names and parentheses; a query this module cannot read with certainty (a set
operation, ``OFFSET``, several sort keys, a window) is left alone.

Where there is no tie and each entity is one row, the rewrite returns the same rows as the draft,
and the two agree (:func:`grounded.sql.candidates.choose`).

>>> all_ties("SELECT s.name FROM geo.state AS s ORDER BY s.area DESC LIMIT 1")
'SELECT s.name FROM geo.state AS s WHERE s.area = (SELECT MAX(s.area) FROM geo.state AS s)'
"""

from __future__ import annotations

import re

__all__ = ["all_ties"]

_CLAUSES = ("SELECT", "FROM", "WHERE", "GROUP BY", "HAVING", "ORDER BY", "LIMIT")
_KEYWORD = re.compile(
    r"\b(SELECT|FROM|WHERE|GROUP\s+BY|HAVING|ORDER\s+BY|LIMIT|OFFSET|UNION|INTERSECT|EXCEPT|WINDOW|QUALIFY|WITH)\b",
    re.I,
)
_ORDER_KEY = re.compile(r"^(?P<e>.+?)(?:\s+(?P<dir>ASC|DESC))?(?:\s+NULLS\s+(?:FIRST|LAST))?$", re.I | re.S)
_ALIASED = re.compile(r"^(?P<e>.+?)\s+AS\s+(?P<a>[A-Za-z_][A-Za-z0-9_]*|\"(?:[^\"]|\"\")+\")$", re.I | re.S)
_AGGREGATE = re.compile(r"\b(?:COUNT|SUM|AVG|MIN|MAX)\s*\(", re.I)


def _depth_map(sql: str) -> list[int]:
    """For each character, its parenthesis depth, or -1 inside a string literal or quoted name."""
    out: list[int] = []
    depth, quote = 0, ""
    for ch in sql:
        if quote:
            out.append(-1)
            if ch == quote:
                quote = ""  # a doubled quote closes and reopens: same result
            continue
        if ch in "'\"":
            quote = ch
            out.append(-1)
            continue
        if ch == "(":
            out.append(depth)
            depth += 1
            continue
        if ch == ")":
            depth -= 1
            out.append(depth)
            continue
        out.append(depth)
    return out


def _clauses(sql: str) -> dict[str, str] | None:
    """The top-level clauses of one ``SELECT`` (``{"SELECT": items, "FROM": ..., ...}``), or ``None``
    when the statement holds something this module does not rewrite."""
    depth = _depth_map(sql)
    found: list[tuple[str, int, int]] = []
    for m in _KEYWORD.finditer(sql):
        if depth[m.start()] != 0:
            continue
        name = re.sub(r"\s+", " ", m.group(1).upper())
        if name not in _CLAUSES or any(name == f[0] for f in found):
            return None  # a set operation, OFFSET, WINDOW, a CTE, or a clause twice
        found.append((name, m.start(), m.end()))
    if not found or found[0][0] != "SELECT" or found[0][1] != len(sql) - len(sql.lstrip()):
        return None
    if [f[0] for f in found] != [c for c in _CLAUSES if c in {f[0] for f in found}]:
        return None  # clauses out of order
    out = {}
    for i, (name, _, end) in enumerate(found):
        stop = found[i + 1][1] if i + 1 < len(found) else len(sql)
        out[name] = sql[end:stop].strip()
    return out


def _split_top(text: str) -> list[str]:
    depth = _depth_map(text)
    parts, last = [], 0
    for i, ch in enumerate(text):
        if ch == "," and depth[i] == 0:
            parts.append(text[last:i].strip())
            last = i + 1
    parts.append(text[last:].strip())
    return parts


def _rewrite(sql: str) -> str | None:
    """:func:`all_ties` for one statement, at its top level only."""
    parts = _clauses(sql)
    if parts is None or "ORDER BY" not in parts or parts.get("LIMIT", "").strip() != "1" or "FROM" not in parts:
        return None
    order = _split_top(parts["ORDER BY"])
    key = _ORDER_KEY.match(order[0]) if len(order) == 1 else None
    if key is None:
        return None
    expr = key.group("e").strip()
    fn = "MAX" if (key.group("dir") or "ASC").upper() == "DESC" else "MIN"
    items = _split_top(re.sub(r"^DISTINCT\s+", "", parts["SELECT"], flags=re.I))
    for item in items:  # ORDER BY a select-list alias: the subquery needs the expression itself
        aliased = _ALIASED.match(item)
        if aliased is not None and aliased.group("a").lower() == expr.lower():
            expr = aliased.group("e").strip()
    where = f" WHERE {parts['WHERE']}" if "WHERE" in parts else ""
    source = f"FROM {parts['FROM']}{where}"
    if "GROUP BY" not in parts:
        if _AGGREGATE.search(expr) or _AGGREGATE.search(parts["SELECT"]):
            return None  # one aggregate row: nothing to tie
        test = f"{expr} = (SELECT {fn}({expr}) {source})"
        cond = f"({parts['WHERE']}) AND {test}" if "WHERE" in parts else test
        return f"SELECT {parts['SELECT']} FROM {parts['FROM']} WHERE {cond}"
    having = f" HAVING {parts['HAVING']}" if "HAVING" in parts else ""
    groups = f"{source} GROUP BY {parts['GROUP BY']}{having}"
    test = f"{expr} = (SELECT {fn}(ties.v) FROM (SELECT {expr} AS v {groups}) AS ties)"
    cond = f"({parts['HAVING']}) AND {test}" if "HAVING" in parts else test
    return f"SELECT {parts['SELECT']} {source} GROUP BY {parts['GROUP BY']} HAVING {cond}"


def all_ties(sql: str) -> str | None:
    """``sql`` with each ``ORDER BY <one key> LIMIT 1`` (at the top level and in parenthesised
    subqueries) read as "every row whose key equals the extreme"; ``None`` when nothing changes."""
    out = sql
    # Innermost subqueries first, so a rewritten one never shifts the positions of those around it.
    for _ in range(8):
        depth = _depth_map(out)
        spans = []
        for m in re.finditer(r"\(\s*SELECT\b", out, re.I):
            if depth[m.start()] < 0:
                continue
            level = depth[m.start()]
            close = next((i for i in range(m.start() + 1, len(out)) if out[i] == ")" and depth[i] == level), None)
            if close is not None:
                spans.append((m.start() + 1, close))
        changed = False
        for start, end in sorted(spans, key=lambda s: s[0], reverse=True):
            inner = _rewrite(out[start:end].strip())
            if inner is not None:
                head = out[: start - 1]
                # ``x = (SELECT ...)`` takes one row; with ties there may be several.
                head = re.sub(r"(?<![<>!])=\s*$", "IN ", head)
                out = f"{head}({inner}{out[end:]}"
                changed = True
                break  # positions moved: scan again
        if not changed:
            break
    top = _rewrite(out.strip())
    out = top if top is not None else out
    return out if out != sql else None
