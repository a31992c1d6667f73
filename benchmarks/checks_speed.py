"""Time the checks model per sentence-passage pair on ONE CPU thread, int8 and float32.

    flock /tmp/grounded-timing.lock python benchmarks/checks_speed.py [--model DIR] [--pairs 200]

Pairs are the default recipe's test pairs (claim or question against its evidence window,
as the checker builds them), scored one at a time like the verifier does. Prints the mean,
p50 and p95 wall milliseconds per pair, the scoring thread's CPU milliseconds per pair (what
the pair costs one core on a busy machine), the mean tokens per pair, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import torch

    from grounded.checks.model import CrossEncoder
    from grounded.checks.recipe import Recipe, build_pairs
    from grounded.checks.store import active_model_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a trained checks model (default: the active one)")
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    pairs = build_pairs(Recipe()).test[: args.pairs]
    directory = args.model or active_model_dir()
    report: dict[str, object] = {"pairs": len(pairs), "loadavg_before": Path("/proc/loadavg").read_text().split()[:3]}
    for quantize in (True, False):
        model = CrossEncoder(directory, quantize=quantize, threads=1)
        model.score([pairs[0].text], [pairs[0].evidence])  # load
        tokens, times, cpu = [], [], []
        for p in pairs:
            tokens.append(int(model.encode(p.text, p.evidence)["input_ids"].shape[1]))
            start, start_cpu = time.perf_counter(), time.thread_time()
            model.score([p.text], [p.evidence], p.task)
            times.append((time.perf_counter() - start) * 1000)
            cpu.append((time.thread_time() - start_cpu) * 1000)
        name = "int8" if quantize else "fp32"
        report[name] = {
            "mean_ms": round(float(np.mean(times)), 2),
            "p50_ms": round(float(np.percentile(times, 50)), 2),
            "p95_ms": round(float(np.percentile(times, 95)), 2),
            "mean_tokens": round(float(np.mean(tokens)), 1),
            # CPU time of the scoring thread: what the pair costs one core, whatever the machine's load.
            "cpu_mean_ms": round(float(np.mean(cpu)), 2),
            "cpu_p95_ms": round(float(np.percentile(cpu, 95)), 2),
        }
        print(name, report[name], flush=True)
    report["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
