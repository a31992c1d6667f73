"""Follow-up questions on MTRAG-UN: retrieval as asked vs rewritten, and the four answerability cases.

    python benchmarks/conversations.py --data ../shared/data/mtrag [--json OUT] [--answers N]

Reads every ``mtragun_*.jsonl`` in ``--data`` (MTRAG-UN tasks: a conversation whose last user
turn is the question, the reference passages of that turn as ``contexts``, a reference answer,
and an answerability class) and builds one knowledge base per domain (``Collection``) from the
union of the tasks' ``contexts`` passages, in ``--work`` (never inside the repository).

Part 1, retrieval (no answer expert): for every task with reference passages, Recall@5 and
nDCG@10 of those passages for the last turn searched three ways: as asked, as rewritten by
grounded's rule rewriter (``conversation.rewrite = "rules"``), and, for comparison, with every
earlier user turn appended (``all user turns``). With ``--expert-rewrite`` the answer expert's
rewrite is measured too. Also: how many turns the cue check rewrote, and its cost.

Part 2, answers (``--answers N``: N tasks of each class, spread over the file, 0 = none, -1 = all): each
task's last turn answered with its conversation (``kb.ask(question, history=...)``) and
judged by its class: ANSWERABLE handled right when answered; PARTIAL when answered with what is
missing said (``answerability == "partial"``; "answered" is reported too); UNANSWERABLE when
abstained; UNDERSPECIFIED when the answer is a clarifying question. Answer-word recall is the
share of the reference answer's content words found in the answer (answered ANSWERABLE and
PARTIAL tasks); p50 is the in-process time per turn, with the load average beside it.
``--answerability rules|model|auto`` picks what decides underspecified and partial
(``answer.answerability``); every class is also reported on the *held-out* conversations alone:
the test split of ``grounded tune answerability`` (by dialogue), which the model never saw.
``--split train|dev|test`` answers only that split's conversations (choose on dev, report test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grounded
from grounded.answering.conversation import Turn, needs_rewrite, rewrite_question
from grounded.kb import KnowledgeBase
from grounded.text import content_terms
from grounded.tune.answerability import collection_kbs, task_split

CLASSES = ("ANSWERABLE", "PARTIAL", "UNANSWERABLE", "UNDERSPECIFIED")
HANDLED_GOAL = 0.70


def load_tasks(data: Path) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    files = sorted(data.glob("mtragun_*.jsonl"))
    if not files:
        raise SystemExit(f"no mtragun_*.jsonl in {data}")
    for path in files:
        with open(path, encoding="utf-8") as fh:
            tasks.extend(json.loads(line) for line in fh if line.strip())
    return tasks


def conversation(task: dict[str, Any]) -> tuple[str, list[Turn]]:
    turns = [Turn("user" if t["speaker"] == "user" else "assistant", t["text"]) for t in task["input"]]
    while turns and turns[-1].role != "user":
        turns.pop()
    return turns[-1].text, turns[:-1]


def key_map(kb: KnowledgeBase) -> dict[str, str]:
    rows = kb.snapshot().store.cursor().execute("SELECT doc_id, key FROM documents").fetchall()
    return {str(d): str(k).split("#", 1)[-1] for d, k in rows}


def recall_ndcg(ranked: list[str], gold: set[str]) -> tuple[float, float]:
    recall = len(set(ranked[:5]) & gold) / len(gold)
    seen: set[str] = set()
    dcg = 0.0
    for i, key in enumerate(ranked[:10]):
        if key in gold and key not in seen:
            dcg += 1 / math.log2(i + 2)
            seen.add(key)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(gold), 10)))
    return recall, dcg / ideal


def retrieval(tasks: list[dict[str, Any]], kbs: dict[str, KnowledgeBase], expert_rewrite: bool) -> dict[str, Any]:
    keys = {d: key_map(kb) for d, kb in kbs.items()}
    variants = ["asked", "rewritten", "rules, 1 turn", "all user turns"] + (
        ["expert rewrite"] if expert_rewrite else []
    )
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {v: defaultdict(list) for v in variants}
    rewritten = 0
    cue_s: list[float] = []
    judged = [t for t in tasks if t["contexts"]]
    for n, task in enumerate(judged, 1):
        domain = task["Collection"]
        question, history = conversation(task)
        t = time.perf_counter()
        rewrite = rewrite_question(question, history)
        cue_s.append(time.perf_counter() - t)
        rewritten += rewrite.changed
        queries = {
            "asked": question,
            "rewritten": rewrite.text,
            "rules, 1 turn": rewrite_question(question, history, max_turns=1).text,
            "all user turns": " ".join([*(x.text for x in history if x.role == "user"), question]),
        }
        if expert_rewrite:
            queries["expert rewrite"] = rewrite_question(
                question, history, mode="expert", expert=kbs[domain].engine.expert
            ).text
        gold = {c["document_id"] for c in task["contexts"]}
        for variant, query in queries.items():
            ranked = [keys[domain][h.doc_id] for h in kbs[domain].search(query[:2000], k=10)]
            score = recall_ndcg(ranked, gold)
            scores[variant][domain].append(score)
            scores[variant]["all"].append(score)
            if rewrite.changed:
                scores[variant]["rewritten turns"].append(score)
        if n % 50 == 0:
            print(f"  retrieval {n}/{len(judged)}", file=sys.stderr)
    table = {
        v: {g: {"recall@5": _mean(s[0] for s in rows), "ndcg@10": _mean(s[1] for s in rows), "n": len(rows)}
            for g, rows in sorted(by.items())}
        for v, by in scores.items()
    }  # fmt: skip
    return {
        "tasks": len(judged),
        "rewritten": rewritten,
        "cue_check_us_p50": statistics.median(cue_s) * 1e6,
        "cue_share": _share(needs_rewrite(*conversation(t)) is not None for t in judged),
        "scores": table,
    }


def answers(
    tasks: list[dict[str, Any]], kbs: dict[str, KnowledgeBase], per_class: int, out: Path | None
) -> dict[str, Any]:
    by_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for task in tasks:
        by_class[task["answerability"][0]].append(task)
    # Every k-th task of a class, not the first N (they come from a few conversations), the
    # classes interleaved, so that an interrupted run has measured each of them.
    picked = {
        c: by_class[c] if per_class < 0 else by_class[c][:: max(1, len(by_class[c]) // per_class)][:per_class]
        for c in CLASSES
    }
    chosen = [picked[c][i] for i in range(max(map(len, picked.values()))) for c in CLASSES if i < len(picked[c])]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for n, task in enumerate(chosen, 1):
        question, history = conversation(task)
        kb = kbs[task["Collection"]]
        t = time.perf_counter()
        answer = kb.ask(question, history=history, use_cache=False)
        seconds = time.perf_counter() - t
        reference = task["targets"][0]["text"] if task["targets"] else ""
        ref_words = content_terms(reference)
        decided = answer.trace.get("answerability", {})
        rows.append(
            {
                "task_id": task["task_id"],
                "split": task_split(task),
                "model": {
                    k: v["probability"]
                    for k, v in decided.get("model", {}).items()
                    if isinstance(v, dict) and "probability" in v
                },
                # What the rules would have said (model mode; None: unknown, asked again with the rules below).
                "rules": decided["model"].get("rules") if "model" in decided else answer.answerability,
                "class": task["answerability"][0],
                "answerability": answer.answerability,
                "abstained": answer.abstained,
                "rewrite": answer.rewrite,
                "text": answer.text,
                "word_recall": len(ref_words & content_terms(answer.text)) / len(ref_words) if ref_words else 0.0,
                "seconds": seconds,
            }
        )
        if n % 4 == 0:
            rate = (time.perf_counter() - started) / n
            print(f"  answers {n}/{len(chosen)}, {rate:.1f} s each", file=sys.stderr)
            if out is not None:  # what finished survives an interrupted run
                out.write_text(json.dumps({"answers": summarise(rows)}, indent=1))
    # The model found these underspecified where the rules would have answered: ask them as the rules do, so
    # one run gives both columns (the rest of the pipeline does not depend on the model).
    by_id = {t["task_id"]: t for t in chosen}
    ruled: dict[str, KnowledgeBase] = {}
    for row in rows:
        if row["rules"] is None:
            task = by_id[row["task_id"]]
            question, history = conversation(task)
            domain = task["Collection"]
            if domain not in ruled:
                ruled[domain] = grounded.open(kbs[domain].path, create=False, answer={"answerability": "rules"})
            row["rules"] = ruled[domain].ask(question, history=history, use_cache=False).answerability
    return summarise(rows)


def handled(row: dict[str, Any], key: str = "answerability") -> bool:
    label = row[key]
    return {
        "ANSWERABLE": label in ("answerable", "partial"),
        "PARTIAL": label == "partial",
        "UNANSWERABLE": label == "unanswerable",
        "UNDERSPECIFIED": label == "underspecified",
    }[row["class"]]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [r["seconds"] for r in rows]
    held_out = [r for r in rows if r.get("split") == "test"]
    return {
        "classes": _per_class(rows),
        "held_out": _per_class(held_out),
        "rules": {"classes": _per_class(rows, "rules"), "held_out": _per_class(held_out, "rules")},
        "p50_s": statistics.median(seconds) if seconds else None,
        "p95_s": sorted(seconds)[int(0.95 * (len(seconds) - 1))] if seconds else None,
        "load_average": os.getloadavg(),
        "rows": rows,
    }


def _per_class(rows: list[dict[str, Any]], key: str = "answerability") -> dict[str, Any]:
    per: dict[str, Any] = {}
    for cls in CLASSES:
        mine = [r for r in rows if r["class"] == cls]
        if not mine:
            continue
        answered = [r for r in mine if r[key] in ("answerable", "partial")]
        per[cls] = {
            "n": len(mine),
            "handled": _share(handled(r, key) for r in mine),
            "answered": _share(r[key] in ("answerable", "partial") for r in mine),
            "labels": dict(Counter(r[key] for r in mine)),
            "word_recall": _mean(r["word_recall"] for r in answered) if cls in ("ANSWERABLE", "PARTIAL") else None,
        }
    return per


def _mean(values: Any) -> float:
    values = list(values)
    return statistics.fmean(values) if values else 0.0


def _share(flags: Any) -> float:
    values = [bool(f) for f in flags]
    return sum(values) / len(values) if values else 0.0


def print_tables(result: dict[str, Any]) -> None:
    r = result.get("retrieval")
    if r:
        _print_retrieval(r)
    a = result.get("answers")
    if a:
        _print_answers(a)


def _print_retrieval(r: dict[str, Any]) -> None:
    print(f"\nRetrieval, last turn ({r['tasks']} tasks with reference passages; {r['rewritten']} rewritten)")
    print(f"{'query':<16} {'group':<16} {'n':>4} {'R@5':>6} {'nDCG@10':>8}")
    for variant, groups in r["scores"].items():
        for group, s in groups.items():
            print(f"{variant:<16} {group:<16} {s['n']:>4} {s['recall@5']:>6.3f} {s['ndcg@10']:>8.3f}")
    print(f"cue check p50 {r['cue_check_us_p50']:.0f} µs; turns with a follow-up cue {r['cue_share']:.1%}")


def _print_answers(a: dict[str, Any]) -> None:
    if a:
        tables = [("all tasks", a.get("classes", {})), ("held-out conversations", a.get("held_out", {}))]
        tables += [(f"{t}, as the rules decide", a.get("rules", {}).get(k, {})) for t, k in
                   (("all tasks", "classes"), ("held-out conversations", "held_out"))]  # fmt: skip
        for title, table in tables:
            print(f"\nAnswers, {title} (goal: >= {HANDLED_GOAL:.0%} handled on each class)")
            print(f"{'class':<16} {'n':>4} {'handled':>8} {'answered':>9} {'word recall':>12}  labels")
            for cls, s in table.items():
                wr = f"{s['word_recall']:.3f}" if s["word_recall"] is not None else "-"
                print(f"{cls:<16} {s['n']:>4} {s['handled']:>8.1%} {s['answered']:>9.1%} {wr:>12}  {s['labels']}")
        load = ", ".join(f"{x:.2f}" for x in a["load_average"])
        print(f"p50 {a['p50_s']:.2f} s, p95 {a['p95_s']:.2f} s per turn (load average {load})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with mtragun_*.jsonl")
    parser.add_argument("--work", type=Path, default=Path("/tmp/grounded-bench-mtrag"), help="knowledge bases")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--answers", type=int, default=0, help="tasks per class to answer (-1: all, 0: none)")
    parser.add_argument("--expert-rewrite", action="store_true", help="also measure the expert's rewrite")
    parser.add_argument("--no-retrieval", action="store_true", help="skip part 1 (retrieval)")
    parser.add_argument(
        "--answerability", choices=("auto", "model", "rules"), default="auto", help="answer.answerability"
    )
    parser.add_argument(
        "--split",
        choices=("all", "train", "dev", "test"),
        default="all",
        help="answer only one split of the conversations (by dialogue; test: the held-out ones)",
    )
    args = parser.parse_args()
    tasks = load_tasks(args.data)
    kbs = collection_kbs(
        tasks, args.work, lambda m: print(m, file=sys.stderr), answer={"answerability": args.answerability}
    )
    result: dict[str, Any] = {} if args.no_retrieval else {"retrieval": retrieval(tasks, kbs, args.expert_rewrite)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.answers:
        asked = tasks if args.split == "all" else [t for t in tasks if task_split(t) == args.split]
        result["answers"] = answers(asked, kbs, args.answers, args.json)
    print_tables(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
