"""A contract test suite every connector's tests reuse, built-in or third-party.

Subclass :class:`ConnectorContract` in a pytest module and provide a ``connector`` fixture
(a configured instance with some data behind it); optionally ``failing_connector`` (one whose
``check()`` must fail, e.g. a wrong password) and ``entry_point`` (its registered type name)::

    from connectors.testing import ConnectorContract

    class TestMyAPI(ConnectorContract):
        entry_point = "myapi"

        @pytest.fixture
        def connector(self, server):
            return MyAPIConnector(MyAPIConfig(base_url=server.url))
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from connectors.base import Connector, Deletion, Document, LiveKeys, Page, RowBatch, SplittableConnector, Unreadable
from grounded.errors import ConnectorError

__all__ = ["ConnectorContract", "collect"]


def collect(connector: Connector, stream: str, cursor: Any = None, limit: int = 10_000) -> list[Page]:
    """Every page of one read (at most ``limit``: a page that never ends fails the test)."""
    pages: list[Page] = []
    for page in connector.read(stream, cursor):
        pages.append(page)
        assert len(pages) <= limit, f"stream {stream!r} yielded more than {limit} pages; does it ever end?"
    return pages


class ConnectorContract:
    """What every connector must do; see the module docstring."""

    entry_point: ClassVar[str | None] = None
    """The connector's name in the ``grounded.connectors`` entry-point group, if registered."""

    @pytest.fixture
    def failing_connector(self) -> Connector | None:
        """A connector whose ``check()`` must raise (override to test it)."""
        return None

    def test_declares_name_and_config(self, connector: Connector) -> None:
        assert isinstance(connector.name, str)
        assert connector.name
        assert isinstance(connector.Config, type)
        assert issubclass(connector.Config, BaseModel)
        assert isinstance(connector, Connector)

    def test_is_registered(self, connector: Connector) -> None:
        if self.entry_point is None:
            pytest.skip("no entry point declared for this connector")
        from connectors.registry import load_connector

        assert load_connector(self.entry_point) is type(connector)

    def test_check_passes(self, connector: Connector) -> None:
        connector.check()

    def test_check_fails_clearly(self, failing_connector: Connector | None) -> None:
        if failing_connector is None:
            pytest.skip("no failing_connector fixture")
        with pytest.raises(ConnectorError) as info:
            failing_connector.check()
        assert len(str(info.value)) > 20, "the error should say what failed and how to fix it"

    def test_streams_are_unique_and_readable(self, connector: Connector) -> None:
        specs = connector.streams()
        assert specs, "a connector reads at least one stream"
        names = [s.name for s in specs]
        assert len(names) == len(set(names)), f"duplicate stream names: {names}"
        for spec in specs:
            assert spec.kind in ("documents", "table")

    def test_pages_are_well_formed(self, connector: Connector) -> None:
        for spec in connector.streams():
            for page in collect(connector, spec.name):
                assert isinstance(page, Page)
                if page.cursor is not None:
                    json.dumps(page.cursor)  # cursors are stored as JSON
                for record in page.records:
                    assert isinstance(record, Document | RowBatch | Deletion | Unreadable | LiveKeys)
                    if isinstance(record, Document):
                        assert record.key, "documents need a stable key"
                    if isinstance(record, RowBatch):
                        names = [c.name for c in record.columns]
                        assert record.primary_key, f"table {record.table!r} needs a primary key"
                        assert set(record.primary_key) <= set(names)
                        assert all(len(row) == len(names) for row in record.rows)

    def test_reads_are_repeatable(self, connector: Connector) -> None:
        """Two reads of unchanged data give the same records (ids come from content)."""
        for spec in connector.streams():
            first = [r for p in collect(connector, spec.name) for r in p.records]
            second = [r for p in collect(connector, spec.name) for r in p.records]
            assert first == second

    def test_resume_after_last_cursor_reads_nothing_new(self, connector: Connector) -> None:
        for spec in connector.streams():
            if spec.full_scan:
                continue
            pages = collect(connector, spec.name)
            cursor = next((p.cursor for p in reversed(pages) if p.cursor is not None), None)
            seen = [r for p in pages for r in p.records]
            again = collect(connector, spec.name, cursor)
            # An inclusive watermark (GitHub's `since`) may replay the last records unchanged:
            # harmless, as content hashes make them free. Anything else is a bug.
            fresh = [
                r
                for p in again
                for r in p.records
                if isinstance(r, Document | RowBatch) and _non_empty(r) and r not in seen
            ]
            assert not fresh, f"stream {spec.name!r} read {len(fresh)} unseen records after its last cursor"

    def test_full_scan_yields_every_live_record_each_read(self, connector: Connector) -> None:
        """A full-scan stream is read from the start each time and the runner deletes every key it
        did not see: so each read must yield every live record (the fixture has some), a key twice
        only as the same record (a replay is harmless, two versions are not), and no
        :class:`Deletion` (absence is the deletion)."""
        for spec in connector.streams():
            if not spec.full_scan:
                continue
            records = [r for p in collect(connector, spec.name) for r in p.records]
            deletions = [r for r in records if isinstance(r, Deletion)]
            assert not deletions, f"full-scan stream {spec.name!r} yielded deletions: {deletions[:3]}"
            seen: dict[str, Any] = {}
            for key, value in (kv for r in records for kv in _keyed(r)):
                assert seen.setdefault(key, value) == value, (
                    f"full-scan stream {spec.name!r} yielded two different records for key {key!r}"
                )
            assert seen, f"full-scan stream {spec.name!r} yielded no record; the fixture has data behind it"
            again = {k for p in collect(connector, spec.name) for r in p.records for k, _ in _keyed(r)}
            assert again == set(seen), f"a second full scan of {spec.name!r} saw other records"

    def test_splits_read_in_order_yield_a_full_read(self, connector: Connector) -> None:
        """A connector that can split (:class:`SplittableConnector`) yields, reading every split in
        order, the records of a full read in the same order; only page boundaries may differ."""
        if not isinstance(connector, SplittableConnector):
            pytest.skip("the connector does not split its streams")
        for spec in connector.streams():
            whole = _flat(r for p in collect(connector, spec.name) for r in p.records)
            for parts in (1, 2, 3):
                splits = connector.splits(spec.name, parts)
                assert 1 <= len(splits) <= parts + 1, f"{len(splits)} splits asked for {parts}"
                assert [s.index for s in splits] == list(range(len(splits)))
                json.dumps([dict(s.spec) for s in splits])  # a split is shipped to another process
                parted = _flat(r for s in splits for p in connector.read_split(s) for r in p.records)
                assert parted == whole, f"{parts} splits of {spec.name!r} read other records than a full read"


def _flat(records: Any) -> tuple[list[Any], list[Any]]:
    """Table rows one by one, and the other records: a split's pages cut the row batches
    elsewhere, and a page holds its rows before the documents rendered from them."""
    rows: list[Any] = []
    others: list[Any] = []
    for record in records:
        if isinstance(record, RowBatch):
            rows.extend((record.table, record.columns, record.primary_key, row) for row in record.rows)
        else:
            others.append(record)
    return rows, others


def _keyed(record: Any) -> list[tuple[str, Any]]:
    """(live key, what it holds) for each key a record stands for: a document, a table row."""
    if isinstance(record, Document):
        return [(record.key, record)]
    if isinstance(record, RowBatch):
        names = [c.name for c in record.columns]
        at = [names.index(k) for k in record.primary_key]
        return [(f"{record.table}:" + json.dumps([row[i] for i in at], default=str), row) for row in record.rows]
    return []


def _non_empty(record: Document | RowBatch) -> bool:
    return bool(record.rows) if isinstance(record, RowBatch) else True
