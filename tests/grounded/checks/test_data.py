"""Pair builders on handmade folders of the ClapNQ / MT-RAG layout, and on the demo corpus."""

from __future__ import annotations

import json
from pathlib import Path

from grounded.checks.data import Passage, balance, neighbours, pseudo_question, rng_for, split_of, synthetic_pairs
from grounded.checks.recipe import Recipe, build_pairs
from grounded.checks.sources import (
    clapnq_pairs,
    clapnq_sentence_pairs,
    faithfulness_test_document_ids,
    human_halves,
    human_responses,
    mtrag_pairs,
    mtrag_responses,
    pydoc_passages,
)

PASSAGES = [
    Passage(
        "a",
        "Belgian Revolution",
        "The Belgian Revolution broke out on 25 August 1830 in Brussels. "
        "King William I sent a large army to Brussels. The rebels won and Belgium became independent in 1831.",
    ),
    Passage(
        "b",
        "Leopold I",
        "Leopold I became the first King of the Belgians in 1831. He was born in Coburg in "
        "1790. He reigned until his death in 1865 and was followed by Leopold II.",
    ),
    Passage(
        "c",
        "Python with",
        "The with statement calls __enter__ before the block runs. It calls __exit__ "
        "when the block exits, even after an exception. The context manager may suppress the exception.",
    ),
]


def test_synthetic_pairs_are_labelled_seeded_and_grouped() -> None:
    pairs = list(synthetic_pairs(PASSAGES, source="hand", negatives=3))
    again = list(synthetic_pairs(PASSAGES, source="hand", negatives=3))
    assert pairs == again
    counts = balance(pairs)
    assert any(k.startswith("support/1/original") for k in counts)
    assert sum(v for k, v in counts.items() if k.startswith("support/0/")) >= 3
    assert {p.group for p in pairs} <= {"a", "b", "c"}
    for p in pairs:
        if p.task == "support" and p.kind == "original":
            assert p.label == 1
            assert p.text in p.evidence
        if p.kind in {"negation", "number", "antonym", "entity", "roles"}:
            assert p.label == 0
    assert list(synthetic_pairs(PASSAGES, source="hand", seed=1)) != pairs


def test_neighbours_and_pseudo_questions() -> None:
    assert neighbours(PASSAGES)[0] == 1  # both about Belgium in 1831
    made = pseudo_question("Leopold I became the first King of the Belgians in 1831.", rng_for("q"))
    assert made is not None
    question, answer = made
    assert answer not in question
    assert question.endswith("?")


def test_split_is_stable_and_shared_by_a_group() -> None:
    splits = [split_of(f"g{i}") for i in range(2000)]
    assert splits == [split_of(f"g{i}") for i in range(2000)]
    assert 0.11 < splits.count("test") / 2000 < 0.19
    assert 0.11 < splits.count("dev") / 2000 < 0.19


def test_demo_corpus_passages_and_default_recipe() -> None:
    passages = pydoc_passages()
    assert len(passages) > 300
    assert all(p.text for p in passages)
    pairs = build_pairs(Recipe())
    assert len(pairs.train) > 1500
    assert pairs.dev
    assert pairs.test
    assert pairs.dev_responses
    assert {p.group for p in pairs.train}.isdisjoint({p.group for p in pairs.test})
    assert pairs.digest() == build_pairs(Recipe()).digest()
    # Off-topic questions (asked of a passage far away in the corpus) are unanswerable cases and pairs.
    assert {"pseudo_question", "neighbour_passage", "off_topic"} <= {c.kind for c in pairs.dev_cases}
    assert any(p.kind == "off_topic" and p.label == 0 for p in pairs.train)
    # Unfaithful dev responses include answers with a paragraph of related knowledge added.
    added = [r for r in pairs.dev_responses if r.kind == "knowledge_added"]
    assert added
    assert all(r.faithful == 0 for r in added)


def test_the_calibration_data_does_not_decide_the_weights() -> None:
    # Responses and questions only choose thresholds: changing them keeps the model's fingerprint
    # (its weights are found again) and changes the calibration digest (the thresholds are chosen again).
    pairs = build_pairs(Recipe())
    digest, calibration = pairs.digest(), pairs.calibration_digest()
    pairs.dev_responses.pop()
    pairs.dev_cases.pop()
    assert pairs.digest() == digest
    assert pairs.calibration_digest() != calibration


def _write_clapnq(root: Path) -> None:
    folder = root / "clapnq"
    folder.mkdir(parents=True)
    sentences = ["The Belgian Revolution broke out on 25 August 1830 .", "It began in Brussels after an opera ."]
    # Enough text for two 75-word windows: the gate learns the one holding the answer against the other.
    more = " ".join(
        f"In the year that followed , the provisional government of the revolution met {n} times in the city ."
        for n in ("four", "five", "six", "seven", "eight", "nine")
    )
    answerable = {
        "id": "1",
        "input": "when did the belgian revolution start",
        "passages": [
            {
                "title": "Belgian Revolution",
                "text": " ".join(sentences) + " King William I sent troops . " + more,
                "sentences": sentences,
            }
        ],
        "output": [
            {"answer": "The Belgian Revolution started on 25 August 1830 .", "selected_sentences": sentences[:1]}
        ],
    }
    unanswerable = {"id": "2", "input": "who painted the opera house", "passages": answerable["passages"], "output": []}
    (folder / "dev_answerable.jsonl").write_text(json.dumps(answerable) + "\n", encoding="utf-8")
    (folder / "dev_unanswerable.jsonl").write_text(json.dumps(unanswerable) + "\n", encoding="utf-8")


def _write_mtrag(root: Path) -> None:
    folder = root / "mtrag"
    folder.mkdir(parents=True)
    contexts = [{"document_id": "d1", "text": PASSAGES[2].text}, {"document_id": "d2", "text": PASSAGES[1].text}]
    tasks = [
        {
            "conversation_id": "c1",
            "task_id": "c1<::>1",
            "contexts": contexts[:1],
            "answerability": ["ANSWERABLE"],
            "input": [{"speaker": "user", "text": "What does with call on exit?"}],
            "targets": [
                {
                    "speaker": "agent",
                    "text": "It calls __exit__ when the block exits. The manager may suppress "
                    "the exception that was raised.",
                }
            ],
        },
        {
            "conversation_id": "c2",
            "task_id": "c2<::>1",
            "contexts": contexts[1:],
            "answerability": ["UNANSWERABLE"],
            "input": [{"speaker": "user", "text": "Who was Leopold's dentist?"}],
            "targets": [{"text": "I don't know."}],
        },
    ]
    (folder / "mtragun_reference_dev.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks), "utf-8")
    test = {"documents": [{"document_id": "d2", "text": "x"}], "tasks": [], "evaluations": []}
    (folder / "human_evaluations_dev.json").write_text(json.dumps(test), encoding="utf-8")


def test_clapnq_builder_on_a_handmade_folder(tmp_path: Path) -> None:
    _write_clapnq(tmp_path)
    pairs = list(clapnq_pairs(tmp_path))
    kinds = balance(pairs)
    assert kinds["answerable/1/clapnq_answerable"] == 1
    assert kinds["answerable/0/clapnq_unanswerable"] == 2  # the best-aligned window and one other
    assert kinds.get("answerable/0/answer_removed") == 1
    answer = next(p for p in pairs if p.kind == "original" and "started" in p.text)
    assert answer.label == 1
    assert answer.text == "The Belgian Revolution started on 25 August 1830."
    removed = next(p for p in pairs if p.kind == "answer_removed")
    assert "25 August" not in removed.evidence
    answering = next(p for p in pairs if p.kind == "clapnq_answerable")
    assert "25 August 1830" in answering.evidence


def test_clapnq_sentence_pairs_hold_the_selected_sentence_against_its_neighbours(tmp_path: Path) -> None:
    _write_clapnq(tmp_path)
    pairs = list(clapnq_sentence_pairs(tmp_path))
    assert list(clapnq_sentence_pairs(tmp_path)) == pairs  # no random draw
    assert {(p.task, p.source) for p in pairs} == {("answerable", "clapnq")}
    by_kind = {(p.kind, p.label, p.group): p.evidence for p in pairs}
    # The sentence the annotators selected answers the question alone; its neighbour, on topic, does not.
    assert by_kind[("answering_sentence", 1, "clapnq:1")] == "The Belgian Revolution broke out on 25 August 1830."
    assert by_kind[("beside_sentence", 0, "clapnq:1")] == "It began in Brussels after an opera."
    # An unanswerable question's passage sentences are negatives, in the question's own group (its split).
    unanswered = [p for p in pairs if p.kind == "unanswered_sentence"]
    assert [p.label for p in unanswered] == [0, 0]
    assert {p.group for p in unanswered} == {"clapnq:2"}
    assert all(p.text == "who painted the opera house" for p in unanswered)


def test_mtrag_builder_leaves_test_passages_out(tmp_path: Path) -> None:
    _write_mtrag(tmp_path)
    excluded = faithfulness_test_document_ids(tmp_path)
    assert excluded == {"d2"}
    pairs = list(mtrag_pairs(tmp_path, exclude_docs=excluded))
    assert {p.group for p in pairs} == {"mtrag:c1"}  # c2 shares a passage with the test file
    assert any(p.task == "answerable" and p.label == 1 for p in pairs)
    assert any(p.task == "support" and p.label == 1 for p in pairs)
    with_c2 = list(mtrag_pairs(tmp_path))
    assert any(p.task == "answerable" and p.label == 0 for p in with_c2)
    responses = list(mtrag_responses(tmp_path, exclude_docs=excluded))
    assert [r.faithful for r in responses].count(1) == 1
    assert [r.faithful for r in responses].count(0) >= 1


def test_an_unanswerable_mtrag_question_without_passages_is_gated_against_its_collections_closest(
    tmp_path: Path,
) -> None:
    _write_mtrag(tmp_path)
    path = tmp_path / "mtrag" / "mtragun_reference_dev.jsonl"
    tasks = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    tasks.append(
        {
            "conversation_id": "c3",
            "task_id": "c3<::>2",
            "contexts": [],  # as MT-RAG gives its unanswerable reference tasks
            "answerability": ["UNANSWERABLE"],
            "input": [{"speaker": "user", "text": "Which exception does the with statement swallow on exit?"}],
            "targets": [],
        }
    )
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks), "utf-8")
    from grounded.checks.sources import mtrag_cases

    case = next(c for c in mtrag_cases(tmp_path) if c.group == "mtrag:c3")
    assert case.answerable == 0
    assert case.kind == "mtrag_unanswerable"
    assert case.passages[0] == PASSAGES[2].text  # the with-statement passage: most words in common
    assert set(case.passages) == {PASSAGES[2].text, PASSAGES[1].text}


def test_judged_responses_split_in_two_halves_by_conversation(tmp_path: Path) -> None:
    folder = tmp_path / "mtrag"
    folder.mkdir()
    ids = [f"c{k}<::>{turn}" for k in range(6) for turn in (1, 2)]
    sides = human_halves(ids)
    assert sides == human_halves(ids)  # stable
    assert all(sides[k] == sides[k + 1] for k in range(0, len(ids), 2))  # one conversation, one half
    assert sides.count("A") == sides.count("B") == 6  # conversations alternate between the halves

    def judged(task: str, marks: list[str]) -> dict[str, object]:
        scores = {str(n): {"value": v} for n, v in enumerate(marks)}
        return {"task_id": task, "model_id": "gpt-4o", "model_response": f"Answer to {task}.",
                "annotations": {"faithfulness": scores}}  # fmt: skip

    test = {
        "documents": [{"document_id": "d1", "text": "A passage."}],
        "tasks": [{"task_id": t, "contexts": [{"document_id": "d1"}]} for t in ids[:4]],
        "evaluations": [judged(ids[0], ["4", "3", "1"]), judged(ids[2], ["2", "2", "4"])],
    }
    (folder / "human_evaluations_dev.json").write_text(json.dumps(test), encoding="utf-8")
    found = list(human_responses(tmp_path))
    first, second = human_halves([ids[0], ids[2]])  # the halves of the conversations the file holds
    assert {first, second} == {"A", "B"}
    assert [(half, r.faithful, r.kind, r.group, r.passages) for half, r in found] == [
        (first, 1, "human:gpt-4o", "human:c0", ("A passage.",)),  # median 3
        (second, 0, "human:gpt-4o", "human:c1", ("A passage.",)),  # median 2: unfaithful
    ]
    assert list(human_responses(tmp_path / "nothing")) == []
