"""The pieces under the checks that need no model: evidence windows, rewrite rules, metrics."""

from __future__ import annotations

import random

import numpy as np
import pytest

from grounded.checks import perturb
from grounded.checks.checker import as_plain_text, claims_of, is_scaffolding, looks_cut_off, looks_like_prose
from grounded.checks.metrics import auc, balanced_accuracy, best_threshold, recall
from grounded.checks.text import content_words, detokenize, evidence_window, split_sentences

PASSAGE = (
    "The Belgian Revolution broke out on 25 August 1830 in Brussels. It followed a performance of an opera. "
    "King William I sent troops to suppress it. The rebels won, and Belgium became independent in 1831. "
    "Leopold I was chosen as the first king."
)


def test_evidence_window_picks_the_aligned_sentences_in_order() -> None:
    window = evidence_window("Belgium became independent in 1831.", [PASSAGE], max_words=20)
    assert "Belgium became independent in 1831" in window
    assert window.index("King William I") < window.index("Belgium became")  # neighbour kept, order kept
    assert "Leopold" not in window or len(window.split()) <= 20 + 10


def test_evidence_window_marks_gaps_and_spans_passages() -> None:
    window = evidence_window(
        "Leopold was chosen as king; Paris is in France.", [PASSAGE, "Paris is in France."], max_words=15
    )
    assert "Leopold I" in window
    assert "Paris is in France." in window
    assert "…" in window


def test_evidence_window_without_shared_words_gives_the_opening() -> None:
    assert evidence_window("zebra quokka", [PASSAGE], max_words=12).startswith("The Belgian Revolution")
    assert evidence_window("anything", []) == ""


def test_detokenize_and_sentences() -> None:
    assert detokenize("the `` season '' -- seven ( x ) , it 's") == 'the "season" - seven (x), it\'s'
    assert split_sentences("One here. Two  there.") == ["One here.", "Two there."]
    assert "revolution" in content_words("The revolutions")  # stemmed, stop words dropped
    assert "the" not in content_words("The revolutions")


@pytest.mark.parametrize(
    ("sentence", "cut"),
    [
        ("The __exit__() method is called when [1]", True),
        ('Black: The song "The Reverend Mr.', True),
        ("The with statement calls __exit__() when the block exits.", False),
        ("It is what the phrase refers to.", False),
        ("Operators in the same box have the same precedence (see the table", True),
    ],
)
def test_looks_cut_off(sentence: str, cut: bool) -> None:
    assert looks_cut_off(sentence) is cut


@pytest.mark.parametrize(
    ("sentence", "prose"),
    [
        ("Lambdas ******* def <lambda>(parameters):", False),  # a heading with its underline and code
        ('lambda_expr ::= "lambda" [parameter_list] ":" expression', False),  # grammar
        ("The unnamed object behaves like a function object defined with:", False),  # introduces code
        ('The extended form, "assert expression1, expression2", is equivalent to [1]', False),  # quoted in the demo
        ("For example, the following code [3]", False),  # the code it introduced is gone
        ("The result is computed as follows.", False),
        ("The result is equal to the sum of both operands.", True),
        ("def <lambda>(parameters): return expression", False),
        ("x = 1 + 2", False),
        ("import pdb; pdb.Pdb(skip=['django.*']).set_trace() [1]", False),  # kept off-corpus in the demo
        ("from os import path", False),
        ("import pdb", False),
        ("The import statement finds a module; it then binds a name. [1]", True),
        ("Import the module first; then call it.", True),
        ("The with statement calls __exit__() when the block exits. [2]", True),
        ("It returns None. [1]", True),
        ('The value of "x" is 3.', True),
    ],
)
def test_looks_like_prose(sentence: str, prose: bool) -> None:
    assert looks_like_prose(sentence) is prose


def test_unsupported_rules_change_the_claim() -> None:
    rng = random.Random(0)
    s = "The Belgian Revolution broke out on 25 August 1830 in Brussels, which was ruled by King William I."
    assert perturb.negate(s, rng) in {
        s.replace("was ruled", "was not ruled"),
        s.replace("was ruled", "was never ruled"),
    }
    assert perturb.negate("It is not mutable.", rng) == "It is mutable."
    assert perturb.negate("The with statement calls __exit__ on exit.", rng) == (
        "The with statement never calls __exit__ on exit."
    )
    number = perturb.swap_number(s, rng)
    assert number is not None
    assert number != s
    assert perturb.antonym("Prices increased before the war.", rng) in {
        "Prices decreased before the war.",
        "Prices increased after the war.",
    }
    roles = perturb.swap_roles("Brussels beat Antwerp in 1830 while Ghent watched.", rng)
    assert roles is not None
    assert roles != "Brussels beat Antwerp in 1830 while Ghent watched."
    truncated = perturb.truncate(s, rng)
    assert truncated is not None
    assert len(truncated) < len(s)
    swapped = perturb.swap_entity(s, rng, ["Leopold I"])
    assert swapped is not None
    assert "Leopold I" in swapped
    assert swapped != s
    assert perturb.join_clause(s, "Leopold I was chosen as king.", rng) not in {None, s}
    assert perturb.negate("No verb here at all", rng) is None


def test_supported_rewrites_keep_the_claim() -> None:
    rng = random.Random(1)
    assert perturb.reformat_numbers("It broke out on 25 August 1830.", rng) == "It broke out on August 25, 1830."
    assert perturb.reformat_numbers("It cost 1,000 francs.", rng) == "It cost 1000 francs."
    assert (
        perturb.drop_clause("The opera (La muette) was played in Brussels.", rng) == "The opera was played in Brussels."
    )
    assert perturb.lowercase("Paris Is Big.", rng) == "paris is big."
    hedged = perturb.hedge("The opera was played.", rng)
    assert hedged is not None
    assert hedged.endswith("the opera was played.")


def test_rules_are_seeded() -> None:
    s = "In 1830 the Belgian Revolution broke out in Brussels with 5,000 men."
    first = [perturb.swap_number(s, random.Random(7)) for _ in range(3)]
    assert len(set(first)) == 1


def test_metrics_on_handmade_values() -> None:
    labels = [1, 1, 0, 0]
    assert auc(labels, [0.9, 0.4, 0.4, 0.1]) == pytest.approx(0.875)
    assert auc(labels, [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert balanced_accuracy([1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 1]) == pytest.approx((0.5 + 0.75) / 2)
    assert recall([1, 0], [0, 0], 1) == 0.0
    threshold, ba = best_threshold(labels, np.array([0.9, 0.8, 0.2, 0.1]))
    assert 0.2 < threshold <= 0.8
    assert ba == 1.0
    with pytest.raises(ValueError, match="labels but"):
        auc([1, 0], [0.1])


def test_best_threshold_rises_when_a_negative_let_through_costs_more() -> None:
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.4, 0.45, 0.2, 0.1, 0.05]
    assert best_threshold(labels, scores)[0] == pytest.approx(0.3)  # lets the 0.45 negative through
    threshold, ba = best_threshold(labels, scores, negative_weight=2)
    assert threshold == pytest.approx(0.575)  # holds back the 0.4 positive instead
    assert ba == pytest.approx(0.875)
    with pytest.raises(ValueError, match="negative_weight"):
        best_threshold(labels, scores, negative_weight=0)


@pytest.mark.parametrize(
    ("sentence", "scaffolding"),
    [
        ("2.", True),  # a list marker the sentence splitter cut off its item
        ("10.", True),
        ("Here are some tips:", True),
        ("**FICO Score:**", True),
        ("Some common types of mortgage scams include: 1.", True),
        ("Payment history (35%): On-time payments and late payments.", False),
        ("No, they are not the same.", False),
        ("Belgium became independent in 1831. [1]", False),
        ("It has 2 wheels.", False),
    ],
)
def test_is_scaffolding(sentence: str, scaffolding: bool) -> None:
    assert is_scaffolding(sentence) is scaffolding


def test_a_responses_claims_leave_out_refusals_questions_and_list_scaffolding() -> None:
    response = (
        "Here are the steps: 1. Open a case with the court. 2. Serve the other parent. "
        "Is there anything else I can help you with?"
    )
    assert claims_of(response) == ["Open a case with the court.", "Serve the other parent."]


def test_a_claim_is_read_without_markdown_or_its_list_marker() -> None:
    assert as_plain_text("1. **Initiate the Case**: file form `FL-600`.") == "Initiate the Case: file form FL-600."
    assert as_plain_text("- **Stocks:** high returns.") == "Stocks: high returns."
    assert as_plain_text("In 1831 Belgium became independent.") == "In 1831 Belgium became independent."
