"""Follow-up questions: the cue check, the rewriters, answerability, and kb.ask with a history."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

import grounded
from grounded.answering.answerability import decide
from grounded.answering.conversation import (
    Turn,
    as_turns,
    needs_rewrite,
    rewrite_question,
    split_messages,
    unresolved_reference,
)
from grounded.answering.types import AnswerSentence, Citation
from grounded.errors import InvalidRequest
from grounded.experts.base import Generation, Message
from grounded.kb import KnowledgeBase
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

HISTORY = [Turn("user", "What does the with statement do?"), Turn("assistant", "It wraps a block. [1]")]


@pytest.fixture(scope="module")
def fake_kb(built_kb_path: Path, fake_backend: str) -> KnowledgeBase:  # noqa: F811
    return grounded.open(built_kb_path, create=False, experts={"answer": {"backend": fake_backend, "model": "echo"}})


@pytest.mark.parametrize(
    ("question", "cue"),
    [
        ("Who founded it?", "reference 'it'"),
        ("And in 2019?", "elliptic opening 'and'"),
        ("What about the break statement?", "elliptic opening 'what about'"),
        ("Why?", "short question"),
        ("What is the meaning of lambda?", None),
        ("How does the assert statement report a failure?", None),
    ],
)
def test_cue_check(question: str, cue: str | None) -> None:
    assert needs_rewrite(question, HISTORY) == cue
    assert needs_rewrite(question, []) is None  # nothing earlier to lean on


def test_rule_rewrite_carries_the_topic_and_leaves_standalone_questions_alone() -> None:
    rewrite = rewrite_question("Which methods does it call?", HISTORY)
    assert rewrite.method == "rules"
    assert rewrite.text == "Which methods does it call? (about: What does the with statement do)"
    alone = rewrite_question("What is the meaning of lambda?", HISTORY)
    assert (alone.text, alone.method, alone.reason) == ("What is the meaning of lambda?", "none", "no follow-up cue")
    assert rewrite_question("Who founded it?", HISTORY, mode="off").text == "Who founded it?"


class _Writer:
    """A deterministic stand-in for the answer expert, to test what happens to its rewrite."""

    fingerprint = "scripted"

    def __init__(self, text: str) -> None:
        self.text = text

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        return Generation(self.text, prompt_tokens=1, completion_tokens=1, prefill_s=0.0, decode_s=0.0)


def test_expert_rewrite_is_kept_only_when_it_keeps_the_question_words() -> None:
    good = rewrite_question(
        "Which methods does it call?",
        HISTORY,
        mode="expert",
        expert=_Writer("Which methods does the with statement call?"),
    )
    assert (good.text, good.method) == ("Which methods does the with statement call?", "expert")
    bad = rewrite_question(
        "Which methods does it call?", HISTORY, mode="expert", expert=_Writer("Tell me about loops.")
    )
    assert bad.method == "rules"
    assert "rejected" in bad.reason


def test_split_messages_takes_the_last_user_turn() -> None:
    question, history = split_messages(
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "What does with do?"},
            {"role": "assistant", "content": "It wraps a block."},
            {"role": "user", "content": [{"type": "text", "text": "And break?"}]},
        ]
    )
    assert question == "And break?"
    assert history == [Turn("user", "What does with do?"), Turn("assistant", "It wraps a block.")]
    with pytest.raises(InvalidRequest, match="user message"):
        split_messages([{"role": "assistant", "content": "hi"}])
    assert as_turns([("user", "a  b"), {"role": "assistant", "content": "c"}]) == [
        Turn("user", "a b"),
        Turn("assistant", "c"),
    ]
    with pytest.raises(InvalidRequest, match="role"):
        as_turns([("robot", "x")])


def test_unresolved_reference() -> None:
    assert unresolved_reference("What services does this library provide?", []) == "library"
    named = [Turn("user", "Tell me about the California State Library")]
    assert unresolved_reference("What services does this library provide?", named) is None
    assert unresolved_reference("What happened this year?", []) is None  # time words refer to nothing
    assert unresolved_reference("What does the pass statement do?", []) is None


def _citation(cid: int, text: str) -> Citation:
    return Citation(cid, cid, f"d{cid}", "", "", 0, len(text), text, "s", None, 1.0)


def test_answerability_decisions() -> None:
    sentence = (AnswerSentence("Revenue was 5 million in 2019.", (1,)),)
    evidence = (_citation(1, "Acme revenue was 5 million in 2019."),)
    kwargs = {"unresolved": None, "sentences": sentence, "citations": evidence}
    assert decide("What was Acme revenue in 2019?", abstained=False, **kwargs).label == "answerable"  # type: ignore[arg-type]
    partial = decide("What was Acme revenue in 2019 and 2020?", abstained=False, **kwargs)  # type: ignore[arg-type]
    assert (partial.label, partial.missing) == ("partial", ("2020",))
    assert decide("x", abstained=True, unresolved=None, sentences=(), citations=()).label == "unanswerable"
    assert decide("x", abstained=True, unresolved="case", sentences=(), citations=()).label == "underspecified"
    assert decide("x", abstained=True, unresolved=None, sentences=(), citations=(), gate="partial").label == "partial"


def test_three_turn_conversation_through_kb_ask(fake_kb: KnowledgeBase) -> None:
    turns = ("What does the assert statement do?", "When is it ignored?", "What exception does it raise?")
    history: list[tuple[str, str]] = []
    answers = []
    for question in turns:
        answer = fake_kb.ask(question, history=history)
        answers.append(answer)
        history += [("user", answer.question), ("assistant", answer.text)]
        assert answer.citations[0].title == "assert"
        assert answer.answerability == "answerable"
        # Asked alone, the follow-ups find other passages: the rewrite is what finds the right one.
        if answer.rewrite is not None:
            assert fake_kb.search(question, k=1)[0].title != "assert"
    assert answers[0].rewrite is None
    assert answers[1].rewrite == "When is it ignored? (about: What does the assert statement do)"
    assert answers[1].trace["rewrite"]["method"] == "rules"
    assert answers[2].rewrite == (
        "What exception does it raise? (about: When is it ignored; What does the assert statement do)"
    )


def test_cache_keys_on_the_conversation(fake_kb: KnowledgeBase) -> None:
    question = "When is it ignored?"
    about_assert = [("user", "What does the assert statement do?"), ("assistant", "It tests a condition.")]
    about_pass = [("user", "What does the pass statement do?"), ("assistant", "Nothing.")]
    one = fake_kb.ask(question, history=about_assert)
    again = fake_kb.ask(question, history=about_assert)
    other = fake_kb.ask(question, history=about_pass)
    assert again.cached
    assert again.canonical_json() == one.canonical_json()
    assert not other.cached
    assert other.rewrite != one.rewrite
    assert fake_kb.ask(question).rewrite is None  # no history: asked as is, its own cache entry


def test_underspecified_question_gets_one_clarifying_question(fake_kb: KnowledgeBase) -> None:
    answer = fake_kb.ask("What does this keyword do?", use_cache=False)
    assert answer.answerability == "underspecified"
    assert answer.text == "Which keyword are you referring to?"
    assert not answer.grounded
    named = fake_kb.ask(
        "What does this keyword do?", history=[("user", "Tell me about the pass keyword")], use_cache=False
    )
    assert named.answerability != "underspecified"
