"""The lexical features beside the model, their logistic combination, and the recipe the CLI trains."""

from __future__ import annotations

import math

import numpy as np
import pytest

from grounded.checks.checker import aggregate
from grounded.checks.lexical import Combination, claim_features, fit_combination, question_features
from grounded.checks.recipe import FULL_TRAINING, Recipe, recipe_for

PASSAGE = "King William I sent 10,000 soldiers to Brussels in 1830 to suppress the insurrection."


def test_a_claim_in_the_passage_has_all_its_words_and_numbers() -> None:
    assert claim_features("William I sent 10,000 soldiers to Brussels.", [PASSAGE]) == (1.0, 0.0, 0.0)


def test_a_swapped_number_and_an_invented_name_are_counted_missing() -> None:
    share, numbers, names = claim_features("King William I sent 45,000 soldiers to Antwerp.", [PASSAGE])
    assert numbers == 1.0
    assert names == 1.0
    assert share < 1.0


def test_a_claim_from_elsewhere_shares_few_words() -> None:
    share, _, _ = claim_features("Index funds offer more liquidity and long-term growth than a home.", [PASSAGE])
    assert share < 0.2


def test_the_fit_learns_that_missing_words_mean_unsupported() -> None:
    # The model is uninformative (0.5 everywhere); the word share separates the classes.
    features = [(1.0, 0.0, 0.0)] * 20 + [(0.3, 0.0, 0.0)] * 20
    labels = [1] * 20 + [0] * 20
    combination = fit_combination([0.5] * 40, features, labels)
    assert combination.weights[1] > 0
    assert combination.probability(0.5, (1.0, 0.0, 0.0)) > 0.5 > combination.probability(0.5, (0.3, 0.0, 0.0))
    again = fit_combination([0.5] * 40, features, labels)
    assert again == combination  # deterministic
    restored = Combination.from_json(combination.to_json())  # as stored in checks.json (rounded)
    assert math.isclose(
        restored.probability(0.9, (0.8, 1.0, 0.0)), combination.probability(0.9, (0.8, 1.0, 0.0)), rel_tol=1e-4
    )


def test_the_cli_recipe_is_the_default_without_data_and_the_full_one_with_it() -> None:
    assert recipe_for(None) == Recipe()
    full = recipe_for("../shared/data")
    assert (full.max_train_pairs, full.learning_rate) == (
        FULL_TRAINING["max_train_pairs"],
        FULL_TRAINING["learning_rate"],
    )
    assert recipe_for("../shared/data", epochs=1).epochs == 1
    assert (full.learning_rate, Recipe().learning_rate) == (1e-4, 1e-4)


WITH = "The with statement calls the context manager's __exit__() method when the block exits."


def test_a_question_outside_the_passages_has_none_of_its_words_and_names_there() -> None:
    assert question_features("Who won the 1998 FIFA World Cup final?", [WITH]) == (0.0, 3.0)
    assert question_features("What does the with statement call when the block exits?", [WITH]) == (1.0, 0.0)


def test_the_gate_combination_learns_that_a_question_beside_its_passages_is_unanswerable() -> None:
    # The model is uninformative; an answerable question's words are in its passages, an off-topic one's not.
    features = [(1.0, 0.0)] * 20 + [(0.1, 2.0)] * 20
    combination = fit_combination([0.5] * 40, features, [1] * 20 + [0] * 20)
    assert combination.probability(0.5, (1.0, 0.0)) > 0.5 > combination.probability(0.5, (0.1, 2.0))
    assert Combination.from_json(combination.to_json(("logit", "share", "missing"))) is not None


def test_a_response_aggregates_its_claims_by_min_or_mean() -> None:
    scores = np.array([0.9, 0.8, 0.1], dtype=np.float32)
    assert aggregate(scores, "min") == pytest.approx(0.1)
    assert aggregate(scores, "mean") == pytest.approx(0.6)
    assert aggregate(np.zeros(0, dtype=np.float32), "mean") == 1.0  # no claim: nothing to doubt
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(scores, "max")
