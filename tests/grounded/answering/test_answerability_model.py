"""The trained answerability model: its features, its heads, and the engine using it (or the rules)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import grounded
from grounded.answering.answerability_model import AnswerabilityModel, Head, answerability_cache
from grounded.answering.conversation import Turn
from grounded.answering.turn_features import TurnFeatures, definite_referent, turn_features, uncovered_terms
from grounded.errors import ConfigError
from grounded.kb import KnowledgeBase
from grounded.tune.answerability import (
    ANSWERABLE_FLOOR,
    GATE_ANSWERS,
    GATE_REFUSES,
    LabelledTurn,
    _cascade,
    _classes,
    _partial_share,
    conversation_group,
    fit_model,
    joint_thresholds,
    task_split,
)
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

VAGUE = "What does this keyword do?"
CLEAR = "What does the assert statement do?"


@pytest.fixture
def model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model cache with no answerability model trained 'on this machine' (the embedder's ONNX export is
    shared with the real cache, so it is not made again)."""
    real = answerability_cache().parent
    cache = tmp_path / "models"
    cache.mkdir()
    if (real / "encoders").is_dir():
        (cache / "encoders").symlink_to(real / "encoders")
    monkeypatch.setenv("GROUNDED_MODEL_CACHE", str(cache))
    return cache


def _kb(path: Path, backend: str, answerability: str) -> KnowledgeBase:
    return grounded.open(
        path,
        create=False,
        experts={"answer": {"backend": backend, "model": "echo"}},
        answer={"answerability": answerability, "cache": False},
    )


def test_turn_features_read_the_turn() -> None:
    history = [Turn("user", "Tell me about the Causeway VA Clinic"), Turn("assistant", "It serves veterans.")]
    vague = turn_features("Can we take the pets in the park?", [], "Can we take the pets in the park?", None, None)
    assert (vague.definite_unnamed, vague.names, vague.user_turns) == (1.0, 0.0, 0.0)
    assert definite_referent("Can we take the pets in the park?", []) == "pets"
    assert definite_referent("What can the police department offer?", []) == "police department"
    assert definite_referent("Which are the opportunities available?", []) == "opportunities"
    assert definite_referent("Can we take pets in the park?", [Turn("user", "Tell me about parks")]) is None
    named = turn_features("Does the Causeway VA Clinic treat it?", history, "x", None, None)
    assert named.definite_unnamed == 0.0  # a capitalised "the X" is a name
    assert named.names > 0
    assert named.pronoun == 1.0
    assert named.rewritten == 1.0
    demo = turn_features("What does this library provide?", [], "What does this library provide?", None, None)
    assert (demo.demonstrative, demo.unresolved) == (1.0, 1.0)
    price = turn_features("How much does it cost?", [], "How much does it cost?", None, None)
    assert (price.quantity, price.quantity_unmet) == (1.0, 1.0)  # no passage, so no number either
    assert demo.quantity_unmet == 0.0
    shapes = {
        q: (f.yes_no, f.opinion)
        for q in ("Is there a plan for small businesses?", "So, can I do that?", "Which one do you recommend?",
                  "What is the best fund? Is it safe?", "What does this library provide?")
        for f in [turn_features(q, [], q, None, None)]
    }  # fmt: skip
    assert shapes == {
        "Is there a plan for small businesses?": (1.0, 0.0),
        "So, can I do that?": (1.0, 0.0),
        "Which one do you recommend?": (0.0, 1.0),
        "What is the best fund? Is it safe?": (1.0, 1.0),
        "What does this library provide?": (0.0, 0.0),
    }


def _rows(kb: KnowledgeBase) -> list[LabelledTurn]:
    """Clear cases through the engine's own feature path: vague turns, and specific ones."""
    vague = [
        "What does this keyword do?", "How is this statement used?", "When does that clause run?",
        "What does this loop return?", "Which errors does this block catch?", "Where is that variable defined?",
    ]  # fmt: skip
    specific = [
        "What does the assert statement do?", "How does the for statement iterate over a sequence?",
        "When is the else clause of a while loop executed?", "What does the pass statement do?",
        "What does the break statement do in a for loop?", "What does the return statement return?",
    ]  # fmt: skip
    rows = []
    for i, q in enumerate(vague + specific):
        features = kb.engine.turn_features(q)
        label = "UNDERSPECIFIED" if q in vague else ("PARTIAL" if i % 2 else "ANSWERABLE")
        split = ("train", "train", "dev")[i % 3]
        rows.append(LabelledTurn(f"t{i}", label, split, features))  # type: ignore[arg-type]
    return rows


def test_trained_on_a_tiny_set_it_decides_clear_cases_and_is_deterministic(
    built_kb_path: Path,
    fake_backend: str,  # noqa: F811
    model_cache: Path,
) -> None:
    kb = _kb(built_kb_path, fake_backend, "rules")
    rows = _rows(kb)
    model = fit_model(rows, fingerprint="tiny")
    again = fit_model(_rows(kb), fingerprint="tiny")
    assert json.dumps(model.to_json(), sort_keys=True) == json.dumps(again.to_json(), sort_keys=True)
    assert model.decide("underspecified", kb.engine.turn_features("What does this operator do?")).yes
    assert not model.decide("underspecified", kb.engine.turn_features("What does the del statement do?")).yes
    assert model.meta["figures"]["underspecified"]["fitted"]["recall"] == 1.0
    assert set(model.meta["figures"]["underspecified"]) == {"fitted", "cross-validated", "test"}
    path = model.save()
    assert path == answerability_cache() / "tiny"
    assert AnswerabilityModel.active() == AnswerabilityModel.load(path)


def test_the_engine_falls_back_to_the_rules_without_a_model(
    built_kb_path: Path,
    fake_backend: str,  # noqa: F811
    model_cache: Path,
) -> None:
    answer = _kb(built_kb_path, fake_backend, "auto").ask(VAGUE)
    assert (answer.answerability, answer.text) == ("underspecified", "Which keyword are you referring to?")
    assert "model" not in answer.trace["answerability"]
    with pytest.raises(ConfigError, match="grounded tune answerability"):
        _kb(built_kb_path, fake_backend, "model").ask(VAGUE)


def test_the_engine_uses_the_model_and_traces_its_scores(
    built_kb_path: Path,
    fake_backend: str,  # noqa: F811
    model_cache: Path,
) -> None:
    fit_model(_rows(_kb(built_kb_path, fake_backend, "rules")), fingerprint="tiny").save()
    kb = _kb(built_kb_path, fake_backend, "auto")
    vague = kb.ask("What does this operator do?")
    assert (vague.answerability, vague.text) == ("underspecified", "Which operator are you referring to?")
    assert not vague.grounded
    assert not vague.citations
    scores = vague.trace["answerability"]["model"]
    assert scores["model"] == "answerability tiny"
    assert scores["underspecified"]["yes"] is True
    clear = kb.ask(CLEAR)
    assert clear.answerability in ("answerable", "partial")
    verdicts = clear.trace["answerability"]["model"]
    assert verdicts["underspecified"]["yes"] is False
    assert "partial" in verdicts
    if clear.answerability == "partial":  # a partial answer says what the sources lack
        assert "The sources" in clear.text
    assert kb.ask(CLEAR).canonical_json() == clear.canonical_json()


def test_uncovered_terms_name_what_no_passage_holds(built_kb_path: Path, fake_backend: str) -> None:  # noqa: F811
    kb = _kb(built_kb_path, fake_backend, "rules")
    features = kb.engine.turn_features("What does the assert statement cost in dollars?")
    assert features.covered < 1.0
    assert isinstance(features, TurnFeatures)
    assert uncovered_terms("x", None) == ("x",)


def test_split_is_by_dialogue() -> None:
    first = {"input": [{"speaker": "user", "text": "What is a Roth IRA?"}], "conversation_id": "a"}
    branch = {
        "input": [
            {"speaker": "user", "text": "What is  a Roth IRA?"},
            {"speaker": "agent", "text": "An account."},
            {"speaker": "user", "text": "Can I open this account?"},
        ],
        "conversation_id": "b",
    }
    assert conversation_group(first) == conversation_group(branch)
    assert task_split(first) == task_split(branch)


def test_thresholds_are_chosen_together_on_the_cascade() -> None:
    """The three cuts are chosen on what the engine does with them in order, for the least-handled class,
    and never ask back on or refuse so many answerable turns that fewer than the floor are answered."""
    labels = ["ANSWERABLE"] * 4 + ["PARTIAL"] * 2 + ["UNANSWERABLE"] * 2 + ["UNDERSPECIFIED"] * 2
    rows = [LabelledTurn(f"t{i}", label, "train", TurnFeatures()) for i, label in enumerate(labels)]
    p = {
        "underspecified": np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9]),
        "unanswerable": np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1]),
        "partial": np.array([0.2, 0.2, 0.2, 0.2, 0.9, 0.9, 0.2, 0.2, 0.2, 0.2]),
    }
    chosen = joint_thresholds(rows, p)
    assert chosen == {"underspecified": 0.5, "unanswerable": 0.5, "partial": 0.5}  # separable: the cuts nearest 0.5
    assert _cascade(_classes(rows), p, chosen) == [GATE_ANSWERS, 1.0, 1.0, 1.0]
    # One answerable turn looks vague (0.8): asking it back would leave 3 x 0.85 / 4 < the floor answered.
    p["underspecified"][0] = 0.8
    assert 3 * GATE_ANSWERS / 4 < ANSWERABLE_FLOOR
    chosen = joint_thresholds(rows, p)
    assert 0.8 < chosen["underspecified"] <= 0.9
    # Without an unanswerable head (a data set with no such turn), that head never says yes: the gate decides.
    del p["unanswerable"]
    assert _cascade(_classes(rows), p, chosen)[2] == GATE_REFUSES


def test_the_partial_cap_limits_answerable_turns_labelled_partial() -> None:
    """With a cap, the cuts never label more than that share of answerable turns partial, even where that
    would hand partial turns a larger share."""
    labels = ["ANSWERABLE"] * 4 + ["PARTIAL"] * 2
    rows = [LabelledTurn(f"t{i}", label, "train", TurnFeatures()) for i, label in enumerate(labels)]
    p = {
        "underspecified": np.full(6, 0.1),
        "unanswerable": np.full(6, 0.1),
        "partial": np.array([0.2, 0.6, 0.6, 0.6, 0.7, 0.55]),
    }
    y = _classes(rows)
    free = joint_thresholds(rows, p, partial_cap=1.0)
    assert _cascade(y, p, free)[1] == 1.0  # both partial turns found, at the cost of three answerable ones
    assert _partial_share(y, p, free) == 0.75
    capped = joint_thresholds(rows, p, partial_cap=0.25)
    assert _partial_share(y, p, capped) <= 0.25
    assert _cascade(y, p, capped)[1] == 0.5  # the one partial turn above every answerable one


def _fixed(p: float) -> Head:
    """A head that says ``p`` of every turn (no weights, a bias): the engine's plumbing without a fit."""
    names = ("user_turns",)
    return Head(names, (0.0,), (1.0,), (0.0,), math.log(p / (1 - p)), threshold=0.5)


def _fixed_model(*, partial: float, unanswerable: float | None) -> AnswerabilityModel:
    return AnswerabilityModel(
        _fixed(0.01), _fixed(partial), "fixed", {}, None if unanswerable is None else _fixed(unanswerable)
    )


def test_a_partial_turn_is_written_past_a_refusing_gate(
    built_kb_path: Path,
    fake_backend: str,  # noqa: F811
    model_cache: Path,
) -> None:
    _fixed_model(partial=0.99, unanswerable=0.01).save()
    strict = {"answerability": "auto", "cache": False, "min_evidence_similarity": 0.999}
    kb = grounded.open(built_kb_path, create=False, experts={"answer": {"backend": fake_backend, "model": "echo"}},
                       answer=strict)  # fmt: skip
    answer = kb.ask(CLEAR)
    assert answer.answerability == "partial"
    assert not answer.abstained
    assert answer.citations
    assert "The sources" in answer.text  # what is missing is said
    scores = answer.trace["answerability"]["model"]
    assert scores["partial"]["yes"] is True
    assert scores["rules"] == "unanswerable"  # the gate alone would have refused
    _fixed_model(partial=0.01, unanswerable=0.01).save()
    refused = grounded.open(built_kb_path, create=False, experts={"answer": {"backend": fake_backend, "model": "echo"}},
                            answer=strict).ask(CLEAR)  # fmt: skip
    assert (refused.answerability, refused.abstained) == ("unanswerable", True)


def test_a_partial_turn_with_nothing_verified_quotes_the_closest_evidence(
    built_kb_path: Path,
    fake_backend: str,  # noqa: F811
    model_cache: Path,
) -> None:
    _fixed_model(partial=0.99, unanswerable=0.01).save()
    # Nothing the writer drafts is supported (no sentence is identical to its evidence), and no quote clears the gate.
    strict = {"answerability": "auto", "cache": False, "min_evidence_similarity": 0.999, "min_sentence_similarity": 1.0}
    kb = grounded.open(built_kb_path, create=False, experts={"answer": {"backend": fake_backend, "model": "echo"}},
                       answer=strict)  # fmt: skip
    answer = kb.ask(CLEAR)
    assert (answer.answerability, answer.abstained) == ("partial", False)
    assert [s.quoted for s in answer.sentences] == [True]
    assert answer.sentences[0].citations
    assert "closest evidence sentence is quoted" in answer.trace["answerability"]["reason"]
    assert answer.trace["answerability"]["model"]["rules"] == "unanswerable"


def test_an_unanswerable_turn_is_refused_before_writing(
    built_kb_path: Path,
    fake_backend: str,  # noqa: F811
    model_cache: Path,
) -> None:
    _fixed_model(partial=0.01, unanswerable=0.99).save()
    lenient = {"answerability": "auto", "cache": False, "min_evidence_similarity": -1.0}
    kb = grounded.open(built_kb_path, create=False, experts={"answer": {"backend": fake_backend, "model": "echo"}},
                       answer=lenient)  # fmt: skip
    answer = kb.ask(CLEAR)
    assert (answer.answerability, answer.abstained) == ("unanswerable", True)
    decided = answer.trace["answerability"]
    assert "answerability model" in decided["reason"]
    assert decided["model"]["unanswerable"]["yes"] is True
    assert decided["model"]["rules"] is None  # the rules would have written: their label is not known


def test_a_first_recipe_model_loads_without_the_unanswerable_head(model_cache: Path) -> None:
    path = _fixed_model(partial=0.5, unanswerable=None).save()
    data = json.loads((path / "answerability.json").read_text())
    assert set(data["heads"]) == {"underspecified", "partial"}
    model = AnswerabilityModel.load(path)
    assert not model.has("unanswerable")
    assert model.has("partial")
    with pytest.raises(ConfigError, match="no 'unanswerable' head"):
        model.decide("unanswerable", TurnFeatures())


def test_a_question_asked_on_its_own_is_asked_back_only_about_a_pronoun_or_demonstrative(
    built_kb_path: Path,
    fake_backend: str,  # noqa: F811
    model_cache: Path,
) -> None:
    AnswerabilityModel(_fixed(0.99), _fixed(0.01), "always vague", {}, _fixed(0.01)).save()
    kb = _kb(built_kb_path, fake_backend, "auto")
    clear = kb.ask(CLEAR)
    assert clear.answerability != "underspecified"
    assert clear.trace["answerability"]["model"]["underspecified"]["yes"] is False
    assert kb.ask(VAGUE).answerability == "underspecified"  # "this keyword": nothing pins it down
    follow_up = kb.ask(CLEAR, history=[{"role": "user", "content": "Tell me about statements"},
                                       {"role": "assistant", "content": "There are simple and compound ones."}])  # fmt: skip
    assert follow_up.answerability == "underspecified"  # in a conversation the head decides as trained
