"""Read a connector's next page while the builder writes the last one.

A sync alternates two waits: the source (a database server sending rows, the driver decoding
them) and DuckDB (writing them, which releases the GIL). :func:`read_ahead` runs the connector's
generator in a thread of its own, at most ``depth`` pages ahead, so the two overlap; memory grows
by those pages at most.

The generator runs entirely in that thread (a connection it opens is used by one thread only),
and pages arrive in order. Its error is raised in the caller at the point it happened; when the
caller stops early (an error of its own, Ctrl-C), the generator is closed in its thread, so its
``finally`` blocks (closing the connection) run before ``read_ahead`` returns.

Example::

    with read_ahead(connector.read(stream, cursor)) as pages:
        for page in pages:
            builder.apply_page(source, stream, page)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

__all__ = ["read_ahead"]

T = TypeVar("T")

_POLL_S = 0.1
"""How often a producer blocked on a full queue checks whether the consumer stopped."""


class _Done:
    """The end of the pages."""


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


@contextmanager
def read_ahead(items: Iterator[T], depth: int = 1) -> Generator[Iterator[T], None, None]:
    """``items`` iterated in a background thread, up to ``depth`` items ahead of the caller."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1; got {depth}")
    slots: queue.Queue[T | _Done | _Failed] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: T | _Done | _Failed) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # the caller raises it; nothing is lost in this thread
            put(_Failed(exc))
        else:
            put(_Done())
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def consume() -> Iterator[T]:
        while True:
            item = slots.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    worker = threading.Thread(target=produce, name="grounded-read-ahead", daemon=True)
    worker.start()
    try:
        yield consume()
    finally:
        stop.set()
        while worker.is_alive():  # drain, so a producer blocked in put() sees the stop
            with suppress(queue.Empty):
                slots.get(timeout=_POLL_S)
        worker.join()
