"""read_ahead: pages in order from another thread, errors where they happened, a clean stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from grounded.ingest.prefetch import read_ahead


class Source:
    """A generator that records which thread ran it, how far it got and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at
        self.threads: set[int] = set()
        self.produced = 0
        self.closed = False

    def pages(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                self.threads.add(threading.get_ident())
                if i == self.fail_at:
                    raise ConnectionError(f"lost the server at page {i}")
                self.produced += 1
                yield i
        finally:
            self.closed = True


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "grounded-read-ahead"]


def test_pages_arrive_in_order_from_a_thread_of_their_own() -> None:
    source = Source(50)
    with read_ahead(source.pages(), depth=2) as pages:
        assert list(pages) == list(range(50))
    assert source.closed
    assert source.threads
    assert threading.get_ident() not in source.threads
    assert not workers()


def test_an_error_is_raised_after_the_pages_before_it() -> None:
    source = Source(10, fail_at=4)
    seen: list[int] = []
    with pytest.raises(ConnectionError, match="page 4"), read_ahead(source.pages()) as pages:
        seen.extend(pages)
    assert seen == [0, 1, 2, 3]
    assert source.closed
    assert not workers()


def test_a_caller_that_stops_closes_the_source_in_its_thread() -> None:
    source = Source(1000)

    def build() -> None:
        with read_ahead(source.pages(), depth=1) as pages:
            for page in pages:
                if page == 3:
                    raise KeyError("the builder failed")

    with pytest.raises(KeyError):
        build()
    assert source.closed  # its finally (a connection's close) ran before read_ahead returned
    assert source.produced <= 3 + 1 + 2  # at most the queue and the page in hand beyond the caller
    assert not workers()


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth must be at least 1; got 0"), read_ahead(iter([1]), depth=0):
        pass
