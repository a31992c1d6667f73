"""The answer writer's prompt and the parsing of what the model wrote."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from grounded.answering.types import Answer, AnswerSentence, Citation, Evidence
from grounded.answering.writer import ABSTAIN_TEXT, build_messages, is_abstention, parse_sentences


def _citation(cid: int, text: str, title: str = "Doc") -> Citation:
    return Citation(cid, 100 + cid, f"doc{cid}", title, f"file:///d{cid}.txt", 10, 10 + len(text), text, "src",
                    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), 0.5)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mount Logan is in Yukon [1].", [("Mount Logan is in Yukon.", (1,))]),
        ("It is high. [2] It is cold [1][3].", [("It is high.", (2,)), ("It is cold.", (1, 3))]),
        ("Both say so [1, 2]. Nothing cited here.", [("Both say so.", (1, 2)), ("Nothing cited here.", ())]),
        ("Out of range [7]. Kept [2].", [("Out of range.", ()), ("Kept.", (2,))]),
        ("First line [1]\nSecond line [2]", [("First line", (1,)), ("Second line", (2,))]),
        ("[1]", []),
        ("", []),
    ],
)
def test_parse_sentences_maps_markers_to_sentences(text: str, expected: list[tuple[str, tuple[int, ...]]]) -> None:
    assert parse_sentences(text, [1, 2, 3]) == expected


def test_prompt_numbers_passages_and_shows_only_picked_sentences() -> None:
    text = "Alpha is first. Beta is second. Gamma is third."
    evidence = [Evidence(_citation(1, text, "Greek"), ((0, 15), (32, 47))), Evidence(_citation(2, "Other."), ((0, 6),))]
    system, user = build_messages("what is gamma?", evidence)
    assert system.role == "system"
    assert "[1]" in system.content
    assert ABSTAIN_TEXT in system.content
    assert user.content.splitlines()[1] == "[1] Greek: Alpha is first. Gamma is third."
    assert user.content.splitlines()[2] == "[2] Doc: Other."
    assert user.content.endswith("Question: what is gamma?")


@pytest.mark.parametrize(
    ("text", "abstains"),
    [(ABSTAIN_TEXT, True), ("the sources do not contain this", True), ("The passage does not contain it.", True),
     ("Logan is in Yukon [1].", False)],
)  # fmt: skip
def test_is_abstention(text: str, abstains: bool) -> None:
    assert is_abstention(text) is abstains


def test_answer_round_trips_through_canonical_json() -> None:
    answer = Answer(
        question="q?",
        text="A [1]",
        sentences=(AnswerSentence("A", (1,), quoted=True, support=0.5),),
        citations=(_citation(1, "A."),),
        abstained=False,
        index_version="000001",
        model="m",
        timings={"total_ms": 1.0},
    )
    data = json.loads(answer.canonical_json())
    assert "timings" not in data
    assert "cached" not in data
    assert data["citations"][0]["synced_at"] == "2026-01-02T03:04:05+00:00"
    again = Answer.from_dict(json.loads(json.dumps(answer.to_dict())))
    assert again == answer
    assert again.canonical_json() == answer.canonical_json()
    assert answer.cited() == answer.citations
    assert "<sup>[1]</sup>" in answer._repr_html_()
