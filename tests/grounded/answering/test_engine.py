"""kb.ask end to end: citations mapped to sources, abstention, the answer cache, determinism.

The fast tests use the fake expert (registered through the real plugin path); the slow ones
run the real default answer model, SmolLM2-135M-Instruct, loaded once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import grounded
from grounded.answering.cache import AnswerCache, cache_key, normalise_question
from grounded.answering.types import Answer
from grounded.answering.writer import ABSTAIN_TEXT
from grounded.errors import InvalidRequest
from grounded.kb import KnowledgeBase
from tests import fake_expert
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

QUESTION = "What does the pass statement do?"
OFF_TOPIC = "Who won the 1998 FIFA World Cup final in France?"


@pytest.fixture(scope="module")
def fake_kb(built_kb_path: Path, fake_backend: str) -> KnowledgeBase:  # noqa: F811
    return grounded.open(built_kb_path, create=False, experts={"answer": {"backend": fake_backend, "model": "echo"}})


# Fewer passages and tokens than the defaults keep the real model's tests short on a small CPU.
REAL = {"answer": {"k": 2, "max_new_tokens": 48}, "experts": {"answer": {"timeout_s": 280}}}


@pytest.fixture(scope="module")
def real_kb(built_kb_path: Path) -> KnowledgeBase:
    return grounded.open(built_kb_path, create=False, **REAL)


def _doc_text(kb: KnowledgeBase, doc_id: str) -> str:
    row = kb.snapshot().store.cursor().execute("SELECT text FROM documents WHERE doc_id = ?", [doc_id]).fetchone()
    assert row is not None
    return str(row[0])


def _assert_grounded(kb: KnowledgeBase, answer: Answer) -> None:
    """Every sentence cites passages that exist, each an exact slice of its source document."""
    assert not answer.abstained
    assert answer.sentences
    ids = {c.id for c in answer.citations}
    for sentence in answer.sentences:
        assert sentence.citations
        assert set(sentence.citations) <= ids
        if sentence.quoted:
            cited_text = " ".join(" ".join(answer.citations[i - 1].text.split()) for i in sentence.citations)
            assert sentence.text in cited_text
        else:
            assert sentence.support >= kb.settings.answer.min_word_support
    for citation in answer.cited():
        assert _doc_text(kb, citation.doc_id)[citation.start : citation.end] == citation.text
        assert citation.source == "reference"
        assert citation.synced_at is not None
    assert answer.index_version == kb.version


def test_answer_cites_exact_slices_of_the_sources(fake_kb: KnowledgeBase) -> None:
    answer = fake_kb.ask(QUESTION, use_cache=False)
    _assert_grounded(fake_kb, answer)
    assert answer.model == "fake:echo"
    assert answer.text.endswith("[1]")
    assert "pass" in answer.citations[0].text


def test_off_topic_question_abstains_without_asking_the_model(fake_kb: KnowledgeBase) -> None:
    calls = len(fake_expert.CALLS)
    answer = fake_kb.ask(OFF_TOPIC, use_cache=False)
    assert answer.abstained
    assert answer.text == ABSTAIN_TEXT
    assert answer.sentences == ()
    assert answer.closest is not None
    assert answer.closest.citations[0] in {c.id for c in answer.citations}
    assert len(fake_expert.CALLS) == calls


def test_bad_questions_are_rejected(fake_kb: KnowledgeBase) -> None:
    with pytest.raises(InvalidRequest, match="non-empty"):
        fake_kb.ask("   ")
    with pytest.raises(InvalidRequest, match=r"k .* from 1 to 20"):
        fake_kb.ask(QUESTION, k=0)
    with pytest.raises(InvalidRequest, match="unknown filter 'colour'"):
        fake_kb.ask(QUESTION, filters={"colour": "red"})


def test_cache_returns_the_identical_answer_for_the_normalised_question(fake_kb: KnowledgeBase) -> None:
    question = "What does the break statement do?"
    first = fake_kb.ask(question)
    calls = len(fake_expert.CALLS)
    again = fake_kb.ask("  What does   the break\tstatement do? ")
    assert (first.cached, again.cached) == (False, True)
    assert again.canonical_json() == first.canonical_json()
    assert len(fake_expert.CALLS) == calls
    assert (fake_kb.path / "cache.sqlite").is_file()


def test_cache_key_covers_version_config_and_models(tmp_path: Path) -> None:
    base = cache_key("q", "000001", {"k": 3}, {"answer": "m1"})
    assert cache_key(" q ", "000001", {"k": 3}, {"answer": "m1"}) == base
    assert len({base, cache_key("q", "000002", {"k": 3}, {"answer": "m1"}),
                cache_key("q", "000001", {"k": 4}, {"answer": "m1"}),
                cache_key("q", "000001", {"k": 3}, {"answer": "m2"})}) == 4  # fmt: skip
    assert normalise_question("\uff21  b\n") == "A b"  # fullwidth A
    cache = AnswerCache(tmp_path / "cache.sqlite")
    cache.put("a", "000001", "{}")
    other_process_view = AnswerCache(tmp_path / "cache.sqlite")
    assert other_process_view.get("a") == "{}"
    cache.put("b", "000002", "{}")  # a new version invalidates the old one's answers
    assert (cache.get("a"), cache.get("b"), len(cache)) == (None, "{}", 1)


@pytest.mark.slow
def test_real_model_answers_with_verified_citations(real_kb: KnowledgeBase) -> None:
    answer = real_kb.ask(QUESTION, use_cache=False)
    _assert_grounded(real_kb, answer)
    assert answer.model.startswith("transformers:SmolLM2-135M-Instruct.Q4_1.gguf:")
    assert answer.timings["completion_tokens"] > 0
    assert answer.cited()[0].title == "pass"


_ASK = """
import json, sys, grounded
kb = grounded.open(sys.argv[1], create=False, **json.loads(sys.argv[3]))
sys.stdout.write(kb.ask(sys.argv[2], use_cache=False).canonical_json())
"""


@pytest.mark.slow
def test_same_bytes_from_two_fresh_processes(built_kb_path: Path, real_kb: KnowledgeBase) -> None:
    question = "When is the else clause of a for loop executed?"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", _ASK, str(built_kb_path), question, json.dumps(REAL)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for _ in range(2)
    ]  # fmt: skip
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=280)
        assert proc.returncode == 0, err.decode()[-2000:]
        outputs.append(out)
    assert outputs[0] == outputs[1]
    here = real_kb.ask(question, use_cache=False)
    assert outputs[0].decode() == here.canonical_json()
    assert json.loads(outputs[0])["question"] == question
