"""How sentence scores become a response verdict: variants measured on two halves of an MT-RAG
human-evaluation file, split by conversation, so a choice made on one half is reported on the other.

    python benchmarks/faithfulness_study.py --data ../shared/data/mtrag/human_evaluations_dev.json \
        [--model DIR] [--cache .bench/faith-study.pkl] [--json OUT] [--show N]

Every sentence of every judged response is scored once per evidence variant (cached by sentence and
window, so a second run only aggregates):

* ``cur``: the served window (:func:`~grounded.checks.text.evidence_window` over all the passages);
* ``pp``: the best of the served window and one window per passage (multi-window support);
* ``s5``: the best of the served window and each of the five passage sentences sharing most words with
  the claim, read with the sentence before it.

Then every (claim filter, evidence, aggregation) is reported: AUC on half A, half B and the whole file,
and balanced accuracy on each half at the threshold chosen on the *other* half (and on the whole file at
the threshold of half A). Nothing here changes what the checker serves; it shows what would pay.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pickle
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import grounded.checks.text as _text

# The same passages are split and stemmed for every sentence of every response: once is enough here
# (in this study only; the served checker reads a few passages per answer).
_text.split_sentences = functools.lru_cache(maxsize=None)(_text.split_sentences)  # type: ignore[assignment]
_content_words = _text.content_words
_text.content_words = functools.lru_cache(maxsize=None)(lambda t: frozenset(_content_words(t)))  # type: ignore[assignment]

import numpy as np  # noqa: E402
from faithfulness import Judged, load  # noqa: E402

from grounded.checks.checker import is_claim, is_scaffolding, looks_cut_off, looks_like_prose  # noqa: E402
from grounded.checks.lexical import Combination, claim_features  # noqa: E402
from grounded.checks.metrics import auc, balanced_accuracy, best_threshold  # noqa: E402
from grounded.checks.sources import human_halves  # noqa: E402
from grounded.checks.text import content_words, evidence_window, split_sentences  # noqa: E402


def _plain(sentence: str) -> str:
    text = re.sub(r"\*\*|__|`", "", sentence)
    text = re.sub(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s+", "", text)
    return " ".join(text.split())


def halves(items: Sequence[Judged]) -> list[str]:
    """``A`` or ``B`` per item, by conversation (:func:`~grounded.checks.sources.human_halves`)."""
    return human_halves([i.task_id for i in items])


def top_sentences(claim: str, passages: Sequence[str], k: int = 5) -> list[str]:
    """The ``k`` passage sentences sharing most content words with ``claim``, each after its previous one."""
    wanted = content_words(claim)
    scored = []
    for p, passage in enumerate(passages):
        sentences = split_sentences(passage)
        for i, s in enumerate(sentences):
            gain = len(content_words(s) & wanted)
            if gain:
                scored.append((-gain, p, i, (sentences[i - 1] + " " + s) if i else s))
    scored.sort()
    return [t for *_, t in scored[:k]]


class Scorer:
    """The model's support probability of (sentence, window), cached on disk."""

    def __init__(self, model: Any, cache: Path) -> None:
        self.model = model
        self.cache = cache
        self.memo: dict[tuple[str, str], float] = pickle.loads(cache.read_bytes()) if cache.is_file() else {}

    def __call__(self, sentence: str, window: str) -> float:
        key = (sentence, window)
        if key not in self.memo:
            self.memo[key] = float(self.model.score([sentence], [window], "support")[0])
        return self.memo[key]

    def save(self) -> None:
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        self.cache.write_bytes(pickle.dumps(self.memo))


def sentence_rows(item: Judged, score: Scorer, combination: Combination | None) -> list[dict[str, Any]]:
    """One row per sentence of ``item``: what it is and its support under each evidence variant."""
    texts = [t for _, t in item.passages]

    def combined(sentence: str, window: str) -> float:
        p = score(sentence, window)
        return combination.probability(p, claim_features(sentence, [window])) if combination else p

    rows = []
    for s in split_sentences(item.response):
        cur = evidence_window(s, texts)
        row: dict[str, Any] = {
            "sentence": s,
            "claim": is_claim(s),
            "neutral": is_scaffolding(s),
            "prose": looks_like_prose(s),
            "cut": looks_cut_off(s),
            "words": len(s.split()),
            "content": len(content_words(s)),
            "share": claim_features(s, texts)[0],
            "cur": combined(s, cur),
        }
        # The served window is often longer than the model reads (half the pairs lose ~19 tokens at its end):
        # a window sized to what is left of 112 tokens after the claim.
        fit = evidence_window(s, texts, max_words=max(25, int((109 - 1.35 * len(s.split())) / 1.4)))
        row["fit"] = combined(s, fit)
        per_passage = [combined(s, evidence_window(s, [t])) for t in texts if len(texts) > 1]
        row["pp"] = max([row["cur"], *per_passage])
        # Markdown read as text: "1. **Initiate the Case**: ..." scored without its list marker and emphasis.
        plain = _plain(s)
        if plain == s:
            row["md"] = row["pp"]
        else:
            windows = [evidence_window(plain, texts)] + [evidence_window(plain, [t]) for t in texts if len(texts) > 1]
            row["md"] = max(combined(plain, w) for w in windows)
        row["s5"] = max([row["cur"], *(combined(s, w) for w in top_sentences(s, texts))])
        rows.append(row)
    return rows


FILTERS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "claims": lambda r: bool(r["claim"]),
    "claims-neutral": lambda r: bool(r["claim"]) and not r["neutral"],
    "claims-prose": lambda r: bool(r["claim"]) and bool(r["prose"]),
}


def _quantile(q: float) -> Callable[[np.ndarray, np.ndarray], float]:
    return lambda s, w: float(np.quantile(s, q, method="lower"))


AGGREGATIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "min": lambda s, w: float(s.min()),
    "mean": lambda s, w: float(s.mean()),
    "q10": _quantile(0.1),
    "q25": _quantile(0.25),
    "mean-low2": lambda s, w: float(np.sort(s)[:2].mean()),
    "wmean": lambda s, w: float((s * w).sum() / w.sum()),
    "share0.5": lambda s, w: float((s >= 0.5).mean()),
}


def response_score(
    rows: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool], evidence: str, how: str
) -> float:
    chosen = [r for r in rows if keep(r)]
    if not chosen:
        return 1.0
    s = np.array([0.0 if r["cut"] else r[evidence] for r in chosen])
    w = np.array([max(1, r["content"]) for r in chosen], dtype=float)
    return AGGREGATIONS[how](s, w)


def report(items: list[Judged], rows: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    labels = np.array([1 - i.unfaithful for i in items])  # 1 = faithful: a high score keeps it
    halves_ = np.array(halves(items))
    out = []
    for fname, keep in FILTERS.items():
        for evidence in ("cur", "fit", "pp", "s5", "md"):
            for how in AGGREGATIONS:
                scores = np.array([response_score(r, keep, evidence, how) for r in rows])
                entry: dict[str, Any] = {"filter": fname, "evidence": evidence, "aggregation": how}
                for h in ("A", "B"):
                    m = halves_ == h
                    entry[f"auc_{h}"] = round(auc(labels[m], scores[m]), 4)
                    other = halves_ != h
                    t, _ = best_threshold(labels[other], scores[other])
                    entry[f"ba_{h}"] = round(balanced_accuracy(labels[m], (scores[m] >= t).astype(int)), 4)
                entry["auc_all"] = round(auc(labels, scores), 4)
                t_a, ba_a_self = best_threshold(labels[halves_ == "A"], scores[halves_ == "A"])
                entry["threshold_A"] = round(t_a, 4)
                entry["ba_A_self"] = round(ba_a_self, 4)  # what calibration compares on half A
                entry["ba_all_at_A"] = round(balanced_accuracy(labels, (scores >= t_a).astype(int)), 4)
                out.append(entry)
    return out


def show(items: list[Judged], rows: list[list[dict[str, Any]]], n: int) -> None:
    """The first ``n`` unfaithful and ``n`` faithful responses of half A, sentence by sentence."""
    for wanted in (1, 0):
        shown = 0
        for item, r, side in zip(items, rows, halves(items), strict=True):
            if item.unfaithful != wanted or side != "A" or shown >= n:
                continue
            shown += 1
            print(
                f"=== {item.task_id} {item.model_id} faithfulness {item.median_faithfulness} passages {len(item.passages)}"
            )
            for x in r:
                tag = "C" if x["claim"] else "-"
                tag += "n" if x["neutral"] else " "
                tag += "x" if x["cut"] else " "
                print(
                    f"  {tag} cur {x['cur']:.2f} fit {x['fit']:.2f} pp {x['pp']:.2f} s5 {x['s5']:.2f} share {x['share']:.2f} | {x['sentence'][:160]}"
                )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mtrag/human_evaluations_dev.json"))
    ap.add_argument("--model", type=Path, help="a trained checks model directory (default: the active one)")
    ap.add_argument("--cache", type=Path, default=Path(".bench/faith-study.pkl"))
    ap.add_argument("--json", type=Path, help="write the table here")
    ap.add_argument("--show", type=int, default=0, help="print N unfaithful and N faithful responses of half A")
    ap.add_argument("--alone", action="store_true", help="the model's probability without the lexical combination")
    args = ap.parse_args(argv)
    from grounded.checks.model import CrossEncoder
    from grounded.checks.store import active_model_dir

    model = CrossEncoder(args.model or active_model_dir())
    stored = model.meta.get("combination")
    combination = Combination.from_json(stored) if stored and not args.alone else None
    items = load(args.data)
    scorer = Scorer(model, args.cache.with_suffix(f".{model.fingerprint.replace(':', '-')}.pkl"))
    rows = [sentence_rows(item, scorer, combination) for item in items]
    scorer.save()
    sides = halves(items)
    counts = {h: (sides.count(h), sum(i.unfaithful for i, s in zip(items, sides, strict=True) if s == h)) for h in "AB"}
    print(
        f"{len(items)} responses; (responses, unfaithful) per half {counts}; "
        f"model {model.fingerprint}, combined {combination is not None}"
    )
    if args.show:
        show(items, rows, args.show)
    table = report(items, rows)
    print(
        f"{'filter':<15} {'evid':<4} {'aggregation':<10} {'aucA':>6} {'aucB':>6} {'aucAll':>6} {'baA|B':>6} {'baB|A':>6} {'all|A':>6} {'t_A':>6}"
    )
    for e in table:
        print(
            f"{e['filter']:<15} {e['evidence']:<4} {e['aggregation']:<10} {e['auc_A']:>6.3f} {e['auc_B']:>6.3f} "
            f"{e['auc_all']:>6.3f} {e['ba_A']:>6.3f} {e['ba_B']:>6.3f} {e['ba_all_at_A']:>6.3f} {e['threshold_A']:>6.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(table, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
