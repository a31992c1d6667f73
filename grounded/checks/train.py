"""Train a checks model from a :class:`~grounded.checks.recipe.Recipe` into the model cache.

``train(recipe)`` builds the pairs, fine-tunes MiniLM (the first ``recipe.layers`` layers of
the shipped all-MiniLM-L6-v2) with a two-output head, picks the thresholds on the dev split
(never on a test file), scores the dev split, and writes weights, tokenizer and
``checks.json`` (recipe, fingerprint, thresholds, figures) to
``$GROUNDED_MODEL_CACHE/checks/<fingerprint>/``. The fingerprint hashes the recipe, the base
model and every pair, so a second run with the same recipe and data finds the model and
trains nothing. Seeded and single-process: the same recipe, data and thread count give the
same weights.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounded.checks.data import Pair, balance
from grounded.checks.model import META_FILE, MODEL_FILE, TASKS, TOKENIZER_FILES, CrossEncoder, build_network
from grounded.checks.recipe import PairSet, Recipe, build_pairs
from grounded.checks.store import activate, model_dir

__all__ = ["TrainResult", "calibrate", "calibrate_gate", "evaluate", "fingerprint", "train"]

SYNTHETIC_CASE_KINDS = frozenset({"pseudo_question", "neighbour_passage", "off_topic"})
CALIBRATION_VERSION = 7
"""Bumped when :func:`calibrate` chooses differently; a model calibrated by an older one is calibrated again."""
HUMAN_KIND = "human:"
"""The kind of a dev or test response that people judged (:func:`~grounded.checks.sources.human_responses`)."""
UNSUPPORTED_KEPT_COST = 2.0
"""How much worse the support threshold counts an unsupported sentence kept than a supported one
rejected. Not the same harm: a kept false sentence is a wrong answer with a citation, while a
rejected true one is replaced by the evidence sentence it paraphrases, quoted, or dropped. With
equal costs (calibration v3) the full recipe kept 31% of unsupported test pairs, among them the
demo's garbled and role-swapped sentences; at 2 it keeps 12%, and ClapNQ's served answer rate
hardly moves because the quotes take the rejected sentences' place (benchmarks/RESULTS.md)."""


@dataclass(frozen=True, slots=True)
class TrainResult:
    path: Path
    meta: dict[str, Any]
    trained: bool
    """False when the model was already in the cache."""


def fingerprint(recipe: Recipe, pairs: PairSet, base_fingerprint: str) -> str:
    """16 hex digits of sha256 over the recipe, the base model and the pairs."""
    import hashlib

    blob = json.dumps([recipe.key(), base_fingerprint, pairs.digest()], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _encode(tokenizer: Any, pairs: list[Pair], max_tokens: int) -> list[tuple[list[int], list[int], int, int]]:
    rows = []
    for p in pairs:
        enc = tokenizer(p.text, p.evidence, truncation="longest_first", max_length=max_tokens)
        rows.append((enc["input_ids"], enc["token_type_ids"], TASKS[p.task], p.label))
    return rows


def _batch(rows: list[tuple[list[int], list[int], int, int]]) -> dict[str, Any]:
    import torch

    width = max(len(r[0]) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for i, (a, t, _, _) in enumerate(rows):
        ids[i, : len(a)] = torch.tensor(a)
        types[i, : len(t)] = torch.tensor(t)
        mask[i, : len(a)] = 1
    task = torch.tensor([r[2] for r in rows])
    label = torch.tensor([float(r[3]) for r in rows])
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "task": task, "label": label}


def _fit(
    recipe: Recipe,
    pairs: list[Pair],
    base_dir: Path,
    out: Path,
    log: Callable[[str], None],
    max_minutes: float | None = None,
) -> dict[str, float]:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer, BertConfig

    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    config = BertConfig.from_pretrained(str(base_dir), num_hidden_layers=recipe.layers)
    net = build_network(config)
    state = {k: v for k, v in load_file(str(base_dir / MODEL_FILE)).items() if not k.startswith("pooler.")}
    state = {
        k: v for k, v in state.items() if not k.startswith("encoder.layer.") or int(k.split(".")[2]) < recipe.layers
    }
    missing, unexpected = net.encoder.load_state_dict(state, strict=False)
    if [k for k in (*missing, *unexpected) if "position_ids" not in k]:
        raise RuntimeError(f"base model {base_dir} does not fit: missing {missing}, unexpected {unexpected}")
    if recipe.freeze_embeddings:
        net.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    rows = _encode(tokenizer, pairs, recipe.max_tokens)
    rng = np.random.default_rng(recipe.seed)
    steps_per_epoch = math.ceil(len(rows) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    optimizer = torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad], lr=recipe.learning_rate, weight_decay=0.01
    )
    warmup = max(1, total // 16)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    net.train()
    started, step, running = time.monotonic(), 0, 0.0
    deadline = started + max_minutes * 60 if max_minutes else None
    for epoch in range(recipe.epochs):
        order = rng.permutation(len(rows))
        for b in range(steps_per_epoch):
            if deadline is not None and time.monotonic() > deadline:
                log(f"stopped by --max-minutes after {step} of {total} steps")
                break
            batch = _batch([rows[i] for i in order[b * recipe.batch_size : (b + 1) * recipe.batch_size]])
            logits = net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            chosen = logits.gather(1, batch["task"].unsqueeze(1)).squeeze(1)
            loss = loss_fn(chosen, batch["label"])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
            if step % 50 == 0 or step == total:
                log(f"epoch {epoch + 1} step {step}/{total} loss {running:.3f} ({time.monotonic() - started:.0f} s)")
    net.eval()
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / MODEL_FILE))
    config.save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        if (base_dir / name).is_file():
            shutil.copyfile(base_dir / name, out / name)
    seconds = time.monotonic() - started
    return {
        "train_seconds": round(seconds, 1),
        "train_pairs_per_second": round(step * recipe.batch_size / seconds, 2),
        "steps": step,
        "steps_planned": total,
    }


def _pair_figures(model: CrossEncoder, pairs: list[Pair], task: str, threshold: float | None) -> dict[str, Any]:
    from grounded.checks.metrics import auc, balanced_accuracy, best_threshold, recall

    scores = model.score([p.text for p in pairs], [p.evidence for p in pairs], task)  # type: ignore[arg-type]
    labels = [p.label for p in pairs]
    if threshold is None:
        threshold, _ = best_threshold(labels, scores)
    predicted = [int(s >= threshold) for s in scores]
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "auc": round(auc(labels, scores), 4),
        "threshold": round(threshold, 4),
        "balanced_accuracy": round(balanced_accuracy(labels, predicted), 4),
        "recall_1": round(recall(labels, predicted, 1), 4),
        "recall_0": round(recall(labels, predicted, 0), 4),
    }
    by_kind: dict[str, float] = {}
    for kind in sorted({p.kind for p in pairs}):
        idx = [i for i, p in enumerate(pairs) if p.kind == kind]
        label = pairs[idx[0]].label
        by_kind[f"{kind} ({label})"] = round(recall([label] * len(idx), [predicted[i] for i in idx], label), 4)
    out["recall_by_kind"] = by_kind
    return out


def _case_figures(model: CrossEncoder, pairs: PairSet, scored: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """The gate on whole questions (best window of their passages): threshold on dev, figures on
    dev and test, and per kind the share decided right (answer rate / abstention rate).
    ``scored``: the cases' scores by split (e.g. combined with lexical features); default the model's."""
    from grounded.checks.checker import gate_score
    from grounded.checks.metrics import auc, balanced_accuracy, best_threshold, recall

    out: dict[str, Any] = {}
    threshold = 0.5
    for split, cases in (("dev", pairs.dev_cases), ("test", pairs.test_cases)):
        if not cases:
            continue
        scores = scored[split] if scored is not None else [gate_score(model, c.question, c.passages)[0] for c in cases]
        labels = [c.answerable for c in cases]
        if split == "dev":
            # Chosen on real questions (ClapNQ, MT-RAG) when there are any: pseudo-questions
            # outnumber them and are easier, and would set the threshold for themselves.
            real = [i for i, c in enumerate(cases) if c.kind not in SYNTHETIC_CASE_KINDS]
            chosen = real if len({labels[i] for i in real}) == 2 else list(range(len(cases)))
            threshold, _ = best_threshold([labels[i] for i in chosen], [scores[i] for i in chosen])
            out["threshold_chosen_on"] = "real questions" if chosen is real else "all cases"
        predicted = [int(s >= threshold) for s in scores]
        by_kind = {}
        for kind in sorted({c.kind for c in cases}):
            idx = [i for i, c in enumerate(cases) if c.kind == kind]
            y = cases[idx[0]].answerable
            by_kind[f"{kind} ({y})"] = {
                "n": len(idx),
                "right": round(recall([y] * len(idx), [predicted[i] for i in idx], y), 4),
            }
        out[split] = {
            "questions": len(cases),
            "auc": round(auc(labels, scores), 4),
            "threshold": round(threshold, 4),
            "balanced_accuracy": round(balanced_accuracy(labels, predicted), 4),
            "by_kind": by_kind,
        }
    return out


def calibrate_gate(model: CrossEncoder, pairs: PairSet) -> dict[str, Any]:
    """The gate's calibration on the dev questions: the model alone (its threshold, for one
    sentence's relevance) and its combination with the question's lexical features
    (:func:`~grounded.checks.lexical.question_features`, weights fitted on every dev case, the
    threshold on the real dev questions when there are any); figures on test."""
    from grounded.checks.checker import gate_score
    from grounded.checks.lexical import GATE_FEATURES, fit_combination, question_features

    model_scores: dict[str, list[float]] = {}
    features: dict[str, list[tuple[float, float]]] = {}
    for split, cases in (("dev", pairs.dev_cases), ("test", pairs.test_cases)):
        model_scores[split] = [gate_score(model, c.question, c.passages)[0] for c in cases]
        features[split] = [question_features(c.question, c.passages) for c in cases]
    alone = _case_figures(model, pairs, model_scores)
    combination = fit_combination(model_scores["dev"], features["dev"], [c.answerable for c in pairs.dev_cases])
    combined = {
        split: [combination.probability(p, f) for p, f in zip(model_scores[split], features[split], strict=True)]
        for split in model_scores
    }
    figures = _case_figures(model, pairs, combined)
    gate = {**combination.to_json(GATE_FEATURES), "threshold": figures["dev"]["threshold"], "figures": figures}
    return {"alone": alone, "gate": gate, "relevance": _calibrate_relevance(model, pairs, combined, gate["threshold"])}


def _calibrate_relevance(
    model: CrossEncoder, pairs: PairSet, gate_scores: dict[str, list[float]], gate_threshold: float
) -> dict[str, Any]:
    """The one-sentence relevance threshold (:mod:`grounded.checks.relevance`), chosen with the gate on
    the real dev questions (every dev case when they lack a kind); figures on dev and test. And the answer
    decision that replaces the two thresholds in a row, where there are real questions of both kinds
    (:func:`_calibrate_decision`)."""
    from grounded.checks.relevance import CANDIDATES, choose_relevance_threshold, decision_features, joint_figures

    dev = pairs.dev_cases
    real = [i for i, c in enumerate(dev) if c.kind not in SYNTHETIC_CASE_KINDS]
    chosen = real if len({dev[i].answerable for i in real}) == 2 else list(range(len(dev)))
    scored = {"dev": decision_features(model, [dev[i] for i in chosen])}
    labels = {"dev": [dev[i].answerable for i in chosen]}
    gate = {"dev": [gate_scores["dev"][i] for i in chosen]}
    test = pairs.test_cases
    real_test = [i for i, c in enumerate(test) if c.kind not in SYNTHETIC_CASE_KINDS] if chosen is real else []
    if real_test:
        scored["test"] = decision_features(model, [test[i] for i in real_test])
        labels["test"] = [test[i].answerable for i in real_test]
        gate["test"] = [gate_scores["test"][i] for i in real_test]
    relevance = {split: [r for r, _ in rows] for split, rows in scored.items()}
    threshold, _ = choose_relevance_threshold(labels["dev"], gate["dev"], relevance["dev"], gate_threshold)
    out: dict[str, Any] = {
        "threshold": round(threshold, 4),
        "chosen_on": "real questions" if chosen is real else "all cases",
        "candidates": CANDIDATES,
        "figures": {
            split: joint_figures(labels[split], gate[split], relevance[split], gate_threshold, threshold)
            for split in relevance
        },
    }
    if chosen is real:
        similarity = {split: [s for _, s in rows] for split, rows in scored.items()}
        out["decision"] = _calibrate_decision(labels, gate, relevance, similarity)
    return out


def _calibrate_decision(
    labels: dict[str, list[int]],
    gate: dict[str, list[float]],
    relevance: dict[str, list[float]],
    similarity: dict[str, list[float]],
) -> dict[str, Any]:
    """The answer decision (:func:`~grounded.checks.relevance.fit_decision`): weights and threshold on the
    real dev questions, then the floor on the best candidate's relevance (calibration v7,
    :func:`~grounded.checks.relevance.choose_answer_floor`) with it; figures (answered / abstained / balanced
    accuracy / AUC) on dev and test, without the floor (``without_floor``) and with it."""
    from grounded.checks.metrics import auc, balanced_accuracy, recall
    from grounded.checks.relevance import DECISION_FEATURES, choose_answer_floor, decision_scores, fit_decision

    combination, threshold, _ = fit_decision(labels["dev"], gate["dev"], relevance["dev"], similarity["dev"])
    dev_passed = [
        int(x >= threshold) for x in decision_scores(combination, gate["dev"], relevance["dev"], similarity["dev"])
    ]
    floor, _ = choose_answer_floor(labels["dev"], dev_passed, relevance["dev"])
    figures: dict[str, Any] = {}
    for split in labels:
        scores = decision_scores(combination, gate[split], relevance[split], similarity[split])
        passed = [int(x >= threshold) for x in scores]
        predicted = [int(p and r >= floor) for p, r in zip(passed, relevance[split], strict=True)]
        figures[split] = {
            "questions": len(scores),
            "auc": round(auc(labels[split], scores), 4),
            "similarity_auc": round(auc(labels[split], similarity[split]), 4),
            "answered": round(recall(labels[split], predicted, 1), 4),
            "abstained": round(recall(labels[split], predicted, 0), 4),
            "balanced_accuracy": round(balanced_accuracy(labels[split], predicted), 4),
            "without_floor": {
                "answered": round(recall(labels[split], passed, 1), 4),
                "abstained": round(recall(labels[split], passed, 0), 4),
                "balanced_accuracy": round(balanced_accuracy(labels[split], passed), 4),
            },
        }
    return {
        **combination.to_json(DECISION_FEATURES),
        "threshold": round(threshold, 4),
        "floor": round(floor, 4),
        "figures": figures,
    }


def evaluate(model: CrossEncoder, pairs: PairSet) -> dict[str, Any]:
    """Per task, thresholds chosen on the dev split (best balanced accuracy) and figures on dev
    and test at those thresholds: AUC, balanced accuracy, recall per rule ("negation (0)": the
    share of negated claims scored unsupported). Responses: the lowest sentence score."""
    from grounded.checks.checker import response_scores
    from grounded.checks.metrics import auc, balanced_accuracy, best_threshold

    figures: dict[str, Any] = {}
    for task in TASKS:
        dev = [p for p in pairs.dev if p.task == task]
        if not dev:
            continue
        figures[task] = {"dev": _pair_figures(model, dev, task, None)}
        test = [p for p in pairs.test if p.task == task]
        if test:
            figures[task]["test"] = _pair_figures(model, test, task, figures[task]["dev"]["threshold"])
    if pairs.dev_cases:
        figures["gate"] = _case_figures(model, pairs)
    if pairs.dev_responses:
        labels = [r.faithful for r in pairs.dev_responses]
        scores = response_scores(model, [(r.text, r.passages) for r in pairs.dev_responses])
        threshold, ba = best_threshold(labels, scores)
        figures["response"] = {
            "dev": {
                "responses": len(labels),
                "auc": round(auc(labels, scores), 4),
                "threshold": round(threshold, 4),
                "balanced_accuracy": round(ba, 4),
            }
        }
        if pairs.test_responses:
            labels = [r.faithful for r in pairs.test_responses]
            scores = response_scores(model, [(r.text, r.passages) for r in pairs.test_responses])
            predicted = [int(s >= threshold) for s in scores]
            figures["response"]["test"] = {
                "responses": len(labels),
                "auc": round(auc(labels, scores), 4),
                "balanced_accuracy": round(balanced_accuracy(labels, predicted), 4),
            }
    return figures


def _combined_scores(model: CrossEncoder, combination: Any, pairs: list[Pair]) -> list[float]:
    from grounded.checks.lexical import claim_features

    probs = model.score([p.text for p in pairs], [p.evidence for p in pairs], "support")
    return [
        combination.probability(float(q), claim_features(p.text, [p.evidence]))
        for q, p in zip(probs, pairs, strict=True)
    ]


def calibrate(model: CrossEncoder, pairs: PairSet) -> dict[str, Any]:
    """Everything chosen after training, on dev data (the weights stay): the checker's combination of
    the model's logit with the lexical features (:mod:`grounded.checks.lexical`), its weights fitted
    on the dev support pairs and the pair threshold on them; the response aggregation (min or mean of
    the claims) and threshold on the dev responses; the gate's threshold on the dev questions. Figures
    on test. Nothing here reads a test file. Stored as ``combination`` in ``checks.json`` with the
    digest of the responses and questions it was chosen on."""
    from grounded.checks.checker import AGGREGATIONS, aggregate, claim_scores, response_scores
    from grounded.checks.lexical import claim_features, fit_combination
    from grounded.checks.metrics import auc, balanced_accuracy, best_threshold

    dev = [p for p in pairs.dev if p.task == "support"]
    probs = model.score([p.text for p in dev], [p.evidence for p in dev], "support")
    features = [claim_features(p.text, [p.evidence]) for p in dev]
    combination = fit_combination([float(q) for q in probs], features, [p.label for p in dev])
    out: dict[str, Any] = {**combination.to_json(), "fitted_on": f"{len(dev)} dev support pairs"}
    dev_scores = _combined_scores(model, combination, dev)
    support_threshold, ba = best_threshold([p.label for p in dev], dev_scores, negative_weight=UNSUPPORTED_KEPT_COST)
    out["thresholds"] = {"support": round(support_threshold, 4)}
    figures: dict[str, Any] = {
        "support": {
            "dev": {"auc": round(auc([p.label for p in dev], dev_scores), 4), "balanced_accuracy": round(ba, 4)}
        }
    }
    test = [p for p in pairs.test if p.task == "support"]
    if test:
        scores = _combined_scores(model, combination, test)
        labels = [p.label for p in test]
        figures["support"]["test"] = {
            "auc": round(auc(labels, scores), 4),
            "balanced_accuracy": round(balanced_accuracy(labels, [int(x >= support_threshold) for x in scores]), 4),
        }
    if pairs.dev_responses:
        # The response aggregation and its threshold, chosen together (ties: min) on the dev responses that
        # people judged (LLM answers: what a verdict on a whole response is for) when there are both kinds
        # of them, else on all the dev responses (synthetic: one sentence rewritten or knowledge added).
        human = [r for r in pairs.dev_responses if r.kind.startswith(HUMAN_KIND)]
        chosen_on = human if len({r.faithful for r in human}) == 2 else pairs.dev_responses
        labels = [r.faithful for r in chosen_on]
        claims = claim_scores(model, [(r.text, r.passages) for r in chosen_on], combination)
        by_how: dict[str, tuple[float, float, list[float]]] = {}
        for how in AGGREGATIONS:
            scores_r = [aggregate(c, how) for c in claims]
            threshold, ba = best_threshold(labels, scores_r)
            by_how[how] = (ba, threshold, scores_r)
        how = max(AGGREGATIONS, key=lambda h: (round(by_how[h][0], 4), h == "min"))
        ba, threshold, scores_r = by_how[how]
        out["aggregation"] = how
        out["thresholds"]["response"] = round(threshold, 4)
        figures["response"] = {
            "chosen_on": f"{len(chosen_on)} dev responses" + (" judged by people" if chosen_on is human else ""),
            "dev": {"auc": round(auc(labels, scores_r), 4), "balanced_accuracy": round(ba, 4)},
            "dev_by_aggregation": {h: round(v[0], 4) for h, v in by_how.items()},
        }
        every = response_scores(model, [(r.text, r.passages) for r in pairs.dev_responses], combination, how)
        figures["response"]["dev_by_kind"] = _recall_by_kind(pairs.dev_responses, list(every), threshold)
        if pairs.test_responses:
            scored = response_scores(model, [(r.text, r.passages) for r in pairs.test_responses], combination, how)
            for name, keep in (("test", False), ("test_judged_by_people", True)):
                idx = [i for i, r in enumerate(pairs.test_responses) if r.kind.startswith(HUMAN_KIND) == keep]
                labels = [pairs.test_responses[i].faithful for i in idx]
                if len(set(labels)) == 2:
                    figures["response"][name] = {
                        "responses": len(idx),
                        "auc": round(auc(labels, [float(scored[i]) for i in idx]), 4),
                        "balanced_accuracy": round(
                            balanced_accuracy(labels, [int(scored[i] >= threshold) for i in idx]), 4
                        ),
                    }
    else:
        out["thresholds"]["response"] = out["thresholds"]["support"]
    if pairs.dev_cases and len({c.answerable for c in pairs.dev_cases}) == 2:
        gate = calibrate_gate(model, pairs)
        out["thresholds"]["answerable"] = gate["alone"]["dev"]["threshold"]
        if gate["relevance"]["chosen_on"] == "real questions":
            # Pseudo-questions are copied from a sentence, which answers them by construction: they say
            # nothing about one sentence beside a real question, so the window threshold stays then.
            out["thresholds"]["relevance"] = gate["relevance"]["threshold"]
        figures["gate_model_alone"] = gate["alone"]
        figures["relevance"] = gate["relevance"]
        out["gate"] = gate["gate"]
        if "decision" in gate["relevance"]:
            out["decision"] = gate["relevance"]["decision"]
    out["figures"] = figures
    out["digest"] = pairs.calibration_digest()
    out["version"] = CALIBRATION_VERSION
    return out


def _recall_by_kind(responses: list[Any], scores: list[float], threshold: float) -> dict[str, float]:
    """Per kind of dev response, the share decided right at ``threshold``."""
    out: dict[str, float] = {}
    for kind in sorted({r.kind for r in responses}):
        idx = [i for i, r in enumerate(responses) if r.kind == kind]
        right = [int(scores[i] >= threshold) == responses[i].faithful for i in idx]
        out[f"{kind} ({responses[idx[0]].faithful})"] = round(sum(right) / len(right), 4)
    return out


def _ensure_calibrated(path: Path, pairs: PairSet, threads: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Fit the calibration (:func:`calibrate`) when the model has none, or one chosen on other dev
    responses and questions, or by an older calibration: the weights are kept."""
    meta: dict[str, Any] = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    stored = meta.get("combination") or {}
    current = stored.get("digest") == pairs.calibration_digest() and stored.get("version") == CALIBRATION_VERSION
    if not current and any(p.task == "support" for p in pairs.dev):
        meta["combination"] = calibrate(CrossEncoder(path, quantize=True, threads=threads), pairs)
        log(f"calibration (int8): {json.dumps(meta['combination'])}")
        (path / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def train(
    recipe: Recipe,
    *,
    base_dir: Path | None = None,
    base_fingerprint: str | None = None,
    force: bool = False,
    activate_model: bool = True,
    max_minutes: float | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train (or find in the cache) the model of ``recipe``; see the module docstring.

    ``max_minutes`` stops training early; such a model is stored under its fingerprint plus
    the steps it did (``<fingerprint>-s<steps>``), so it never passes for the complete one.
    """
    from grounded.experts.embedding import resolve_model_dir

    if base_dir is None or base_fingerprint is None:
        base_dir, base_fingerprint = resolve_model_dir(recipe.base)
    pairs = build_pairs(recipe)
    fp = fingerprint(recipe, pairs, base_fingerprint)
    path = model_dir(fp)
    if (path / META_FILE).is_file() and not force:
        log(f"checks model {fp} already trained: {path}")
        meta_found = _ensure_calibrated(path, pairs, recipe.threads, log)  # a model trained before combinations
        if activate_model:
            activate(fp)
        return TrainResult(path, meta_found, trained=False)
    log(
        f"training checks model {fp}: {len(pairs.train)} train pairs, {len(pairs.dev)} dev pairs, "
        f"{len(pairs.test)} test pairs, {len(pairs.dev_responses)}/{len(pairs.test_responses)} dev/test responses"
    )
    # One partial folder per process: two processes training the same recipe at once (test
    # workers on a fresh machine) must not delete each other's work; the first to finish publishes.
    tmp = path.with_name(f"{path.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    speed = _fit(recipe, pairs.train, base_dir, tmp, log, max_minutes)
    if speed["steps"] < speed["steps_planned"]:  # a partial model never takes the full recipe's name
        fp = f"{fp}-s{int(speed['steps'])}"
        path = model_dir(fp)
    meta: dict[str, Any] = {
        "fingerprint": fp,
        "recipe": recipe.key(),
        "base": base_fingerprint,
        "max_tokens": recipe.max_tokens,
        "train_balance": balance(pairs.train),
        "dev_balance": balance(pairs.dev),
        "test_balance": balance(pairs.test),
        **speed,
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    served = evaluate(CrossEncoder(tmp, quantize=True, threads=recipe.threads), pairs)
    meta["eval_int8"] = served
    log(f"eval (int8, served): {json.dumps(served)}")
    # What int8 costs: float32 on the test support pairs, at its own dev-free threshold of int8.
    fp32 = CrossEncoder(tmp, quantize=False, threads=recipe.threads)
    test_support = [p for p in pairs.test if p.task == "support"]
    if test_support and "support" in served:
        meta["eval_fp32"] = {
            "support": {"test": _pair_figures(fp32, test_support, "support", served["support"]["dev"]["threshold"])}
        }
        log(f"eval (fp32, support test pairs): {json.dumps(meta['eval_fp32'])}")
    meta["thresholds"] = {
        "support": served["support"]["dev"]["threshold"] if "support" in served else 0.5,
        # The gate decides on whole questions (best window), so its threshold comes from the cases.
        "answerable": served.get("gate", served.get("answerable", {})).get("dev", {}).get("threshold", 0.5),
    }
    meta["thresholds"]["response"] = served.get("response", served.get("support", {}))["dev"]["threshold"]
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if (path / META_FILE).is_file():  # another process trained the same model meanwhile (seeded: same weights)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(path, ignore_errors=True)  # a folder left without its meta file by a crash
        tmp.replace(path)
    meta = _ensure_calibrated(path, pairs, recipe.threads, log)
    if activate_model:
        activate(fp)
    return TrainResult(path, meta, trained=True)
