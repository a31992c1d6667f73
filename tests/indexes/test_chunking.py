from __future__ import annotations

import pytest

from indexes.chunking import ChunkingConfig, chunk_document, sentence_spans

TEXT = (
    "The with statement wraps a block. It calls __enter__ first, e.g. to open a file. "
    "Dr. Smith wrote the PEP in 2005! Was it accepted? Yes.\n\nA new paragraph starts here without a period"
)


def test_every_chunk_is_an_exact_slice_of_the_text() -> None:
    for chunk in chunk_document("d", TEXT, ChunkingConfig(max_chars=60)):
        assert TEXT[chunk.start : chunk.end] == chunk.text


def test_sentences_split_at_terminators_not_at_abbreviations() -> None:
    sentences = [TEXT[s:e] for s, e in sentence_spans(TEXT)]
    assert sentences == [
        "The with statement wraps a block.",
        "It calls __enter__ first, e.g. to open a file.",
        "Dr. Smith wrote the PEP in 2005!",
        "Was it accepted?",
        "Yes.",
        "A new paragraph starts here without a period",
    ]


def test_chunks_end_on_sentence_boundaries() -> None:
    chunks = chunk_document("d", TEXT, ChunkingConfig(max_chars=90))
    ends = {e for _, e in sentence_spans(TEXT)}
    assert len(chunks) > 1
    assert all(c.end in ends for c in chunks)


def test_a_sentence_longer_than_the_limit_is_cut_at_whitespace() -> None:
    text = " ".join(["word"] * 100)
    chunks = chunk_document("d", text, ChunkingConfig(max_chars=60))
    assert all(len(c.text) <= 60 for c in chunks)
    assert all(not c.text.startswith(" ") and not c.text.endswith(" ") for c in chunks)
    assert " ".join(c.text for c in chunks) == text


def test_chunk_ids_are_stable_and_depend_on_content() -> None:
    first = chunk_document("d", TEXT)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in chunk_document("d", TEXT)]
    assert first[0].chunk_id != chunk_document("d", TEXT + " More.")[0].chunk_id
    assert first[0].chunk_id != chunk_document("other", TEXT)[0].chunk_id
    assert all(0 <= c.chunk_id < 2**63 for c in first)


def test_overlap_repeats_the_last_sentence() -> None:
    chunks = chunk_document("d", TEXT, ChunkingConfig(max_chars=90, overlap_sentences=1))
    assert len(chunks) > 1
    assert chunks[1].start < chunks[0].end


def test_empty_text_has_no_chunks() -> None:
    assert chunk_document("d", "   \n ") == []


def test_too_small_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_chars=10"):
        ChunkingConfig(max_chars=10)
