"""What ``updated_after`` / ``updated_before`` filter: the source's own ``updated_at`` of each document.

Three files whose modification times are set to known instants (synced today), and pydoc topics,
which carry no date. ``updated_after`` is inclusive, ``updated_before`` exclusive, offsets are
honoured, and an undated document is left out by either (docs/serving.md, "Filters").
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

import grounded
from connectors.files import FilesConfig, FilesConnector
from connectors.pydoc_topics import PydocTopicsConfig, PydocTopicsConnector
from grounded.kb import KnowledgeBase

STAMPS = {
    "january.txt": datetime(2024, 1, 1, tzinfo=UTC),
    "june.txt": datetime(2024, 6, 1, tzinfo=UTC),
    "newyear.txt": datetime(2025, 1, 1, tzinfo=UTC),
}
QUERY = "the statement"  # every document matches some of it; k is larger than the corpus


@pytest.fixture(scope="module")
def dated_kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    root = tmp_path_factory.mktemp("dated")
    folder = root / "files"
    folder.mkdir()
    for name, stamp in STAMPS.items():
        path = folder / name
        path.write_text(f"The {name[:-4]} statement note describes the statement of {stamp:%B %Y}.\n")
        os.utime(path, (stamp.timestamp(), stamp.timestamp()))
    kb = grounded.open(root / "kb")
    kb.sync("files", FilesConnector(FilesConfig(path=folder)))
    kb.sync("pydoc", PydocTopicsConnector(PydocTopicsConfig(topics=("pass", "del"))))
    return kb


def _found(kb: KnowledgeBase, **filters: str) -> set[str]:
    hits = kb.search(QUERY, k=50, filters=filters, mode="bm25")
    return {h.title if h.source == "pydoc" else Path(h.uri).name for h in hits}


def test_without_a_date_filter_every_document_is_found(dated_kb: KnowledgeBase) -> None:
    found = _found(dated_kb)
    assert set(STAMPS) <= found
    assert len(found) == 5  # and the two undated topics


def test_updated_after_is_inclusive_and_reads_the_source_date(dated_kb: KnowledgeBase) -> None:
    # Synced today, yet dated 2024/2025 by their modification times: the filter reads the latter.
    assert _found(dated_kb, updated_after="2024-06-01T00:00:00+00:00") == {"june.txt", "newyear.txt"}
    assert _found(dated_kb, updated_after="2024-06-01T00:00:01+00:00") == {"newyear.txt"}
    assert _found(dated_kb, updated_after="2026-01-01T00:00:00+00:00") == set()


def test_updated_before_is_exclusive(dated_kb: KnowledgeBase) -> None:
    assert _found(dated_kb, updated_before="2024-06-01T00:00:00+00:00") == {"january.txt"}
    assert _found(dated_kb, updated_before="2024-06-01T00:00:01Z") == {"january.txt", "june.txt"}


def test_both_make_a_half_open_range_and_offsets_count(dated_kb: KnowledgeBase) -> None:
    window = {"updated_after": "2024-01-01T00:00:00+00:00", "updated_before": "2025-01-01T00:00:00+00:00"}
    assert _found(dated_kb, **window) == {"january.txt", "june.txt"}
    # 02:00 at +02:00 is midnight UTC: the same instant as june.txt's date.
    assert _found(dated_kb, updated_after="2024-06-01T02:00:00+02:00") == {"june.txt", "newyear.txt"}


def test_undated_documents_are_left_out_by_any_date_filter(dated_kb: KnowledgeBase) -> None:
    wide = _found(dated_kb, updated_after="1970-01-01T00:00:00+00:00")
    assert wide == set(STAMPS)  # the pydoc topics have no updated_at
    assert _found(dated_kb, updated_before="2100-01-01T00:00:00+00:00") == set(STAMPS)
