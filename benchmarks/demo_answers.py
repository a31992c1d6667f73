"""What a new user sees: the demo's questions and questions its corpus cannot answer.

    python benchmarks/demo_answers.py --kb .bench/demo-kb [--checks DIR ...] [--lexical] [--json OUT]

Asks the demo knowledge base (``grounded demo``: the Python language reference) questions it can
answer (the demo's example and a few more on the language) and questions it cannot (general
knowledge, other libraries), through the whole answer path with the default writer, and prints
each answer beside the gate's decision. Figures: the share of answerable questions answered and
of off-corpus questions refused. Read the answers too: a rate does not show a wrong or garbled one.

``--checks DIR ...``: the trained checks models to compare (default: the active one);
``--lexical`` adds the fallback without one (word overlap, similarity threshold). One writer
(greedy, so the same draft whenever it writes) serves every configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grounded

ANSWERABLE = (
    "What does the with statement call when the block exits?",
    "What is the precedence of not compared to and?",
    "What happens when a generator is closed?",
    "What does the pass statement do?",
    "How do I leave the innermost loop early?",
    "What does a lambda expression create?",
    "When is the else clause of a for loop executed?",
    "What happens when the expression of an assert statement is false?",
)
OFF_CORPUS = (
    "Who won the 1998 FIFA World Cup final?",
    "What is the capital of Australia?",
    "How do I install numpy with pip?",
    "What is the boiling point of water at sea level?",
    "Who wrote the novel Pride and Prejudice?",
    "How many moons does Jupiter have?",
    "How do I configure logging in Django?",
    "What is the time complexity of quicksort?",
)


def ask_all(engine: Any) -> list[dict[str, Any]]:
    rows = []
    for questions, answerable in ((ANSWERABLE, True), (OFF_CORPUS, False)):
        for q in questions:
            started = time.perf_counter()
            answer = engine.answer(q, use_cache=False)
            checks = answer.trace.get("checks", {})
            rows.append(
                {
                    "question": q,
                    "answerable": answerable,
                    "abstained": answer.abstained,
                    "answerability": answer.answerability,
                    "text": answer.text,
                    "gate": checks.get("gate"),
                    "best_similarity": checks.get("best_similarity"),
                    "sentences": checks.get("sentences", []),
                    "seconds": round(time.perf_counter() - started, 2),
                }
            )
            label = f"{rows[-1]['gate']}, {answer.answerability}"
            print(f"[{'A' if answerable else 'X'}] {q}\n    -> {answer.text}  ({label})", flush=True)
    return rows


def main() -> int:
    from grounded.answering.engine import GroundingEngine
    from grounded.answering.trust import Checks
    from grounded.checks import AnswerabilityGate, CrossEncoder, EntailmentChecker, active_model_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", type=Path, default=Path(".bench/demo-kb"), help="the demo knowledge base")
    ap.add_argument("--checks", type=Path, nargs="*", default=None, help="trained checks models (default: active)")
    ap.add_argument("--lexical", action="store_true", help="also without trained checks (the fallback)")
    ap.add_argument("--json", type=Path, help="write the answers and figures here")
    args = ap.parse_args()
    kb = grounded.open(args.kb, create=False, answer={"cache": False})
    configs: dict[str, Checks] = {}
    for directory in args.checks if args.checks is not None else [active_model_dir()]:
        model = CrossEncoder(directory)
        version = (model.meta.get("combination") or {}).get("version", 0)  # two calibrations of one model
        configs[f"checks {directory.name[:8]} v{version}"] = Checks(EntailmentChecker(model), AnswerabilityGate(model))
    if args.lexical:
        configs["lexical"] = Checks(None, None)
    writer = kb.engine.expert
    report: dict[str, Any] = {}
    for label, checks in configs.items():
        print(f"== {label}", flush=True)
        rows = ask_all(GroundingEngine(kb.store, expert=writer, checks=checks))
        ans = [r for r in rows if r["answerable"]]
        off = [r for r in rows if not r["answerable"]]
        # A clarifying question back is neither an answer nor a refusal: counted apart.
        asked = [r for r in rows if r["answerability"] == "underspecified"]
        answered = sum(not r["abstained"] and r not in asked for r in ans)
        refused = sum(r["abstained"] for r in off)
        report[label] = {
            "answered": f"{answered}/{len(ans)}",
            "refused_off_corpus": f"{refused}/{len(off)}",
            "asked_back": f"{sum(r in asked for r in ans)}/{len(ans)} answerable, {sum(r in asked for r in off)}/{len(off)} off-corpus",
            "load": os.getloadavg(),
            "rows": rows,
        }
        print(
            f"{label}: answerable answered {answered}/{len(ans)}, off-corpus refused {refused}/{len(off)}, "
            f"asked back {report[label]['asked_back']}\n"
        )
    for label, r in report.items():
        print(
            f"{label}: answered {r['answered']}, off-corpus refused {r['refused_off_corpus']}, asked back {r['asked_back']}",
            file=sys.stderr,
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
