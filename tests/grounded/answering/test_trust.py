"""The trained checks in the answer path (grounded.answering.trust), with the real model.

The model is the default checks recipe (synthetic pairs from the demo corpus), trained once per
machine into the model cache and found again by its fingerprint (as in tests/grounded/checks);
the writer is scripted, so each test decides exactly which draft the checks judge.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import grounded
from grounded.answering.engine import CONVERSATIONAL_REPLY, GroundingEngine
from grounded.answering.trust import Checks, is_fragment
from grounded.checks import AnswerabilityGate, CrossEncoder, EntailmentChecker, Recipe
from grounded.experts.base import Generation, Message
from grounded.grounding.router import Router
from grounded.kb import KnowledgeBase

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

WITH_QUESTION = "What does the with statement call when the block exits?"
EXIT_SENTENCE = "The context manager's __exit__() method is invoked."


class Scripted:
    """A writer whose draft is fixed by the test (and which records whether it was asked)."""

    def __init__(self, reply: Callable[[str], str], finish_reason: str = "stop") -> None:
        self.fingerprint = "scripted:answer"
        self.reply = reply
        self.finish_reason = finish_reason
        self.prompts: list[str] = []

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        self.prompts.append(messages[-1].content)
        return Generation(self.reply(messages[-1].content), 100, 20, 0.0, 0.0, self.finish_reason)


@pytest.fixture(scope="module")
def checks() -> Checks:
    from grounded.checks.train import train

    model = CrossEncoder(train(Recipe(), activate_model=False, log=lambda _: None).path)
    return Checks(EntailmentChecker(model), AnswerabilityGate(model))


@pytest.fixture(scope="module")
def kb(built_kb_path: Path) -> KnowledgeBase:
    return grounded.open(built_kb_path, create=False, answer={"checks": "model", "cache": False})


def engine(kb: KnowledgeBase, checks: Checks, draft: str, finish_reason: str = "stop") -> GroundingEngine:
    return GroundingEngine(kb.store, expert=Scripted(lambda _: draft, finish_reason), checks=checks)


def with_citation(kb: KnowledgeBase, checks: Checks) -> int:
    """The citation number of the ``with`` statement's passage for WITH_QUESTION."""
    answer = engine(kb, checks, "x").answer(WITH_QUESTION)
    return next(c.id for c in answer.citations if "__exit__" in c.text)


def test_the_checker_keeps_a_supported_sentence_and_drops_a_contradiction(kb: KnowledgeBase, checks: Checks) -> None:
    n = with_citation(kb, checks)
    draft = f"{EXIT_SENTENCE} [{n}] The with statement deletes every file on the disk when the block exits. [{n}]"
    answer = engine(kb, checks, draft).answer(WITH_QUESTION)
    assert not answer.abstained
    assert [s.text for s in answer.sentences if not s.quoted] == [EXIT_SENTENCE]
    findings = answer.trace["checks"]["sentences"]
    assert findings[0]["decision"] == "kept"
    assert findings[0]["support"] >= checks.checker.threshold  # type: ignore[union-attr]
    assert findings[1]["decision"] != "kept"
    assert findings[1]["support"] < checks.checker.threshold  # type: ignore[union-attr]
    assert answer.trace["checks"]["gate"]["answerable"] is True
    assert answer.trace["checks"]["mode"] == "model"


def test_fragments_are_never_kept(kb: KnowledgeBase, checks: Checks) -> None:
    n = with_citation(kb, checks)
    # One ends on a function word; the other is whole-looking but the writer ran out of tokens in it.
    draft = f"{EXIT_SENTENCE} [{n}] The __exit__() method is called when [{n}] It receives the exception type"
    answer = engine(kb, checks, draft, finish_reason="length").answer(WITH_QUESTION)
    decisions = [f["decision"] for f in answer.trace["checks"]["sentences"]]
    assert decisions[1:] == ["dropped: cut off", "dropped: cut off"]
    assert all("called when" not in s.text and not s.text.endswith("type") for s in answer.sentences)
    assert is_fragment("It receives the exception type", 2, 3, truncated=True)
    assert not is_fragment("It receives the exception type.", 2, 3, truncated=True)
    assert not is_fragment("It receives the exception type", 1, 3, truncated=True)


def test_the_gate_abstains_without_writing_when_the_sources_do_not_answer(kb: KnowledgeBase, checks: Checks) -> None:
    eng = engine(kb, checks, "Brazil won it. [1]")
    answer = eng.answer("Who won the 1998 FIFA World Cup final in France?")
    assert answer.abstained
    assert answer.trace["checks"]["gate"]["answerable"] is False
    assert answer.trace["checks"]["gate"]["probability"] < checks.gate.threshold  # type: ignore[union-attr]
    assert eng.expert.prompts == []  # type: ignore[attr-defined]


def test_answers_are_deterministic(kb: KnowledgeBase, checks: Checks) -> None:
    n = with_citation(kb, checks)
    draft = f"{EXIT_SENTENCE} [{n}] The with statement deletes every file on the disk. [{n}]"
    first = engine(kb, checks, draft).answer(WITH_QUESTION)
    again = engine(kb, checks, draft).answer(WITH_QUESTION)
    assert first.canonical_json() == again.canonical_json()
    assert first.trace["checks"] == again.trace["checks"]


def test_a_missing_model_falls_back_to_lexical_checks_and_says_so(
    built_kb_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROUNDED_MODEL_CACHE", str(tmp_path))
    kb = grounded.open(built_kb_path, create=False, answer={"checks": "auto", "cache": False})
    eng = GroundingEngine(kb.store, expert=Scripted(lambda _: "It does nothing. [1]"))
    answer = eng.answer("What does the pass statement do?")
    assert answer.trace["checks"]["mode"] == "lexical"
    assert "grounded tune checker" in answer.trace["checks"]["warning"]
    strict = grounded.open(built_kb_path, create=False, answer={"checks": "model"})
    with pytest.raises(grounded.errors.ConfigError, match="train"):
        GroundingEngine(strict.store, expert=Scripted(lambda _: "")).answer("What does the pass statement do?")


@pytest.mark.parametrize(
    ("turn", "route"),
    [
        ("thanks!", "not_fact_seeking"),
        ("Hello, how are you?", "not_fact_seeking"),
        ("the latin phrase parens patriae was used to refer to", "unstructured"),
        ("write a poem about the sea", "unstructured"),
        ("what can you tell me about the with statement", "unstructured"),
    ],
)
def test_only_clearly_conversational_turns_go_without_evidence(kb: KnowledgeBase, turn: str, route: str) -> None:
    assert Router(kb.embedder).route(turn).route == route


def test_an_ungrounded_reply_states_no_facts_and_is_marked(kb: KnowledgeBase, checks: Checks) -> None:
    eng = engine(kb, checks, "Paris is the capital of France.")
    answer = eng.answer("thanks!")
    assert (answer.grounded, answer.route, answer.citations) == (False, "not_fact_seeking", ())
    assert answer.text == CONVERSATIONAL_REPLY
    assert eng.expert.prompts == []  # type: ignore[attr-defined]
