"""Train the entailment checker and answerability gate (``grounded/checks``) into the model cache.

    python benchmarks/train_checker.py                       # default recipe: synthetic pairs from the demo corpus
    python benchmarks/train_checker.py --data ../shared/data  # full recipe: + ClapNQ, MT-RAG (labelled)
    python benchmarks/train_checker.py --kb kb --max-minutes 10

Prints the dev figures (AUC, balanced accuracy, synthetic-contradiction recall per rule, on
passages and questions held out by hash) for float32 and int8, and where the model went.
A second run with the same recipe and data finds the model and trains nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    from grounded.checks.recipe import recipe_for
    from grounded.checks.train import train

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="a folder in the ../shared/data layout (clapnq/, mtrag/)")
    ap.add_argument("--kb", type=Path, help="a knowledge base whose passages add synthetic pairs")
    ap.add_argument("--no-pydoc", action="store_true", help="leave out the demo corpus's synthetic pairs")
    ap.add_argument("--layers", type=int)
    ap.add_argument("--max-tokens", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--max-train-pairs", type=int)
    ap.add_argument("--lr", type=float, help="learning rate (default: the recipe's)")
    ap.add_argument("--train-embeddings", action="store_true", help="update the word embeddings too")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--force", action="store_true", help="train even when the cache has this model")
    ap.add_argument("--max-minutes", type=float, help="stop training after this many minutes (a partial model)")
    ap.add_argument("--json", type=Path, help="write the model's checks.json figures here too")
    args = ap.parse_args(argv)
    given = {
        "layers": args.layers,
        "max_tokens": args.max_tokens,
        "epochs": args.epochs,
        "max_train_pairs": args.max_train_pairs,
        "learning_rate": args.lr,
        "threads": args.threads,
        "seed": args.seed,
    }
    overrides: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    if args.no_pydoc:
        overrides["pydoc"] = False
    if args.train_embeddings:
        overrides["freeze_embeddings"] = False
    # The same recipe as `grounded tune checker` unless a flag says otherwise (same fingerprint).
    recipe = recipe_for(str(args.data) if args.data else None, str(args.kb) if args.kb else None, **overrides)
    result = train(recipe, force=args.force, max_minutes=args.max_minutes, log=lambda m: print(m, flush=True))
    print(f"model: {result.path} ({'trained' if result.trained else 'cached'})")
    print(
        json.dumps({k: result.meta.get(k) for k in ("thresholds", "eval_fp32", "eval_int8", "train_seconds")}, indent=1)
    )
    if args.json:
        args.json.write_text(json.dumps(result.meta, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
