"""The one-sentence relevance threshold: chosen with the gate on whole questions (grounded.checks.relevance)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grounded.checks import AnswerabilityGate, CrossEncoder, Recipe
from grounded.checks.data import GateCase
from grounded.checks.relevance import (
    choose_answer_floor,
    choose_relevance_threshold,
    decision_scores,
    fit_decision,
    joint_figures,
)


def test_the_threshold_is_the_one_that_makes_gate_and_relevance_decide_best() -> None:
    labels = [1, 1, 1, 0, 0, 0]
    gate = [0.9, 0.9, 0.9, 0.9, 0.9, 0.1]  # the gate lets two unanswerable questions through
    relevance = [0.40, 0.30, 0.35, 0.10, 0.20, 0.05]
    threshold, ba = choose_relevance_threshold(labels, gate, relevance, 0.5)
    assert 0.20 < threshold < 0.30  # between the passed unanswerable ones and the answerable ones
    assert ba == 1.0
    figures = joint_figures(labels, gate, relevance, 0.5, threshold)
    assert figures["gate"]["abstained"] == 0.3333
    assert figures["gate_and_relevance"] == {"answered": 1.0, "abstained": 1.0, "balanced_accuracy": 1.0}


def test_among_equally_good_thresholds_the_middle_of_their_range_is_taken() -> None:
    # The gate alone decides: every threshold up to the lowest answerable relevance (0.3) is as good.
    threshold, ba = choose_relevance_threshold([1, 1, 0], [0.9, 0.9, 0.1], [0.3, 0.5, 0.2], 0.5)
    assert ba == 1.0
    assert 0.1 < threshold < 0.3


def test_the_answer_decision_weighs_the_evidence_similarity_the_two_thresholds_cannot() -> None:
    # Gate and relevance say the same for every question; only the evidence similarity tells them apart.
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    gate = [0.8, 0.6, 0.7, 0.9, 0.8, 0.6, 0.7, 0.9]
    relevance = [0.4, 0.3, 0.5, 0.35, 0.4, 0.3, 0.5, 0.35]
    similarity = [0.72, 0.65, 0.70, 0.68, 0.41, 0.52, 0.38, 0.47]
    _, ba = choose_relevance_threshold(labels, gate, relevance, 0.5)
    assert ba == 0.5  # no relevance threshold helps
    combination, cut, ba = fit_decision(labels, gate, relevance, similarity)
    assert ba == 1.0
    assert combination.weights[2] > 0  # more similar evidence, more likely an answer
    scores = decision_scores(combination, gate, relevance, similarity)
    assert [int(x >= cut) for x in scores] == labels
    # The same inputs give the same decision, bit for bit.
    assert fit_decision(labels, gate, relevance, similarity)[0] == combination


def test_the_answer_floor_refuses_what_the_decision_passed_on_close_evidence_alone() -> None:
    # The decision passed five questions; two unanswerable ones got through on close evidence, their best
    # sentence answering nothing (relevance 0.05 and 0.1). The floor falls between them and the answerable ones.
    labels = [1, 1, 1, 0, 0, 0]
    passed = [1, 1, 1, 1, 1, 0]
    relevance = [0.6, 0.3, 0.45, 0.05, 0.1, 0.9]
    floor, ba = choose_answer_floor(labels, passed, relevance)
    assert 0.1 < floor < 0.3
    assert ba == 1.0
    # Where the floor changes nothing on dev, every floor up to the lowest answerable relevance is as good:
    # the middle of that range, never one at its edge.
    floor, ba = choose_answer_floor([1, 1, 0], [1, 1, 0], [0.4, 0.6, 0.05])
    assert ba == 1.0
    assert 0.0 < floor < 0.4
    # A question the decision refused stays refused whatever its relevance.
    assert choose_answer_floor([1, 0], [0, 0], [0.9, 0.1])[1] == 0.5


HISTORY = (
    "The Belgian Revolution broke out on 25 August 1830 in Brussels, after a performance of an opera. "
    "King William I sent 10,000 soldiers to Brussels to suppress the insurrection. "
    "Belgium became independent in 1831, and Leopold I was chosen as its first king."
)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_real_dev_questions_set_the_gates_sentence_threshold(tmp_path: Path) -> None:
    from grounded.checks.recipe import PairSet, build_pairs
    from grounded.checks.train import _ensure_calibrated, train

    model_dir = train(Recipe(), activate_model=False, log=lambda _: None).path
    copy = tmp_path / model_dir.name
    shutil.copytree(model_dir, copy)
    full = build_pairs(Recipe())
    real = [
        GateCase("When did the Belgian Revolution break out?", (HISTORY,), 1, "clapnq_answerable", "a"),
        GateCase("Who was chosen as the first king of Belgium?", (HISTORY,), 1, "clapnq_answerable", "b"),
        GateCase("How many people died in the Belgian Revolution?", (HISTORY,), 0, "clapnq_unanswerable", "c"),
        GateCase("Which opera did the Dutch king compose in 1829?", (HISTORY,), 0, "clapnq_unanswerable", "d"),
    ]
    pairs = PairSet(dev=[p for p in full.dev if p.task == "support"][:40], dev_cases=full.dev_cases[:20] + real)
    meta = _ensure_calibrated(copy, pairs, 1, lambda _: None)
    relevance = meta["combination"]["figures"]["relevance"]
    assert relevance["chosen_on"] == "real questions"
    assert relevance["figures"]["dev"]["questions"] == len(real)
    threshold = meta["combination"]["thresholds"]["relevance"]
    assert threshold == relevance["threshold"]
    assert AnswerabilityGate(CrossEncoder(copy)).relevance_threshold == pytest.approx(threshold)
    # With real questions of both kinds, the answer decision is fitted on them and the gate decides by it.
    decision = meta["combination"]["decision"]
    assert decision["features"] == ["gate_logit", "relevance_logit", "evidence_similarity"]
    assert decision["figures"]["dev"]["questions"] == len(real)
    gate = AnswerabilityGate(CrossEncoder(copy))
    assert gate.decision is not None
    assert gate.decision_threshold == pytest.approx(decision["threshold"])
    assert gate.decision_floor == pytest.approx(decision["floor"])
    assert "without_floor" in decision["figures"]["dev"]
    _, yes = gate.answers(0.999, decision["floor"] / 2, 0.99)  # under the floor: no answer, however close
    assert not yes or decision["floor"] == 0.0
    p, _ = gate.answers(0.9, 0.8, 0.7)
    assert 0.0 <= p <= 1.0
