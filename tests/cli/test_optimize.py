"""``grounded optimize`` end to end on a small knowledge base with the real answer model (SmolLM2-135M).

The space is small and the workload nine questions, so a search asks the model a few dozen
times at most. A configuration with ``answer.min_evidence_similarity = 0.99`` abstains on every
question without asking the model: much faster than any that answers, which makes the choice of
the ``latency`` objective certain (the other objectives' choices depend on this machine's speed).

The model's answers are the expensive part, so one search (the module's ``searched`` fixture,
with ``--apply``) measures them once: its report and applied file are checked by one test, a
second run on its journal (which replays every answer) by the ``--apply``-less test, and the
determinism test measures the same configurations again with ``--restart`` and compares.
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


def copy_workdir(built_kb_path: Path, tmp_path: Path) -> Path:
    """A writable copy of the session's knowledge base (the journal goes into it) and the questions."""
    shutil.copytree(built_kb_path, tmp_path / "kb", ignore=shutil.ignore_patterns("*.lock"))
    lines = "".join(json.dumps(q) + "\n" for q in QUESTIONS)
    (tmp_path / "questions.jsonl").write_text(lines, encoding="utf-8")
    return tmp_path


@pytest.fixture
def workdir(built_kb_path: Path, tmp_path: Path) -> Path:
    return copy_workdir(built_kb_path, tmp_path)


def run(workdir: Path, *args: str) -> Any:
    base = ["optimize", "--kb", str(workdir / "kb"), "--questions", str(workdir / "questions.jsonl"), "--no-progress"]
    return CliRunner().invoke(app, [*base, *args], env={"COLUMNS": "200", "NO_COLOR": "1", **SHORT})


OLD_CONFIG = "[answer]\nmax_sentences = 2\n"


@pytest.fixture(scope="module")
def searched(built_kb_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """(work folder, CLI result) of one ``latency`` search of SPACE with ``--apply`` and ``--json``.

    Later tests run again on its journal, so the work folder is this module's own: every
    configuration's answers to the search questions are in ``kb/optimize/``.
    """
    workdir = copy_workdir(built_kb_path, tmp_path_factory.mktemp("optimize"))
    config = workdir / "grounded.toml"
    config.write_text(OLD_CONFIG, encoding="utf-8")
    out = workdir / "report.json"
    result = run(workdir, *SPACE, "--objective", "latency", "--apply", "--config", str(config), "--json", str(out))
    assert result.exit_code == 0, result.output
    return workdir, result


def test_optimize_reports_and_applies_the_choice_keeping_the_old_config(searched: tuple[Path, Any]) -> None:
    workdir, result = searched
    config = workdir / "grounded.toml"
    report = json.loads((workdir / "report.json").read_text(encoding="utf-8"))
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
    assert (workdir / "grounded.toml.bak").read_text(encoding="utf-8") == OLD_CONFIG


def test_without_apply_nothing_is_written_and_the_journal_is_replayed(searched: tuple[Path, Any]) -> None:
    workdir, _ = searched
    config, out = workdir / "unapplied.toml", workdir / "replayed.json"
    result = run(workdir, *SPACE, "--objective", "latency", "--config", str(config), "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "not applied" in " ".join(result.output.split())
    assert not config.exists()
    # The same inputs again: every answer comes from the journal, so the report is the same.
    report, first = (json.loads(p.read_text(encoding="utf-8")) for p in (out, workdir / "report.json"))
    assert report["answers_measured"] == 0
    assert report["answers_replayed"] == first["answers_replayed"] + first["answers_measured"]
    assert (report["chosen"], report["search"]) == (first["chosen"], first["search"])


def test_the_choice_is_the_same_when_everything_is_measured_again(searched: tuple[Path, Any]) -> None:
    # The quality objective chooses on the quality score, which greedy decoding makes the same on every run:
    # first on the answers the fixture's search measured (replayed), then on all of them measured again.
    workdir, _ = searched
    reports: list[dict[str, Any]] = []
    for restart in ([], ["--restart"]):
        out = workdir / f"quality{len(reports)}.json"
        result = run(workdir, *SPACE, "--objective", "quality", *restart, "--json", str(out))
        assert result.exit_code == 0, result.output
        reports.append(json.loads(out.read_text(encoding="utf-8")))
    first, second = reports
    assert first["answers_replayed"] >= 4 * 6  # four configurations x six search questions, from the journal
    assert second["answers_replayed"] == 0
    held = 3 if second["chosen_is_baseline"] else 6  # the baseline and the chosen one answer the held-back three
    assert second["answers_measured"] == 4 * 6 + held
    assert first["chosen"] == second["chosen"]
    quality = ("answer_rate", "abstention", "gold_cited", "recall", "score")
    for a, b in zip(first["search"], second["search"], strict=True):
        assert {m: a["metrics"][m] for m in quality} == {m: b["metrics"][m] for m in quality}
    held_a, held_b = first["held_out"]["chosen"], second["held_out"]["chosen"]
    assert {m: held_a[m] for m in quality} == {m: held_b[m] for m in quality}


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
