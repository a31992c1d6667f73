"""The trained checks in the answer path (grounded.answering.trust), with the real model.

The model is the default checks recipe (synthetic pairs from the demo corpus), trained once per
machine into the model cache and found again by its fingerprint (as in tests/grounded/checks);
the writer is scripted, so each test decides exactly which draft the checks judge.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import grounded
from grounded.answering.engine import CONVERSATIONAL_REPLY, GroundingEngine
from grounded.answering.evidence import build_pool
from grounded.answering.trust import Checks, SentenceFinding, answer_candidates, is_fragment, verify_checked
from grounded.answering.types import AnswerSentence, Citation
from grounded.checks import AnswerabilityGate, CrossEncoder, EntailmentChecker, Recipe
from grounded.experts.base import Generation, Message
from grounded.grounding.router import Router
from grounded.kb import KnowledgeBase

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

WITH_QUESTION = "What does the with statement call when the block exits?"
EXIT_SENTENCE = "The context manager's __exit__() method is invoked."
CONTRADICTION = "The context manager's __exit__() method is never invoked."


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


def judge(
    kb: KnowledgeBase, checks: Checks, draft: list[str], *, truncated: bool = False
) -> tuple[list[AnswerSentence], list[SentenceFinding]]:
    """The checked verifier on ``draft`` (each sentence citing the with statement's passage), for
    WITH_QUESTION and its real retrieved evidence; relevance off, so only support is judged."""
    hits = kb.store.view().search(WITH_QUESTION, 3)
    citations = [Citation.from_hit(i, hit, None) for i, hit in enumerate(hits, 1)]
    cited = next(c.id for c in citations if "__exit__" in c.text)
    pool = build_pool(WITH_QUESTION, citations, kb.embedder)
    settings = kb.settings.answer.model_copy(update={"relevance": "off"})
    parsed = [(text, (cited,)) for text in draft]
    return verify_checked(WITH_QUESTION, parsed, pool, kb.embedder, settings, checks, truncated=truncated)


def test_the_checker_keeps_a_supported_sentence_and_drops_a_contradiction(kb: KnowledgeBase, checks: Checks) -> None:
    assert checks.checker is not None
    kept, findings = judge(kb, checks, [EXIT_SENTENCE, CONTRADICTION])
    assert [s.text for s in kept if not s.quoted] == [EXIT_SENTENCE]
    assert findings[0].decision == "kept"
    assert findings[0].support is not None
    assert findings[0].support >= checks.checker.threshold
    assert findings[0].relevance is not None  # scored for --explain whatever the policy
    assert findings[1].decision != "kept"
    # The contradiction shares its words with the source: the model, not the lexical pre-filter, rejects it.
    assert findings[1].word_support >= 0.5
    assert findings[1].support is not None
    assert findings[1].support < checks.checker.threshold


def test_fragments_are_never_kept(kb: KnowledgeBase, checks: Checks) -> None:
    # One ends on a function word; the last is whole-looking but the writer ran out of tokens in it.
    draft = [EXIT_SENTENCE, "The __exit__() method is called when", "It receives the exception type"]
    kept, findings = judge(kb, checks, draft, truncated=True)
    assert [f.decision for f in findings[1:]] == ["dropped: cut off", "dropped: cut off"]
    assert all("called when" not in s.text and not s.text.endswith("type") for s in kept)
    assert is_fragment("It receives the exception type", 2, 3, truncated=True)
    assert not is_fragment("It receives the exception type.", 2, 3, truncated=True)
    assert not is_fragment("It receives the exception type", 1, 3, truncated=True)


@pytest.mark.xfail(
    reason="the default recipe's model (pseudo-questions only) scores the answering sentence 0.148 and the one "
    "beside the question 0.364 (c59f0e75, 2026-11-30); its gate is usable through the question's lexical features, "
    "its judgement of one sentence is not",
    strict=False,
)
def test_the_default_model_tells_an_answering_sentence_from_a_non_answer(checks: Checks) -> None:
    assert checks.gate is not None
    on_topic, off_topic = (
        checks.gate.relevance(WITH_QUESTION, s)
        for s in (EXIT_SENTENCE, "The with statement is used to wrap the execution of a block.")
    )
    assert on_topic > off_topic


@pytest.mark.parametrize(
    "question",
    [
        "Who won the 1998 FIFA World Cup final?",
        "What is the capital of Australia?",
        "Who wrote the novel Pride and Prejudice?",
        "How do I install numpy with pip?",
    ],
)
def test_questions_the_corpus_cannot_answer_are_refused_without_writing(
    kb: KnowledgeBase, checks: Checks, question: str
) -> None:
    eng = engine(kb, checks, "It is Canberra. [1]")
    answer = eng.answer(question)
    assert answer.abstained
    assert answer.trace["checks"]["gate"]["answerable"] is False
    assert eng.expert.prompts == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "question",
    [
        WITH_QUESTION,
        "What does the pass statement do?",
        pytest.param(
            "How do I leave the innermost loop early?",
            marks=pytest.mark.xfail(
                reason="a paraphrase: 'leave', 'innermost', 'early' are not in the break passage (word share 0.25), "
                "and the default gate refuses it",
                strict=False,
            ),
        ),
    ],
)
def test_questions_the_corpus_answers_pass_the_gate(kb: KnowledgeBase, checks: Checks, question: str) -> None:
    answer = engine(kb, checks, "").answer(question)
    assert answer.trace["checks"]["gate"]["answerable"] is True


def test_headings_and_code_copied_from_the_evidence_are_never_kept(kb: KnowledgeBase, checks: Checks) -> None:
    kept, findings = judge(kb, checks, ["Lambdas ******* def <lambda>(parameters):"])
    assert findings[0].decision.startswith("dropped: not a sentence")
    assert all("*" not in s.text and "def <lambda>" not in s.text for s in kept)


def test_when_no_drafted_sentence_answers_the_best_evidence_sentence_is_quoted(
    kb: KnowledgeBase, checks: Checks
) -> None:
    from grounded.answering.trust import FALLBACK

    assert checks.checker is not None
    assert checks.gate is not None
    # The mechanism, with any answering sentence accepted (relevance threshold 0): the default model's own
    # judgement of one sentence is weak (see the xfail above), the full recipe's is what serves.
    lenient = Checks(checks.checker, AnswerabilityGate(checks.checker.model, relevance_threshold=0.0))
    # A draft that states nothing (so no quote replaces it sentence by sentence).
    answer = engine(kb, lenient, "I am sorry, I cannot find that. [1]").answer(WITH_QUESTION)
    decisions = [f["decision"] for f in answer.trace["checks"]["sentences"]]
    assert decisions[0] == "dropped: states no fact"
    assert decisions[-1] == FALLBACK
    assert not answer.abstained
    assert len(answer.sentences) == 1
    quote = answer.sentences[0]
    assert quote.quoted
    assert quote.text in " ".join(answer.citations[quote.citations[0] - 1].text.split())


def decided(checks: Checks, threshold: float, floor: float = 0.0) -> Checks:
    """``checks`` with an answer decision of known weights (the evidence similarity decides) at ``threshold``,
    the least relevance of an answer at ``floor``, and a relevance threshold no one sentence reaches: what a
    full-recipe calibration (v7; v6 had no floor) gives the gate."""
    from grounded.checks.lexical import Combination

    assert checks.checker is not None
    gate = AnswerabilityGate(checks.checker.model, relevance_threshold=1.01)
    gate.decision = Combination((0.0, 0.0, 10.0), -5.0)
    gate.decision_threshold = threshold
    gate.decision_floor = floor
    return Checks(checks.checker, gate)


def test_the_sentence_that_answers_leads_and_a_floor_no_sentence_reaches_is_no_answer(
    kb: KnowledgeBase, checks: Checks
) -> None:
    from grounded.answering.trust import FALLBACK

    hits = kb.store.view().search(WITH_QUESTION, 3)
    citations = [Citation.from_hit(i, hit, None) for i, hit in enumerate(hits, 1)]
    cited = next(c.id for c in citations if "__exit__" in c.text)
    pool = build_pool(WITH_QUESTION, citations, kb.embedder)
    settings = kb.settings.answer.model_copy(update={"relevance": "answer"})
    draft = [(EXIT_SENTENCE, (cited,))]
    # No drafted sentence addresses the question (relevance threshold 1.01): the best answering quote comes
    # first, what the writer drafted beside the question after it.
    lenient = decided(checks, 0.0)
    kept, findings = verify_checked(WITH_QUESTION, draft, pool, kb.embedder, settings, lenient)
    assert findings[-1].decision == FALLBACK
    assert kept[0].quoted
    # The quote is the candidate the decision weighs highest: here (weight 0 on relevance, 10 on similarity)
    # the one closest to the question, whatever the model's relevance of the others.
    assert lenient.gate is not None
    first, _ = answer_candidates(WITH_QUESTION, pool, lenient.gate)[0]
    assert kept[0].text == pool.sentence(first)
    assert not kept[-1].quoted
    assert kept[-1].text == EXIT_SENTENCE
    # A floor no sentence reaches: neither the drafted sentence nor a quote is an answer.
    kept, findings = verify_checked(WITH_QUESTION, draft, pool, kb.embedder, settings, decided(checks, 0.0, 1.01))
    assert kept == []
    assert findings[0].decision == "dropped: no kept sentence addresses the question"
    # And the decision itself refuses before writing.
    eng = engine(kb, decided(checks, 0.0, 1.01), "The context manager's __exit__() method is invoked. [1]")
    answer = eng.answer(WITH_QUESTION)
    assert answer.abstained
    assert answer.trace["checks"]["gate"]["answerable"] is False
    assert eng.expert.prompts == []  # type: ignore[attr-defined]


def test_a_question_the_answer_decision_lets_through_is_answered_by_its_best_sentence(
    kb: KnowledgeBase, checks: Checks
) -> None:
    from grounded.answering.trust import FALLBACK

    eng = engine(kb, decided(checks, 0.0), "I am sorry, I cannot find that. [1]")
    answer = eng.answer(WITH_QUESTION)
    gate = answer.trace["checks"]["gate"]
    assert gate["answerable"] is True
    assert {"window", "relevance", "similarity"} <= set(gate)
    assert gate["relevance"] < 1.01  # below the relevance threshold: without the decision, an abstention
    assert gate["probability"] == pytest.approx(1 / (1 + math.exp(-(10 * gate["similarity"] - 5))), abs=1e-5)
    assert not answer.abstained
    assert answer.trace["checks"]["sentences"][-1]["decision"] == FALLBACK
    assert answer.sentences[-1].quoted


def test_a_writer_that_declines_is_overruled_by_the_answer_decision(kb: KnowledgeBase, checks: Checks) -> None:
    from grounded.answering.trust import FALLBACK
    from grounded.answering.writer import ABSTAIN_TEXT

    assert not engine(kb, checks, ABSTAIN_TEXT).answer(WITH_QUESTION).sentences  # no decision: the decline stands
    answer = engine(kb, decided(checks, 0.0), ABSTAIN_TEXT).answer(WITH_QUESTION)
    assert not answer.abstained
    assert [f["decision"] for f in answer.trace["checks"]["sentences"]] == [FALLBACK]
    assert answer.sentences[0].quoted


def test_the_answer_decision_abstains_without_writing(kb: KnowledgeBase, checks: Checks) -> None:
    eng = engine(kb, decided(checks, 1.01), "The context manager's __exit__() method is invoked. [1]")
    answer = eng.answer(WITH_QUESTION)
    assert answer.abstained
    assert answer.trace["checks"]["gate"]["answerable"] is False
    assert eng.expert.prompts == []  # type: ignore[attr-defined]


def test_the_gate_abstains_without_writing_when_it_says_so(kb: KnowledgeBase, checks: Checks) -> None:
    assert checks.checker is not None
    # The real model with a gate threshold no question reaches: the engine must not write at all.
    strict = Checks(checks.checker, AnswerabilityGate(checks.checker.model, threshold=1.01))
    eng = engine(kb, strict, "Brazil won it. [1]")
    answer = eng.answer("Who won the 1998 FIFA World Cup final in France?")
    assert answer.abstained
    gate = answer.trace["checks"]["gate"]
    assert gate["answerable"] is False
    assert 0.0 < gate["probability"] < 1.01
    assert eng.expert.prompts == []  # type: ignore[attr-defined]


def test_sentences_that_do_not_address_the_question_are_no_answer(kb: KnowledgeBase, checks: Checks) -> None:
    assert checks.checker is not None
    # relevance = answer with a threshold no sentence reaches: supported sentences alone are not an answer.
    strict = Checks(checks.checker, AnswerabilityGate(checks.checker.model, relevance_threshold=1.01))
    hits = kb.store.view().search(WITH_QUESTION, 3)
    citations = [Citation.from_hit(i, hit, None) for i, hit in enumerate(hits, 1)]
    cited = next(c.id for c in citations if "__exit__" in c.text)
    pool = build_pool(WITH_QUESTION, citations, kb.embedder)
    settings = kb.settings.answer.model_copy(update={"relevance": "answer"})
    kept, findings = verify_checked(WITH_QUESTION, [(EXIT_SENTENCE, (cited,))], pool, kb.embedder, settings, strict)
    assert kept == []
    assert findings[0].decision == "dropped: no kept sentence addresses the question"
    assert findings[0].relevance is not None


def test_checked_answers_are_deterministic(kb: KnowledgeBase, checks: Checks) -> None:
    first = judge(kb, checks, [EXIT_SENTENCE, CONTRADICTION])
    assert judge(kb, checks, [EXIT_SENTENCE, CONTRADICTION]) == first
    draft = f"{EXIT_SENTENCE} [1] {CONTRADICTION} [1]"
    one, two = (engine(kb, checks, draft).answer(WITH_QUESTION) for _ in range(2))
    assert one.canonical_json() == two.canonical_json()
    assert one.trace["checks"] == two.trace["checks"]


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
