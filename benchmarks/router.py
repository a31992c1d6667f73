"""Router accuracy on a labelled mix: ClapNQ questions (unstructured) and GeoQuery questions
(structured), with the GeoQuery tables mirrored so schema linking has something to find.

    .venv/bin/python benchmarks/router.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from _grounding import clapnq_questions, geo_kb, geo_questions
from _report import add_json_option, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path(".bench/geo-kb"))
    add_json_option(parser)
    args = parser.parse_args()

    from grounded.grounding.router import Router
    from grounded.sql.database import ReadOnlyDatabase
    from grounded.sql.schema_link import SchemaLinker

    kb = geo_kb(args.data / "geoquery", args.work)
    db = ReadOnlyDatabase.for_version(kb.snapshot().version.store_path)
    linker = SchemaLinker.for_version(db, kb.embedder)
    router = Router(kb.embedder)
    labelled = [(q, "unstructured") for q in clapnq_questions(args.data / "clapnq")]
    labelled += [(q, "structured") for q, _ in geo_questions(args.data / "geoquery", ("dev", "test"))]
    confusion: Counter[tuple[str, str]] = Counter()
    started = time.perf_counter()
    mistakes = []
    for question, gold in labelled:
        decision = router.route(question, linker.link(question))
        # multi_step on a structured question still goes to the tables: count it as structured.
        got = "structured" if decision.route == "multi_step" and decision.links else decision.route
        confusion[(gold, got)] += 1
        if got != gold and len(mistakes) < 8:
            mistakes.append((gold, got, question, decision.reason))
    elapsed = time.perf_counter() - started
    total = len(labelled)
    correct = sum(n for (g, p), n in confusion.items() if g == p)
    print(
        f"| labelled questions | {total} (ClapNQ {sum(1 for _, g in labelled if g == 'unstructured')}, GeoQuery dev+test {sum(1 for _, g in labelled if g == 'structured')}) |"
    )
    print(f"| router accuracy | {correct / total:.3f} |")
    for gold in ("unstructured", "structured"):
        row = {p: n for (g, p), n in confusion.items() if g == gold}
        print(f"| gold {gold} -> | {dict(sorted(row.items()))} |")
    print(f"| latency per question (route + link) | {elapsed / total * 1000:.1f} ms |")
    for gold, got, question, reason in mistakes:
        print(f"  {gold} -> {got}: {question!r} ({reason})")
    write_json(
        args.json,
        {
            "questions": total,
            "accuracy": correct / total,
            "confusion": {f"{g}->{p}": n for (g, p), n in sorted(confusion.items())},
            "ms_per_question": elapsed / total * 1000,
        },
    )


if __name__ == "__main__":
    main()
