"""``server.record_questions``: a sample of the ``/v1/query`` questions, the workload of ``grounded optimize --recorded``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import grounded
from grounded.api.app import create_app
from grounded.ops.recording import record_question, recorded_path
from grounded.optimize.workload import read_questions
from tests.api.serving import serving
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)


@pytest.fixture
def recording_server(built_kb_path: Path, tmp_path: Path, fake_backend: str) -> Iterator[tuple[str, Path]]:  # noqa: F811
    shutil.copytree(built_kb_path, tmp_path / "kb", ignore=shutil.ignore_patterns("*.lock"))
    kb = grounded.open(
        tmp_path / "kb",
        create=False,
        experts={"answer": {"backend": fake_backend, "model": "echo"}},
        server={"record_questions": 1.0},
    )
    with serving(create_app(kb)) as url:
        yield url, tmp_path / "kb"


def test_the_server_records_each_distinct_question_once_for_optimize(recording_server: tuple[str, Path]) -> None:
    url, kb_path = recording_server
    for question in ("What does the pass statement do?", "What does  the pass statement do?", "How do loops end?"):
        response = httpx.post(f"{url}/v1/query", json={"query": question}, timeout=60)
        assert response.status_code == 200, response.text
    lines = recorded_path(kb_path).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"question": "What does the pass statement do?"},
        {"question": "How do loops end?"},
    ]
    assert [q.question for q in read_questions(recorded_path(kb_path))] == [
        "What does the pass statement do?",
        "How do loops end?",
    ]


def test_nothing_is_recorded_when_the_share_is_zero(tmp_path: Path) -> None:
    assert not record_question(tmp_path, "What does the pass statement do?", 0.0)
    assert not recorded_path(tmp_path).exists()


def test_the_sample_is_chosen_by_the_question_the_same_every_time(tmp_path: Path) -> None:
    questions = [f"question number {i}?" for i in range(200)]
    first = [record_question(tmp_path / "a", q, 0.25) for q in questions]
    second = [record_question(tmp_path / "b", q, 0.25) for q in questions]
    assert first == second
    assert 25 <= sum(first) <= 75
