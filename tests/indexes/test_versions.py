from __future__ import annotations

import json
from pathlib import Path

import pytest

from grounded.errors import CorruptKnowledgeBase, KnowledgeBaseLocked
from indexes.versions import VersionStore


def _publish(store: VersionStore, payload: str) -> str:
    with store.write_lock():
        vid, staged = store.new_staging()
        (staged / "store.duckdb").write_text(payload)
        store.publish(vid, staged, {"payload": payload})
    return vid


def test_new_directory_becomes_a_knowledge_base(tmp_path: Path) -> None:
    store = VersionStore.open(tmp_path / "kb", create=True)
    assert store.current() is None
    assert json.loads((tmp_path / "kb" / "KB_FORMAT").read_text())["format"] == "grounded-kb"


def test_foreign_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CorruptKnowledgeBase, match="not a grounded knowledge base"):
        VersionStore.open(tmp_path, create=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_directory_is_not_created_for_readers(tmp_path: Path) -> None:
    with pytest.raises(CorruptKnowledgeBase, match="not a knowledge base yet"):
        VersionStore.open(tmp_path / "nope", create=False)
    assert not (tmp_path / "nope").exists()


def test_damaged_marker_is_reported(tmp_path: Path) -> None:
    VersionStore.open(tmp_path, create=True)
    (tmp_path / "KB_FORMAT").write_text("{garbage")
    with pytest.raises(CorruptKnowledgeBase, match="unreadable"):
        VersionStore.open(tmp_path, create=False)


def test_publish_switches_current_and_copies_forward(tmp_path: Path) -> None:
    store = VersionStore.open(tmp_path, create=True)
    first = _publish(store, "one")
    assert store.current_id() == first
    with store.write_lock():
        vid, staged = store.new_staging()
        assert (staged / "store.duckdb").read_text() == "one"  # staging starts from current
        assert store.current_id() == first  # not visible until published
        store.publish(vid, staged, {})
    assert store.current_id() == vid != first


def test_crashed_writer_leaves_current_and_its_leftovers_are_cleared(tmp_path: Path) -> None:
    store = VersionStore.open(tmp_path, create=True)
    first = _publish(store, "one")
    with store.write_lock():
        _, staged = store.new_staging()
        (staged / "store.duckdb").write_text("half")
    # no publish: as after a crash
    assert store.current_id() == first
    with store.write_lock():
        _, staged = store.new_staging()
        assert (staged / "store.duckdb").read_text() == "one"
    assert len(list((tmp_path / "staging").iterdir())) == 1


def test_second_writer_is_refused(tmp_path: Path) -> None:
    store = VersionStore.open(tmp_path, create=True)
    second = VersionStore.open(tmp_path, create=False)
    with store.write_lock(), pytest.raises(KnowledgeBaseLocked, match="another process"), second.write_lock():
        pass


def test_old_versions_are_pruned_but_current_stays(tmp_path: Path) -> None:
    store = VersionStore.open(tmp_path, create=True, keep=2)
    ids = [_publish(store, str(i)) for i in range(4)]
    assert store.list_ids() == ids[-2:]
    assert store.current_id() == ids[-1]
