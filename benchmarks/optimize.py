"""``grounded optimize`` on ClapNQ dev or SciFact: the configured settings vs the chosen ones per objective.

    python benchmarks/optimize.py --data ../shared/data/clapnq --questions 20 --json clapnq.json
    python benchmarks/optimize.py --data ../shared/data/scifact --questions 20 --json scifact.json

ClapNQ: a knowledge base of ``derived_dev_passages.jsonl`` (593 passages); the first
``--questions`` answerable dev questions (reference answer, gold passage) and as many
unanswerable ones. SciFact: a knowledge base of the abstracts judged for the first
``--questions`` test claims plus ``--distractors`` others (the first by id); each claim is an
answerable question whose gold documents are its judged abstracts (no reference answer, no
unanswerable ones).

The search runs once per objective — ``balanced`` first, then ``quality`` and ``latency`` — on
the same workload and journal, so a configuration measured for one objective is replayed, not
measured again, for the next (the table gives each run's measured and replayed answers and its
wall time). For each objective: the configured settings (baseline) and the chosen ones on the
held-back questions (30%, never seen by the search), answered in turns in the run that chose.
Prints one table and writes everything to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grounded
from grounded.kb import KnowledgeBase

OBJECTIVES = ("balanced", "quality", "latency")


def clapnq(data: Path, work: Path, n: int) -> tuple[KnowledgeBase, list[dict[str, Any]]]:
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    copy = corpus / "corpus.jsonl"  # a copy: the files connector does not follow a symlink out of the folder
    if not copy.exists():
        shutil.copyfile(data / "derived_dev_passages.jsonl", copy)
    kb = grounded.open(work / "kb")
    if kb.version is None:
        kb.ingest(corpus, source="clapnq")
    with open(data / "derived_dev_passages.jsonl", encoding="utf-8") as fh:
        gold = {p["text"]: p["_id"] for p in map(json.loads, fh)}
    questions: list[dict[str, Any]] = []
    for name, answerable in (("dev_answerable.jsonl", True), ("dev_unanswerable.jsonl", False)):
        with open(data / name, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()][:n]
        for r in rows:
            q: dict[str, Any] = {"question": r["input"], "answerable": answerable}
            if answerable:
                q["answer"] = r["output"][0]["answer"]
                doc = gold.get(r["passages"][0]["text"])
                q["doc_ids"] = [doc] if doc else []
            questions.append(q)
    return kb, questions


def scifact(data: Path, work: Path, n: int, distractors: int) -> tuple[KnowledgeBase, list[dict[str, Any]]]:
    qrels: dict[str, list[str]] = {}
    with open(data / "qrels" / "test.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            qid, doc, _ = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, []).append(doc)
    chosen = sorted(qrels, key=int)[:n]
    with open(data / "queries.jsonl", encoding="utf-8") as fh:
        text = {q["_id"]: q["text"] for q in map(json.loads, fh)}
    wanted = {d for q in chosen for d in qrels[q]}
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    path = corpus / "corpus.jsonl"
    if not path.exists():
        with open(data / "corpus.jsonl", encoding="utf-8") as fh:
            docs = [json.loads(line) for line in fh]
        others = sorted((d for d in docs if d["_id"] not in wanted), key=lambda d: d["_id"])[:distractors]
        with open(path, "w", encoding="utf-8") as out:
            for d in [d for d in docs if d["_id"] in wanted] + others:
                out.write(json.dumps({"_id": d["_id"], "title": d["title"], "text": d["text"]}) + "\n")
    kb = grounded.open(work / "kb")
    if kb.version is None:
        kb.ingest(corpus, source="scifact")
    return kb, [{"question": text[q], "doc_ids": qrels[q]} for q in chosen]


def fmt(m: dict[str, Any] | None, name: str) -> str:
    value = m.get(name) if m else None
    if value is None:
        return "-"
    return f"{value:.2f} s" if name in ("p50", "p95") else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="../shared/data/clapnq or ../shared/data/scifact")
    parser.add_argument("--json", type=Path, help="write the reports here")
    parser.add_argument("--work", type=Path, default=None, help="where the knowledge base is built (kept)")
    parser.add_argument("--questions", type=int, default=20, help="answerable (and, ClapNQ, unanswerable) questions")
    parser.add_argument("--distractors", type=int, default=300, help="SciFact: abstracts besides the judged ones")
    parser.add_argument("--trials", type=int, default=12, help="configurations tried per objective")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES))
    parser.add_argument("--restart", action="store_true", help="measure everything again (forget the journal)")
    args = parser.parse_args()
    name = "scifact" if (args.data / "qrels").is_dir() else "clapnq"
    work = args.work or Path(".bench") / f"optimize-{name}"
    started = time.perf_counter()
    if name == "scifact":
        kb, questions = scifact(args.data, work, args.questions, args.distractors)
    else:
        kb, questions = clapnq(args.data, work, args.questions)
    kb = grounded.open(work / "kb", create=False, answer={"cache": False})
    counts = kb.stats()
    print(
        f"{name}: {len(questions)} questions; KB {counts['documents']} documents, {counts['chunks']} chunks, "
        f"ready in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )

    def progress(done: int, total: int, eta: float) -> None:
        if done % 20 == 0 or done == total:
            print(f"  {done}/{total} answers, {eta / 60:.1f} min left", file=sys.stderr, flush=True)

    from grounded.optimize import run_optimize

    reports: dict[str, Any] = {}
    for i, objective in enumerate(args.objectives.split(",")):
        t = time.perf_counter()
        report = run_optimize(
            kb.store,
            questions=questions,
            objective=objective,
            trials=args.trials,
            restart=args.restart and i == 0,
            progress=progress,
        )
        reports[objective] = {**report.data, "wall_s": round(time.perf_counter() - t, 1)}
        print(f"{objective}: {report.changes or 'baseline'} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        if args.json:  # after each objective: a run stopped later keeps what it measured
            args.json.write_text(
                json.dumps({"data": name, "questions": len(questions), "load": os.getloadavg(), "reports": reports},
                           indent=2),
                encoding="utf-8",
            )  # fmt: skip
    load = os.getloadavg()
    cols = ("answer_rate", "abstention", "gold_cited", "recall", "score", "p50", "p95")
    print(f"\n{name}, {len(questions)} questions; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        "| objective | chosen (changes) | search s (measured / replayed answers) | held-back: | "
        + " | ".join(cols)
        + " |"
    )
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in cols) + " |")
    for objective, r in reports.items():
        held = r.get("held_out") or {}
        changes = ", ".join(f"{k} {a}->{b}" for k, (a, b) in r["changes"].items()) or "(baseline)"
        for who in ("baseline", "chosen"):
            lead = (
                f"| {objective} | {changes} | {r['wall_s']:.0f} ({r['answers_measured']} / {r['answers_replayed']}) |"
                if who == "baseline"
                else "| | | |"
            )
            print(f"{lead} {who} | " + " | ".join(fmt(held.get(who), c) for c in cols) + " |")


if __name__ == "__main__":
    main()
