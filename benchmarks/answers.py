"""Answer quality and speed on ClapNQ dev: cited, verified answers vs. abstentions.

    python benchmarks/answers.py --data ../shared/data/clapnq

Builds a knowledge base from ``derived_dev_passages.jsonl`` (BEIR-style: _id, title, text),
asks the answerable and unanswerable dev questions and prints one table:

* retrieval: gold passage in the top 5
* answer rate (answerable, goal >= 85%), abstention rate (unanswerable, goal >= 80%)
* share of answered questions citing the gold passage (goal >= 95%)
* token F1 and ROUGE-L against the human answers (answered answerable questions)
* share of answer sentences whose content words appear in the cited passage (after
  verification), share of the model's sentences that passed as written, share quoted verbatim
* determinism: questions asked again in a fresh process, canonical answers byte-compared
* /v1/query p50/p95 over HTTP (uvicorn on loopback), prefill and decode tokens/s, and
  llama-cpp-python's on the same GGUF when it is installed
* prompt tokens (mean, p50) and in-process answer time p50, with the load average

``--tuned`` asks every question twice, with the configured answer expert and its long prompt
(``answer.tuned`` off) and with the knowledge base's active tuned answer expert (``grounded
tune answer --kb WORK/kb``) and its short prompt, and prints the two side by side.

``--checks [DIR ...]`` (default: the active checks model, if one is trained) applies the trained
checks (:mod:`grounded.answering.trust`) to the *same drafts*: each question's draft is written
once, with the lexical verifier and no threshold, then the answerability gate and the
entailment-checked verifier of each model (and each ``answer.relevance`` policy) decide on it,
so today's verifier and the checker print side by side from one run of the writer. The checks
columns are also reported on the ClapNQ questions the checks model never trained on (their id
hashes into the recipe's dev or test split; ``test`` alone is the figure nothing was chosen on).

The abstention threshold (``answer.min_evidence_similarity``) is tuned on the even-numbered
questions (the largest threshold that keeps the answer rate >= 85% there) and reported on
the odd-numbered ones (held out) and on all. Every question is first answered with the
threshold off, so the sweep needs no extra model calls.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grounded
from grounded.answering.types import Answer
from grounded.kb import KnowledgeBase

ANSWER_GOAL, ABSTAIN_GOAL, GOLD_CITE_GOAL = 0.85, 0.80, 0.95
DEFAULT_THRESHOLD = 0.45
"""``answer.min_evidence_similarity``'s default: today's verifier as served."""


@dataclass
class Row:
    """One question's outcome with the abstention threshold off."""

    qid: str
    question: str
    answerable: bool
    gold_key: str | None
    reference: str
    top5_keys: list[str]
    best_similarity: float
    answer: dict[str, Any]
    cited_keys: list[str]
    raw_support: list[float] = field(default_factory=list)
    draft: dict[str, Any] = field(default_factory=dict)
    """What the writer wrote: ``parsed`` sentences with their citation ids, ``truncated`` by max tokens."""
    checked: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per trained-checks configuration: abstained, text, sentences, cited_keys, gate, findings."""
    split: str = ""
    """The checks recipe's split of this question (train / dev / test)."""


def load_questions(data: Path, limit: int | None) -> list[tuple[dict[str, Any], bool]]:
    """The first ``limit`` answerable and unanswerable questions, two of each in turn (a1 a2 u1 u2 a3 ...),
    so the run's rows saved so far are always balanced, and the even/odd split is the same sets as in
    file order (even: answerable and unanswerable at even positions)."""
    sets: list[list[tuple[dict[str, Any], bool]]] = []
    for name, answerable in (("dev_answerable.jsonl", True), ("dev_unanswerable.jsonl", False)):
        with open(data / name, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        sets.append([(r, answerable) for r in rows[:limit]])
    out: list[tuple[dict[str, Any], bool]] = []
    for k in range(0, max(len(s) for s in sets), 2):
        for s in sets:
            out.extend(s[k : k + 2])
    return out


def build_kb(data: Path, work: Path, overrides: dict[str, Any]) -> KnowledgeBase:
    import shutil

    corpus_dir = work / "corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    copy = corpus_dir / "corpus.jsonl"
    if copy.is_symlink():
        copy.unlink()  # the files connector skips links out of the folder: a copy (git-ignored, under .bench)
    if not copy.exists():
        shutil.copyfile(data / "derived_dev_passages.jsonl", copy)
    kb = grounded.open(work / "kb", **overrides)
    if kb.version is None:
        started = time.perf_counter()
        kb.ingest(corpus_dir, source="clapnq")
        print(f"built the knowledge base in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if not kb.stats()["documents"]:
        raise SystemExit(f"the knowledge base in {work / 'kb'} holds no document; remove it and run again")
    return kb


def key_map(kb: KnowledgeBase) -> dict[str, str]:
    rows = kb.snapshot().store.cursor().execute("SELECT doc_id, key FROM documents").fetchall()
    return {str(d): str(k).split("#", 1)[-1] for d, k in rows}


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def token_f1(prediction: str, reference: str) -> float:
    p, r = tokens(prediction), tokens(reference)
    common = sum((Counter(p) & Counter(r)).values())
    if not p or not r or not common:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def token_recall(prediction: str, reference: str) -> float:
    """Share of the human answer's words (with multiplicity) that the answer contains."""
    p, r = tokens(prediction), tokens(reference)
    return sum((Counter(p) & Counter(r)).values()) / len(r) if r else 0.0


def rouge_l(prediction: str, reference: str) -> float:
    p, r = tokens(prediction), tokens(reference)
    if not p or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for a in p:
        cur = [0]
        for j, b in enumerate(r):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def apply_checks(kb: KnowledgeBase, row: Row, checks: dict[str, Any], keys: dict[str, str]) -> None:
    """The trained checks' answer to ``row``'s draft, per configuration, into ``row.checked``
    (see the module docstring); the evidence pool is rebuilt from the answer's citations."""
    from grounded.answering.evidence import build_pool
    from grounded.answering.trust import FALLBACK, best_answering_quote, gate_evidence, verify_checked

    citations = Answer.from_dict(row.answer).citations
    pool = build_pool(row.question, citations, kb.embedder)
    parsed = [(text, tuple(ids)) for text, ids in row.draft.get("parsed", [])]
    out: dict[str, dict[str, Any]] = {}
    for label, c in checks.items():
        assert c.gate is not None
        started = time.process_time()
        passages = [x.text for x in citations if x.provenance is None]
        gate = gate_evidence(c.gate, row.question, passages, pool, kb.embedder)
        settings = kb.settings.answer.model_copy(update={"relevance": "off"})
        sentences, findings = ([], [])
        if parsed:
            sentences, findings = verify_checked(
                row.question, parsed, pool, kb.embedder, settings, c, truncated=bool(row.draft.get("truncated"))
            )
        by_id = {x.id: x for x in citations}
        # relevance = answer (the default) is relevance = off plus one rule, so both come from one run:
        # abstain unless some kept sentence (kept as written, or quoted) addresses the question.
        addressed = any(f.relevance is not None and f.relevance >= c.gate.relevance_threshold
                        for f in findings if f.decision in ("kept", "quoted"))  # fmt: skip
        # The answer's fallback quote (no drafted sentence answered) is run under relevance = answer only.
        with_fallback: list[Any] = []
        decided = c.gate.decision is not None
        served_unaddressed: list[Any] = []  # the engine's answer when no kept sentence addresses the question
        if not addressed:
            answer_settings = kb.settings.answer.model_copy(update={"relevance": "answer"})
            with_fallback, fallback_findings = verify_checked(
                row.question, parsed, pool, kb.embedder, answer_settings, c, truncated=bool(row.draft.get("truncated"))
            ) if parsed or decided else ([], [])  # fmt: skip
            served_unaddressed = with_fallback
            with_fallback = with_fallback if any(f.decision == FALLBACK for f in fallback_findings) else []
        # Extractive: the gate decides, and the answer is the evidence sentence that best answers the
        # question (quoted verbatim), whatever the draft says: what the checks alone can answer.
        floor = c.gate.decision_floor if decided else None
        extract = best_answering_quote(row.question, pool, c.gate, threshold=floor) if gate.answerable else None
        cpu_s = time.process_time() - started
        # And without the gate (the checker alone decides), to see what the gate adds.
        variants = (("", True, True, True), (" no fallback", True, True, False), (" rel=off", True, False, False),
                    (" no gate", False, True, True))  # fmt: skip
        for variant, gated, relevant, fallback in variants:
            chosen = with_fallback if fallback and with_fallback else sentences
            # With an answer decision the gate has weighed the best sentence's relevance: what it lets
            # through is answered (engine: verify_checked keeps the sentences, with the best quote first) when
            # some sentence reaches the decision's floor.
            ok = (
                addressed
                or bool(fallback and with_fallback)
                or (decided and fallback and bool(chosen) and bool(served_unaddressed))
            )
            abstained = (gated and not gate.answerable) or not chosen or (relevant and not ok)
            out[f"{label}{variant}"] = {
                "abstained": abstained,
                "gate": gate.probability,
                "answerable": gate.answerable,
                "gate_finding": gate.to_dict(),
                "text": "" if abstained else " ".join(s.cited for s in chosen),
                "sentences": []
                if abstained
                else [{"text": s.text, "quoted": s.quoted, "support": s.support} for s in chosen],
                "cited_keys": [] if abstained else sorted({keys[by_id[i].doc_id] for s in chosen for i in s.citations}),
                "findings": [f.to_dict() for f in findings],
                "cpu_s": cpu_s,
            }
        quote = [] if extract is None else [pool.sentence(extract[0])]
        out[f"{label} extractive"] = {
            "abstained": not quote,
            "gate": gate.probability,
            "answerable": gate.answerable,
            "text": " ".join(quote),
            "sentences": [{"text": q, "quoted": True, "support": 1.0} for q in quote],
            "cited_keys": [] if extract is None else [keys[by_id[pool.owners[extract[0]]].doc_id]],
            "findings": [],
            "cpu_s": cpu_s,
        }
    row.checked = out


def ask_all(
    kb: KnowledgeBase,
    questions: list[tuple[dict[str, Any], bool]],
    gold: dict[str, str],
    checks: dict[str, Any] | None = None,
    save: Path | None = None,
) -> list[Row]:
    from grounded.checks.data import split_of

    keys = key_map(kb)
    rows: list[Row] = []
    started = time.perf_counter()
    for n, (q, answerable) in enumerate(questions, start=1):
        top5 = [keys[h.doc_id] for h in kb.search(q["input"], k=5)]
        answer = kb.ask(q["input"], use_cache=False)
        draft = kb.engine.last_draft
        assert draft is not None
        cited = sorted({keys[c.doc_id] for c in answer.cited()}) if not answer.abstained else []
        rows.append(
            Row(
                qid=q["id"],
                question=q["input"],
                answerable=answerable,
                gold_key=gold.get(q["passages"][0]["text"]),
                reference=q["output"][0]["answer"] if q.get("output") else "",
                top5_keys=top5,
                best_similarity=draft.best_similarity,
                answer=json.loads(answer.canonical_json()) | {"timings": dict(answer.timings)},
                cited_keys=cited,
                raw_support=[c.word_support for c in draft.checks],
                draft={"parsed": [list(p) for p in draft.parsed], "truncated": draft.truncated},
                split=split_of(f"clapnq:{q['id']}"),
            )
        )
        if checks:
            apply_checks(kb, rows[-1], checks, keys)
        if n % 10 == 0 and save is not None:  # a run stopped early leaves its rows so far (balanced)
            save.write_text(json.dumps([r.__dict__ for r in rows], indent=1), encoding="utf-8")
        if n % 10 == 0:
            rate = (time.perf_counter() - started) / n
            print(f"  {n}/{len(questions)} questions, {rate:.1f} s each", file=sys.stderr)
    return rows


def answered(row: Row, threshold: float) -> bool:
    return not row.answer["abstained"] and row.best_similarity >= threshold


def metrics(rows: list[Row], threshold: float) -> dict[str, float]:
    ans = [r for r in rows if r.answerable]
    una = [r for r in rows if not r.answerable]
    answered_rows = [r for r in ans if answered(r, threshold)]
    sentences = [s for r in rows if answered(r, threshold) for s in r.answer["sentences"]]
    drafted = sum(len(r.raw_support) for r in rows if answered(r, threshold))
    kept_as_written = sum(not s["quoted"] for s in sentences)
    out = {
        "gold@5": _share(r.gold_key in r.top5_keys for r in ans),
        "answer_rate": _share(answered(r, threshold) for r in ans),
        "abstain_rate": _share(not answered(r, threshold) for r in una),
        "gold_cited": _share(r.gold_key in r.cited_keys for r in answered_rows),
        "f1": statistics.fmean(token_f1(r.answer["text"], r.reference) for r in answered_rows) if answered_rows else 0,
        "recall": statistics.fmean(token_recall(r.answer["text"], r.reference) for r in answered_rows)
        if answered_rows
        else 0,
        "rouge_l": statistics.fmean(rouge_l(r.answer["text"], r.reference) for r in answered_rows)
        if answered_rows
        else 0,
        "support": _share(s["support"] >= 0.75 for s in sentences),
        "raw_support": kept_as_written / drafted if drafted else 0.0,
        "quoted": _share(s["quoted"] for s in sentences),
        "n_ans": len(ans),
        "n_una": len(una),
    }
    return out


def checked_metrics(rows: list[Row], label: str) -> dict[str, float]:
    """:func:`metrics` for the trained checks' answers of configuration ``label``."""
    ans = [r for r in rows if r.answerable]
    una = [r for r in rows if not r.answerable]
    answered_rows = [r for r in ans if not r.checked[label]["abstained"]]
    sentences = [s for r in rows if not r.checked[label]["abstained"] for s in r.checked[label]["sentences"]]
    drafted = sum(len(r.checked[label]["findings"]) for r in rows if not r.checked[label]["abstained"])
    kept_as_written = sum(not s["quoted"] for s in sentences)

    def mean(f: Any) -> float:
        return statistics.fmean(f(r.checked[label]["text"], r.reference) for r in answered_rows) if answered_rows else 0

    return {
        "gold@5": _share(r.gold_key in r.top5_keys for r in ans),
        "answer_rate": _share(not r.checked[label]["abstained"] for r in ans),
        "abstain_rate": _share(r.checked[label]["abstained"] for r in una),
        "gate_answer_rate": _share(r.checked[label]["answerable"] for r in ans),
        "gate_abstain_rate": _share(not r.checked[label]["answerable"] for r in una),
        "gold_cited": _share(r.gold_key in r.checked[label]["cited_keys"] for r in answered_rows),
        "f1": mean(token_f1),
        "recall": mean(token_recall),
        "rouge_l": mean(rouge_l),
        "support": 1.0,
        "raw_support": kept_as_written / drafted if drafted else 0.0,
        "quoted": _share(s["quoted"] for s in sentences),
        "checks_cpu_ms": 1000 * statistics.fmean(r.checked[label]["cpu_s"] for r in rows) if rows else 0.0,
        "n_ans": len(ans),
        "n_una": len(una),
    }


def side_by_side(rows: list[Row], threshold: float, default_threshold: float) -> list[tuple[str, ...]]:
    """Today's verifier (default and tuned threshold) beside each trained-checks configuration, on
    every question and on those the checks model never trained on."""
    labels = list(rows[0].checked) if rows else []
    subsets = {
        "all": rows,
        "not trained on (dev+test)": [r for r in rows if r.split in ("dev", "test")],
        "test split": [r for r in rows if r.split == "test"],
    }
    out: list[tuple[str, ...]] = []
    for name, subset in subsets.items():
        n_ans = sum(r.answerable for r in subset)
        header = (f"{name} ({n_ans} + {len(subset) - n_ans})", f"lexical @{default_threshold:.2f}",
                  f"lexical @{threshold:.2f} (tuned)", *labels)  # fmt: skip
        cols = [metrics(subset, default_threshold), metrics(subset, threshold)]
        cols += [checked_metrics(subset, label) for label in labels]
        out.append(header)
        for key, show in (
            ("answer_rate", pct), ("abstain_rate", pct), ("gate_answer_rate", pct), ("gate_abstain_rate", pct),
            ("gold_cited", pct), ("recall", lambda x: f"{x:.3f}"), ("f1", lambda x: f"{x:.3f}"),
            ("rouge_l", lambda x: f"{x:.3f}"), ("quoted", pct), ("checks_cpu_ms", lambda x: f"{x:.0f}"),
        ):  # fmt: skip
            out.append((key, *(show(c[key]) if key in c else "" for c in cols)))
        out.append(("",) * len(header))
    return out


def _share(flags: Any) -> float:
    values = [bool(f) for f in flags]
    return sum(values) / len(values) if values else 0.0


def tune(rows: list[Row]) -> float:
    """Largest threshold keeping the answer rate >= the goal on these rows."""
    best = -1.0
    for step in range(0, 81):
        threshold = round(step * 0.01, 2)
        if metrics(rows, threshold)["answer_rate"] >= ANSWER_GOAL:
            best = threshold
    return best


_REPLAY = """
import json, sys, grounded
kb = grounded.open(sys.argv[1], create=False, **json.loads(sys.argv[2]))
for q in json.loads(sys.stdin.read()):
    print(kb.ask(q, use_cache=False).canonical_json(), flush=True)
"""


def determinism(kb_path: Path, overrides: dict[str, Any], rows: list[Row]) -> float:
    """Ask these questions in two fresh processes; share answered byte-identically by both and by this one.

    Run it in the same checkout that produced ``rows``: answers from other code may differ.
    """
    outputs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", _REPLAY, str(kb_path), json.dumps(overrides)],
            input=json.dumps([r.question for r in rows]),
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(proc.stdout.splitlines())
    here = [json.dumps({k: v for k, v in r.answer.items() if k != "timings"}, sort_keys=True,
                       ensure_ascii=False, separators=(",", ":")) for r in rows]  # fmt: skip
    return _share(a == b == c for a, b, c in zip(outputs[0], outputs[1], here, strict=True))


def http_latency(kb: KnowledgeBase, questions: list[str]) -> tuple[float, float]:
    import fcntl

    import httpx
    import uvicorn

    from grounded.api.app import create_app

    lock = open("/tmp/grounded-timing.lock", "w")  # noqa: SIM115 (held for the whole timing)
    fcntl.flock(lock, fcntl.LOCK_EX)  # timed figures never overlap another engineer's timing
    server = uvicorn.Server(uvicorn.Config(create_app(kb), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    took: list[float] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        for q in questions:
            started = time.perf_counter()
            response = client.post("/v1/query", json={"query": q, "cache": False})
            response.raise_for_status()
            took.append(time.perf_counter() - started)
    server.should_exit = True
    thread.join(timeout=10)
    load = os.getloadavg()
    lock.close()
    print(f"/v1/query timed under the timing lock; load average after: {load[0]:.1f}", file=sys.stderr)
    took.sort()
    return statistics.median(took), took[min(len(took) - 1, round(0.95 * (len(took) - 1)))]


def speed(rows: list[Row]) -> tuple[float, float]:
    t = [r.answer["timings"] for r in rows if "prefill_s" in r.answer["timings"]]
    prefill = sum(x["prompt_tokens"] for x in t) / max(1e-9, sum(x["prefill_s"] for x in t))
    decode = sum(x["completion_tokens"] for x in t) / max(1e-9, sum(x["decode_s"] for x in t))
    return prefill, decode


def llama_speed(kb: KnowledgeBase, rows: list[Row]) -> tuple[float, float] | None:
    """Prefill/decode tokens/s of llama-cpp-python on the same prompts, if it is installed."""
    if kb.settings.experts.answer.backend == "llama-cpp":
        return None  # the answers above were written by it: their speed is the row above
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    from grounded.answering.evidence import build_pool
    from grounded.answering.writer import build_messages
    from grounded.config import ExpertSpec
    from grounded.experts.llamacpp_backend import LlamaCppGenerator

    spec = kb.settings.experts.answer
    gen = LlamaCppGenerator(ExpertSpec(backend="llama-cpp", model=spec.model, threads=spec.threads))
    engine = kb.engine
    prompt_tokens = completion = 0
    prefill_s = decode_s = 0.0
    for row in rows:
        answer = Answer.from_dict(row.answer)
        pool = build_pool(row.question, answer.citations, kb.embedder)
        out = gen.generate(
            build_messages(row.question, engine._evidence(pool)), max_tokens=kb.settings.answer.max_new_tokens
        )
        prompt_tokens += out.prompt_tokens
        completion += out.completion_tokens
        prefill_s += out.prefill_s
        decode_s += out.decode_s
    return prompt_tokens / max(prefill_s, 1e-9), completion / max(decode_s, 1e-9)


def load_checks_configs(dirs: list[Path] | None) -> dict[str, Any]:
    """``{label: (Checks, relevance policy)}`` for each trained checks model directory."""
    from grounded.answering.trust import Checks
    from grounded.checks import AnswerabilityGate, CrossEncoder, EntailmentChecker

    out: dict[str, Any] = {}
    for directory in dirs or []:
        model = CrossEncoder(directory)
        checks = Checks(EntailmentChecker(model), AnswerabilityGate(model))
        recipe = "full" if model.meta.get("recipe", {}).get("data") else "default"
        # The calibration's version tells apart two copies of one model calibrated differently.
        version = (model.meta.get("combination") or {}).get("version", 0)
        out[f"checks {recipe} {directory.name[:8]} v{version}"] = checks
    return out


def run_config(
    args: argparse.Namespace,
    overrides: dict[str, Any],
    label: str,
    questions: list[tuple[dict[str, Any], bool]],
    gold: dict[str, str],
) -> dict[str, Any]:
    """Ask every question with one configuration; its metrics, determinism and latency."""
    kb = grounded.open(args.work / "kb", create=False, **overrides)
    writer, tuned = kb.engine.writer()
    if label == "tuned" and tuned is None:
        raise SystemExit(f"no tuned answer expert is active in {args.work / 'kb'}; run grounded tune answer first")
    print(f"[{label}] asking {len(questions)} questions with {writer.fingerprint}", file=sys.stderr)
    saved = args.work / ("rows.json" if label == "base" else f"rows-{label}.json")
    if args.reuse and saved.is_file():
        rows = [Row(**r) for r in json.loads(saved.read_text(encoding="utf-8"))]
        print(f"reusing {len(rows)} answers from {saved}", file=sys.stderr)
        checks = load_checks_configs(args.checks) if label == "base" else None
        if checks:
            keys = key_map(kb)
            for n, row in enumerate(rows, start=1):
                apply_checks(kb, row, checks, keys)
                if n % 50 == 0:
                    print(f"  checks applied to {n}/{len(rows)} drafts", file=sys.stderr)
            saved.write_text(json.dumps([r.__dict__ for r in rows], indent=1), encoding="utf-8")
    else:
        rows = ask_all(kb, questions, gold, load_checks_configs(args.checks) if label == "base" else None, saved)
        saved.write_text(json.dumps([r.__dict__ for r in rows], indent=1), encoding="utf-8")
        if args.drafts_only:
            raise SystemExit(f"wrote {len(rows)} drafts to {saved}; apply the checks with --reuse --checks DIR ...")

    tune_rows = [r for i, r in enumerate(rows) if i % 2 == 0]
    test_rows = [r for i, r in enumerate(rows) if i % 2 == 1]
    threshold = tune(tune_rows)
    replay_rows = rows[: args.replay] if args.replay else rows
    identical = determinism(args.work / "kb", overrides, replay_rows)

    # Served as configured by default: the trained checks when a model was given, else today's threshold.
    served_answer = {"checks": "model"} if args.checks else {"min_evidence_similarity": threshold}
    served = {**overrides, "answer": {**overrides["answer"], **served_answer}}
    http_kb = grounded.open(args.work / "kb", create=False, **served)
    http_qs = [r.question for r in rows[:: max(1, len(rows) // args.http)]][: args.http] if args.http else []
    p50, p95 = http_latency(http_kb, http_qs) if http_qs else (float("nan"), float("nan"))
    timed = [r.answer["timings"] for r in rows if "prompt_tokens" in r.answer["timings"]]
    prompt_tokens = [t["prompt_tokens"] for t in timed]
    return {
        "rows": rows,
        "threshold": threshold,
        "held": metrics(test_rows, threshold),
        "all": metrics(rows, threshold),
        "identical": identical,
        "replayed": len(replay_rows),
        "http": (p50, p95, len(http_qs)),
        "speed": speed(rows),
        "llama": llama_speed(kb, rows[: args.llama]) if args.llama and tuned is None else None,
        "model": writer.fingerprint,
        "prompt_tokens": (statistics.fmean(prompt_tokens), statistics.median(prompt_tokens)) if timed else (0, 0),
        "ask_p50_s": statistics.median(r.answer["timings"]["total_ms"] for r in rows) / 1000,
        "generate_p50_s": statistics.median(t["generate_ms"] for t in timed) / 1000 if timed else 0.0,
        "load": os.getloadavg(),
    }


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def goal(value: float, target: float, *, lower: bool = False) -> str:
    ok = value <= target if lower else value >= target
    return "met" if ok else f"gap {abs(value - target) * (1 if lower else 100):.{2 if lower else 1}f}"


def columns(r: dict[str, Any], gold_at_5: float, n_every: int) -> list[tuple[str, str, str, str]]:
    """``(metric, held-out, all, goal)`` rows for one configuration's results."""
    held, everything, identical = r["held"], r["all"], r["identical"]
    p50, p95, n_http = r["http"]
    prefill, decode = r["speed"]
    table = [
        ("gold passage in top-5", pct(held["gold@5"]), f"{pct(everything['gold@5'])} ({pct(gold_at_5)} of all {n_every})", ""),
        ("answer rate (answerable)", pct(held["answer_rate"]), pct(everything["answer_rate"]),
         f">= 85% ({goal(held['answer_rate'], ANSWER_GOAL)})"),
        ("abstention rate (unanswerable)", pct(held["abstain_rate"]), pct(everything["abstain_rate"]),
         f">= 80% ({goal(held['abstain_rate'], ABSTAIN_GOAL)})"),
        ("answered citing the gold passage", pct(held["gold_cited"]), pct(everything["gold_cited"]),
         f">= 95% ({goal(held['gold_cited'], GOLD_CITE_GOAL)})"),
        ("token F1 vs human answer", f"{held['f1']:.3f}", f"{everything['f1']:.3f}", ""),
        ("ROUGE-L vs human answer", f"{held['rouge_l']:.3f}", f"{everything['rouge_l']:.3f}", ""),
        ("sentences supported by cited passage", pct(held["support"]), pct(everything["support"]), ""),
        ("  model's sentences kept as written", pct(held["raw_support"]), pct(everything["raw_support"]), ""),
        ("  sentences quoted by the verifier", pct(held["quoted"]), pct(everything["quoted"]), ""),
        ("tuned min_evidence_similarity", "", f"{r['threshold']:.2f}", ""),
        ("determinism (2 fresh processes, identical)", "", f"{pct(identical)} of {r['replayed']}",
         f"100% ({goal(identical, 1.0)})"),
        ("prompt tokens mean / p50", "", f"{r['prompt_tokens'][0]:.0f} / {r['prompt_tokens'][1]:.0f}", ""),
        ("kb.ask p50 (generate p50)", "", f"{r['ask_p50_s']:.2f} s ({r['generate_p50_s']:.2f} s)", ""),
        ("/v1/query p50 / p95", "", f"{p50:.2f} s / {p95:.2f} s ({n_http} q)",
         f"<= 2.5 s / 5 s ({goal(p50, 2.5, lower=True)} / {goal(p95, 5.0, lower=True)})"),
        ("prefill / decode tokens/s", "", f"{prefill:.0f} / {decode:.1f}", ""),
        ("load average (1 / 5 / 15 min)", "", " / ".join(f"{x:.1f}" for x in r["load"]), ""),
    ]  # fmt: skip
    llama = r["llama"]
    if llama is not None:
        table.append(("llama-cpp-python prefill / decode tok/s", "", f"{llama[0]:.0f} / {llama[1]:.1f}",
                      f"ratio {llama[0] / prefill:.1f}x / {llama[1] / decode:.1f}x"))  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/clapnq"))
    parser.add_argument("--work", type=Path, default=Path(".bench/answers"), help="KB and results (git-ignored).")
    parser.add_argument("--limit", type=int, default=None, help="Questions per set (default: all 150).")
    parser.add_argument(
        "--splits",
        nargs="+",
        choices=("train", "dev", "test"),
        default=None,
        help="Only the questions whose id hashes into these splits of the checks recipe (default: all); "
        "`--splits dev test`: the questions the checks never trained on.",
    )
    parser.add_argument("--backend", default=None, help="Answer backend (default: config).")
    parser.add_argument(
        "--model",
        default=None,
        help="Answer model (default: config): a GGUF path, e.g. one from `make experts`, or a model package.",
    )
    parser.add_argument("--threads", type=int, default=None, help="Threads of the answer expert (default: config).")
    parser.add_argument("--replay", type=int, default=None, help="Questions re-asked for determinism (default: all).")
    parser.add_argument("--http", type=int, default=20, help="Questions timed over HTTP (0: none).")
    parser.add_argument("--llama", type=int, default=20, help="Prompts timed with llama-cpp-python (if installed).")
    parser.add_argument("--reuse", action="store_true", help="Reuse the answers saved by the last run (rows.json).")
    parser.add_argument(
        "--checks",
        type=Path,
        nargs="*",
        default=None,
        help="Trained checks model directories applied to the same drafts (default: the active one, if any; "
        "--checks with no directory: none).",
    )
    parser.add_argument("--json", type=Path, default=None, help="Write the figures and every answer here.")
    parser.add_argument(
        "--drafts-only",
        action="store_true",
        help="Write the drafts (rows.json) and stop: apply checks later with --reuse.",
    )
    parser.add_argument(
        "--tuned",
        action="store_true",
        help="also answer with the knowledge base's active tuned answer expert (grounded tune answer --kb "
        "WORK/kb) and its short prompt, and print both side by side",
    )
    args = parser.parse_args()

    if args.checks is None:
        from grounded.checks import active_model_dir
        from grounded.errors import ConfigError

        try:
            args.checks = [active_model_dir()]
        except ConfigError:
            args.checks = []
    # answer.tuned off: the configured expert and its long prompt, even when a tuned one is active.
    # Drafts are written once with the lexical checks and no threshold; the trained checks decide on them after.
    overrides: dict[str, Any] = {
        "answer": {"min_evidence_similarity": -1.0, "cache": False, "tuned": False, "checks": "lexical"}
    }
    expert: dict[str, Any] = {"timeout_s": 600}
    if args.backend:
        expert["backend"] = args.backend
    if args.model:
        expert["model"] = str(Path(args.model).expanduser()) if args.model.endswith(".gguf") else args.model
    if args.threads:
        expert["threads"] = args.threads
    overrides["experts"] = {"answer": expert}
    args.work.mkdir(parents=True, exist_ok=True)
    kb = build_kb(args.data, args.work, overrides)
    with open(args.data / "derived_dev_passages.jsonl", encoding="utf-8") as fh:
        gold = {d["text"]: d["_id"] for d in map(json.loads, fh)}
    keys = key_map(kb)
    every = [(q, a) for q, a in load_questions(args.data, args.limit) if a]
    gold_at_5 = _share(
        gold.get(q["passages"][0]["text"]) in {keys[h.doc_id] for h in kb.search(q["input"], k=5)} for q, _ in every
    )
    questions = load_questions(args.data, args.limit)
    if args.splits:
        from grounded.checks.data import split_of

        questions = [(q, a) for q, a in questions if split_of(f"clapnq:{q['id']}") in args.splits]
    configs = {"base": overrides}
    if args.tuned:
        configs["tuned"] = {**overrides, "answer": {**overrides["answer"], "tuned": True}}
    results = {label: run_config(args, o, label, questions, gold) for label, o in configs.items()}

    tables = {label: columns(r, gold_at_5, len(every)) for label, r in results.items()}
    table: list[tuple[str, ...]]
    if len(tables) == 1:
        table = [("metric", "held-out (odd)", "all", "goal"), *tables["base"]]
    else:
        base, tuned = tables["base"], tables["tuned"]
        header = ("metric", "base held-out", "base all", "tuned held-out", "tuned all", "goal (tuned)")
        table = [header, *((b[0], b[1], b[2], t[1], t[2], t[3]) for b, t in zip(base, tuned, strict=True))]
    held = results["base"]["held"]
    models = "; ".join(f"{label} {r['model']}" for label, r in results.items())
    print(f"\nClapNQ dev: {held['n_ans'] + held['n_una']} held-out, {len(questions)} questions in all; {models}\n")
    widths = [max(len(str(r[i])) for r in table) for i in range(len(table[0]))]
    for n, r in enumerate(table):
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    base_rows = results["base"]["rows"]
    compared = side_by_side(base_rows, results["base"]["threshold"], DEFAULT_THRESHOLD) if args.checks else []
    if compared:
        print("\nToday's verifier vs the trained checks, on the same drafts:\n")
        widths = [max(len(str(r[i])) for r in compared) for i in range(len(compared[0]))]
        for r in compared:
            print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    if args.json:
        figures = {label: {k: v for k, v in r.items() if k != "rows"} for label, r in results.items()}
        args.json.write_text(
            json.dumps(
                {"figures": figures, "side_by_side": compared, "rows": [r.__dict__ for r in base_rows]},
                indent=1,
                default=str,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
