"""Chunk rows of a published (read-only) version are cached without changing what callers get."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import grounded
from indexes import duckdb_store
from indexes.duckdb_store import DuckDBStore


def _store(built_kb_path: Path) -> DuckDBStore:
    kb = grounded.open(built_kb_path, create=False)
    return DuckDBStore.open(kb.snapshot().version.store_path, read_only=True)


def test_cached_rows_equal_fresh_rows(built_kb_path: Path) -> None:
    store = _store(built_kb_path)
    ids = [int(i) for i in store.chunk_ids()[:6]]
    first = store.chunk_rows(ids[:4])
    second = store.chunk_rows(ids)  # four from the cache, two from DuckDB
    fresh = _store(built_kb_path).chunk_rows(ids)
    assert second == fresh
    assert {k: second[k] for k in ids[:4]} == first
    assert set(second) == set(ids)


def test_changing_a_returned_row_does_not_change_the_cache(built_kb_path: Path) -> None:
    store = _store(built_kb_path)
    cid = int(store.chunk_ids()[0])
    row = store.chunk_rows([cid])[cid]
    original = copy.deepcopy(row)
    row["text"] = "tampered"
    row["metadata"]["injected"] = "yes"
    assert store.chunk_rows([cid])[cid] == original


def test_cache_keeps_at_most_its_size(built_kb_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(built_kb_path)
    ids = [int(i) for i in store.chunk_ids()[:10]]
    monkeypatch.setattr(duckdb_store, "ROW_CACHE_SIZE", 3)
    store.chunk_rows(ids)
    assert len(store._rows) == 3
    assert set(store.chunk_rows(ids)) == set(ids)  # evicted rows come back from DuckDB


def test_unknown_ids_are_absent_not_errors(built_kb_path: Path) -> None:
    store = _store(built_kb_path)
    assert store.chunk_rows([-1, -2]) == {}
    assert store.chunk_rows([-1, -2]) == {}
