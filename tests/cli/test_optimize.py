"""``grounded optimize`` end to end on a small knowledge base with the real answer model (SmolLM2-135M).

The spaces are small and the workload nine questions, so each search asks the model a few dozen
times at most. A configuration with ``answer.min_evidence_similarity = 0.99`` abstains on every
question without asking the model: much faster than any that answers, which makes the choice of
the ``latency`` objective certain (the other objectives' choices depend on this machine's speed).
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import grounded
from grounded.cli import app

pytestmark = pytest.mark.slow

QUESTIONS = [
    {"question": "How do I leave the innermost loop early?", "answer": "break terminates the nearest enclosing loop",
     "doc_ids": ["break.txt"]},
    {"question": "What does the pass statement do?", "answer": "pass is a null operation", "doc_ids": ["pass.txt"]},
    {"question": "What does the del statement do?", "answer": "deletion removes the binding of a name",
     "doc_ids": ["del.txt"]},
    {"question": "What value does a return statement leave the function call with?",
     "answer": "the expression list as return value", "doc_ids": ["return.txt"]},
    {"question": "What is raised when the expression of an assert statement is false?",
     "answer": "AssertionError", "doc_ids": ["assert.txt"]},
    {"question": "What do lambda expressions create?", "answer": "anonymous functions", "doc_ids": ["lambda.txt"]},
    {"question": "Who won the football world cup in 1998?", "answerable": False},
    {"question": "What is the boiling point of mercury?", "answerable": False},
    {"question": "How tall is the Eiffel Tower?", "answerable": False},
]  # fmt: skip
SPACE = ["--space", "answer.min_evidence_similarity=0.45,0.99", "--space", "answer.k=1,3"]
SHORT = {"GROUNDED_ANSWER__MAX_NEW_TOKENS": "32"}
"""Answers of at most 32 tokens (one sentence): the searches measure configurations, not prose."""


@pytest.fixture
def workdir(built_kb_path: Path, tmp_path: Path) -> Path:
    """A writable copy of the session's knowledge base (the journal goes into it) and the questions."""
    shutil.copytree(built_kb_path, tmp_path / "kb", ignore=shutil.ignore_patterns("*.lock"))
    lines = "".join(json.dumps(q) + "\n" for q in QUESTIONS)
    (tmp_path / "questions.jsonl").write_text(lines, encoding="utf-8")
    return tmp_path


def run(workdir: Path, *args: str) -> Any:
    base = ["optimize", "--kb", str(workdir / "kb"), "--questions", str(workdir / "questions.jsonl"), "--no-progress"]
    return CliRunner().invoke(app, [*base, *args], env={"COLUMNS": "200", "NO_COLOR": "1", **SHORT})


def test_optimize_reports_and_applies_the_choice_keeping_the_old_config(workdir: Path) -> None:
    config = workdir / "grounded.toml"
    config.write_text("[answer]\nmax_sentences = 2\n", encoding="utf-8")
    out = workdir / "report.json"
    result = run(workdir, *SPACE, "--objective", "latency", "--apply", "--config", str(config), "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["baseline"] == {"answer.k": 3, "answer.min_evidence_similarity": 0.45}
    # Abstaining without the model is the fastest (with k = 1 it also embeds fewer evidence sentences).
    assert report["chosen"]["answer.min_evidence_similarity"] == 0.99
    assert report["workload"] == {**report["workload"], "questions": 9, "search_questions": 6, "held_out_questions": 3}
    assert report["held_out"]["chosen"]["abstention"] == 1.0
    assert report["held_out"]["baseline"]["answer_rate"] > 0  # the model answers with the configured settings
    assert len(report["search"]) == 4
    assert report["complete"]
    printed = " ".join(result.output.split())
    assert "Pareto front" in printed
    assert "judged on 3 held-back questions" in printed
    written = tomllib.loads(config.read_text(encoding="utf-8"))["answer"]
    assert written == {"max_sentences": 2, **{k.split(".")[1]: v for k, (_, v) in report["changes"].items()}}
    assert written["min_evidence_similarity"] == 0.99
    assert (workdir / "grounded.toml.bak").read_text(encoding="utf-8") == "[answer]\nmax_sentences = 2\n"


def test_without_apply_nothing_is_written(workdir: Path) -> None:
    config = workdir / "grounded.toml"
    result = run(workdir, *SPACE, "--objective", "latency", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "not applied" in " ".join(result.output.split())
    assert not config.exists()


def test_the_choice_is_the_same_when_everything_is_measured_again(workdir: Path) -> None:
    # The quality objective chooses on the quality score, which greedy decoding makes the same on every run.
    space = ["--space", "answer.min_evidence_similarity=0.45,0.99", "--space", "answer.max_new_tokens=16,32"]
    reports = []
    for _ in range(2):
        out = workdir / "report.json"
        result = run(workdir, *space, "--objective", "quality", "--restart", "--json", str(out))
        assert result.exit_code == 0, result.output
        reports.append(json.loads(out.read_text(encoding="utf-8")))
    first, second = reports
    assert second["answers_replayed"] == 0
    assert second["answers_measured"] == first["answers_measured"]
    assert first["chosen"] == second["chosen"]
    quality = ("answer_rate", "abstention", "gold_cited", "recall", "score")
    for a, b in zip(first["search"], second["search"], strict=True):
        assert {m: a["metrics"][m] for m in quality} == {m: b["metrics"][m] for m in quality}


def test_an_interrupted_search_resumes_from_its_journal(built_kb_path: Path, tmp_path: Path) -> None:
    shutil.copytree(built_kb_path, tmp_path / "kb", ignore=shutil.ignore_patterns("*.lock"))
    # Every configuration abstains without the model: only the journal is under test here.
    kb = grounded.open(tmp_path / "kb", create=False, answer={"min_evidence_similarity": 0.99})
    space = {"answer.min_evidence_similarity": [0.98, 0.99], "answer.k": [1, 3]}
    calls = []

    def stop_after_five(done: int, total: int, eta: float) -> None:
        calls.append(done)
        if done == 5:
            raise KeyboardInterrupt

    from grounded.optimize import run_optimize

    with pytest.raises(KeyboardInterrupt):
        run_optimize(kb.store, questions=QUESTIONS, space=space, progress=stop_after_five)
    report = kb.optimize(QUESTIONS, space=space)
    assert report.data["answers_replayed"] == 5
    held = 3 if report.data["chosen_is_baseline"] else 6  # the baseline and the chosen one answer the held-back three
    assert report.data["answers_measured"] + 5 == 4 * 6 + held  # four configurations x six search questions
    assert report.data["complete"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "fast"], "objective must be one of quality, latency, balanced; got 'fast'"),
        (["--space", "answer.k=0,3"], "answer.k: Input should be greater than or equal to 1"),
        (["--space", "answer.colour=1"], "unknown setting 'answer.colour'"),
        (["--space", "answer.k"], "expected SETTING=V1,V2"),
        (["--min-abstention", "2"], "--min-abstention must be from 0 to 1"),
        (["--recorded"], "no recorded questions in"),
    ],
)
def test_invalid_input_is_refused_with_exit_code_2(workdir: Path, args: list[str], message: str) -> None:
    result = run(workdir, *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_generated_questions_come_from_passages_with_unanswerable_twins(built_kb_path: Path) -> None:
    from grounded.experts.registry import get_expert
    from grounded.optimize.workload import FOREIGN_WORDS, generate_questions

    kb = grounded.open(built_kb_path, create=False)
    made, stats = generate_questions(kb.store, get_expert("answer", kb.settings), 4)
    assert made == generate_questions(kb.store, get_expert("answer", kb.settings), 4)[0]  # greedy: the same again
    answerable = [q for q in made if q.answerable]
    assert answerable
    assert stats.answerable == len(answerable)
    documents = {str(d) for (d,) in kb.snapshot().store.cursor().execute("SELECT doc_id FROM documents").fetchall()}
    for q in answerable:
        assert q.question.endswith("?")
        assert q.answer
        assert set(q.doc_ids) <= documents
    texts = " ".join(str(t) for (t,) in kb.snapshot().store.cursor().execute("SELECT text FROM chunks").fetchall())
    for q in made:
        if not q.answerable:  # a twin names something no passage mentions
            foreign = {w.strip("?,.").lower() for w in q.question.split()} & set(FOREIGN_WORDS)
            assert foreign
            assert not any(w in texts.lower() for w in foreign)
