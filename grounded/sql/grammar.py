"""A SQL grammar for the tables a question links to: text-to-SQL decoded so it can only be valid SQL.

:func:`sql_grammar` writes a grammar (GBNF, the EBNF dialect both xgrammar and llama.cpp read) for
the read-only subset of DuckDB SQL a question needs: one ``SELECT`` with joins, ``WHERE``,
``GROUP BY``/``HAVING``, ``ORDER BY``, ``LIMIT``, subqueries in ``FROM``/``IN``/comparisons,
``UNION``/``INTERSECT``/``EXCEPT``, aggregates and a few scalar functions. Table aliases are
the table's name (and a digit), its initials or first letters (``bi``, ``st``), a letter and a
digit (``T1``), never a column's name or a keyword: a model that may write ``id.id`` as a
column reference loops on it (``id.id = 10 AND id.id = 10 ...``). Its table names are
exactly the shown tables (``schema.table``) and its column names exactly their columns, so a
model decoding under it cannot name a table or column the schema does not have, call a function
outside the list (``read_csv``, ``getenv``...), write a second statement, or add prose after the
query. Which alias holds which column is not context-free; the binder check after decoding
catches that (and the writer's one repair turn fixes it).

Keywords are upper case (function names either case) and tokens are separated by single
spaces: one spelling per query keeps the grammar small and a small model's choices few.
Everything the grammar accepts still goes through the SQL guard: the grammar narrows what a
model writes, the guard decides what runs.

>>> print(sql_grammar([TableInfo("geo", "state", (("state_name", "VARCHAR"),))]).splitlines()[-1])
column ::= "state_name"
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from grounded.errors import ConfigError
from grounded.sql.database import TableInfo, quote_identifier

__all__ = ["AGGREGATES", "SCALAR_FUNCTIONS", "accepts", "quote_identifier", "sql_grammar"]

AGGREGATES = ("COUNT", "SUM", "AVG", "MIN", "MAX")
SCALAR_FUNCTIONS = ("LOWER", "UPPER", "LENGTH", "ABS", "ROUND", "COALESCE")

# The statement's structure; the table and column rules are appended per schema.
_RULES = r"""
root ::= query
query ::= select (setop select){0,2} orderby? limit?
setop ::= " UNION " | " UNION ALL " | " INTERSECT " | " EXCEPT "
select ::= "SELECT " ("DISTINCT ")? items " FROM " sources where? groupby? having?
items ::= "*" | item (", " item){0,7}
item ::= expr (" AS " name)?
sources ::= source ((", " source) | join source " ON " expr){0,3}
join ::= " JOIN " | " INNER JOIN " | " LEFT JOIN "
source ::= table (" AS " alias)? | "(" query ")" " AS " alias
where ::= " WHERE " expr
groupby ::= " GROUP BY " expr (", " expr){0,3}
having ::= " HAVING " expr
orderby ::= " ORDER BY " order (", " order){0,3}
order ::= expr (" ASC" | " DESC")?
limit ::= " LIMIT " [1-9] [0-9]{0,3}
expr ::= conj (" OR " conj){0,5}
conj ::= neg (" AND " neg){0,5}
neg ::= "NOT " neg | predicate
predicate ::= "EXISTS (" query ")" | sum (compare | null-test | in-test | like-test | range-test)?
compare ::= (" = " | " != " | " <> " | " < " | " > " | " <= " | " >= ") (sum | ("ALL " | "ANY ") "(" query ")")
null-test ::= " IS " ("NOT ")? "NULL"
in-test ::= (" NOT")? " IN (" (query | literal (", " literal){0,19}) ")"
like-test ::= (" NOT")? (" LIKE " | " ILIKE ") string
range-test ::= " BETWEEN " sum " AND " sum
sum ::= product ((" + " | " - ") product){0,3}
product ::= factor ((" * " | " / ") factor){0,3}
factor ::= column-ref | literal | call | "(" expr ")" | "(" query ")" | "-" factor
call ::= aggregate "(" ("*" | ("DISTINCT ")? expr) ")" | scalar "(" expr (", " expr){0,3} ")" | "CAST(" expr " AS " type ")"
type ::= "INTEGER" | "BIGINT" | "DOUBLE" | "VARCHAR" | "DATE"
literal ::= number | string | "NULL" | "TRUE" | "FALSE"
number ::= [0-9]{1,15} ("." [0-9]{1,10})?
string ::= "'" ([^'\\\n] | "''"){0,80} "'"
name ::= [a-zA-Z_] [a-zA-Z0-9_]{0,15}
column-ref ::= ((table | table-name | alias) ".")? column
"""


_UNTYPED_REF = 'column-ref ::= ((table | table-name | alias) ".")? column'


def _literal(text: str) -> str:
    """``text`` as a grammar string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alternatives(rule: str, options: Sequence[str]) -> str:
    return f"{rule} ::= " + " | ".join(_literal(o) for o in options)


def _either_case(words: Sequence[str]) -> list[str]:
    # Code models write functions in both cases (``count(*)``); a forced case steers them off course.
    return [spelling for w in words for spelling in (w, w.lower())]


def sql_grammar(tables: Sequence[TableInfo], *, qualified: bool = False) -> str:
    """The grammar of read-only queries over ``tables`` (their names and columns only).

    ``qualified``: over several tables, every column is written with its table (``city.population``,
    ``geo.city.population``, ``city1.population`` for an alias named after the table) and only
    that table's columns may follow it, so a join never leaves a name ambiguous and a column is
    never read from the wrong table; a short alias (``t1.x``, for a subquery) takes any column
    and the binder checks it.

    Raises ``ValueError`` when there is no table or no column: no query could be written.
    """
    names = sorted({t.sql_name for t in tables})
    bare = sorted({quote_identifier(t.name) for t in tables})
    columns = sorted({quote_identifier(c) for t in tables for c, _ in t.columns})
    if not names or not columns:
        raise ValueError("a SQL grammar needs at least one table with at least one column")
    typed: list[str] = []
    if qualified and len(tables) > 1:
        refs = []
        for i, t in enumerate(sorted(tables, key=lambda t: t.qualified)):
            table_names = [t.sql_name, quote_identifier(t.name)]
            typed.append(
                f"qualifier{i} ::= "
                + " | ".join(_literal(n) for n in table_names)
                + f" | {_literal(quote_identifier(t.name))} [0-9]"
            )
            typed.append(_alternatives(f"column{i}", sorted({quote_identifier(c) for c, _ in t.columns})))
            refs.append(f'qualifier{i} "." column{i}')
        typed.append("column-ref ::= " + " | ".join(refs) + ' | short-alias "." column')
    rules = _RULES.strip()
    if typed:
        rules = rules.replace(_UNTYPED_REF, "")
    return "\n".join(
        [
            rules,
            *typed,
            _alternatives("aggregate", _either_case(AGGREGATES)),
            _alternatives("scalar", _either_case(_scalars(tables))),
            "alias ::= table-name [0-9]? | short-alias",
            _short_aliases(tables),
            _alternatives("table", names),
            _alternatives("table-name", bare),
            _alternatives("column", columns),
            "",
        ]
    )


def _scalars(tables: Sequence[TableInfo]) -> list[str]:
    """The scalar functions, less those spelt as a column: with a column ``length``, Qwen asked "how
    long is the colorado river" wrote ``LENGTH(river.river_name, ...)`` and never the column."""
    taken = {c.lower() for t in tables for c, _ in t.columns}
    return [f for f in SCALAR_FUNCTIONS if f.lower() not in taken] or list(SCALAR_FUNCTIONS)


# Two-letter words a short alias must not be: a keyword would end the clause it stands in.
_KEYWORDS = frozenset({"as", "at", "by", "if", "in", "is", "no", "of", "on", "or", "to"})


def _short_aliases(tables: Sequence[TableInfo]) -> str:
    """``short-alias``: a letter, a letter and a digit, or a table's initials or first two or three
    letters (and a digit), none of them spelling a column name, a table name or a keyword.

    The grammar cannot see which aliases the ``FROM`` clause declared (that is not context-free), so
    it keeps the spellings an alias takes apart from those a column takes: a column name in front of
    a dot (``id.id``) is never a reference, and the binder reports an undeclared alias.
    """
    taken = {c.lower() for t in tables for c, _ in t.columns} | {t.name.lower() for t in tables} | _KEYWORDS
    letters = "".join(ch for ch in "abcdefghijklmnopqrstuvwxyz" if ch not in taken)
    options = [f"[{letters}{letters.upper()}]"] if letters else []
    # A letter and a digit (T1), unless a column is spelt so (a1): then that letter takes the other digits.
    free = "".join(ch for ch in "abcdefghijklmnopqrstuvwxyz" if not any(ch + d in taken for d in "0123456789"))
    if free:
        options.append(f"[{free}{free.upper()}] [0-9]")
    for ch in sorted(set("abcdefghijklmnopqrstuvwxyz") - set(free)):
        digits = "".join(d for d in "0123456789" if ch + d not in taken)
        if digits:
            options.append(f"[{ch}{ch.upper()}] [{digits}]")
    words: set[str] = set()
    for t in tables:
        parts = [p for p in re.split(r"[^a-z0-9]+", t.name.lower()) if p and p[0].isalpha()]
        if len(parts) > 1:
            words.add("".join(p[0] for p in parts)[:3])
        if parts:
            words.update(parts[0][:n] for n in (2, 3) if len(parts[0]) > n)
    for word in sorted(w for w in words if len(w) > 1 and w.isalnum() and w not in taken):
        # Models write aliases in either case (st, ST); a digit may follow unless that spells a column.
        for spelling in (word, word.upper()):
            digits = "".join(d for d in "0123456789" if word + d not in taken)
            options.append(_literal(spelling) + (f" [{digits}]?" if digits else ""))
    return "short-alias ::= " + (" | ".join(f"({o})" for o in options) if options else '"t0"')


@functools.lru_cache(maxsize=16)
def _compiled(grammar: str) -> Any:
    try:
        import xgrammar
    except ImportError as exc:
        raise ConfigError("checking SQL against a grammar needs xgrammar: pip install 'grounded[tools]'") from exc
    # A one-token vocabulary: the check is on characters, the stop token asks "is the query complete?".
    info = xgrammar.TokenizerInfo(["</s>"], stop_token_ids=[0])
    return xgrammar.GrammarCompiler(info, max_threads=1).compile_grammar(grammar, root_rule_name="root")


def accepts(grammar: str, sql: str, *, prefix: bool = False) -> bool:
    """Whether ``sql`` is a complete string of ``grammar`` (what decoding under it could write),
    or with ``prefix``, the start of one (what decoding cut off by ``max_tokens`` could write).

    >>> accepts(sql_grammar([TableInfo("geo", "state", (("area", "DOUBLE"),))]), "SELECT MAX(area) FROM geo.state")
    True
    """
    import xgrammar

    matcher = xgrammar.GrammarMatcher(_compiled(grammar))
    return bool(matcher.accept_string(sql) and (prefix or matcher.accept_token(0)))
