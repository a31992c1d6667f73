"""Run one function over the shards of a version in parallel, in one process.

FAISS searches release the GIL, so a version's shards are searched side by side on a small
shared thread pool; one shard runs inline (no pool, no hand-off cost).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["fan_out"]

T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="grounded-shard")
        return _pool


def fan_out(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(item) for item in items]``, the items run in parallel when there is more than one."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    return list(_executor().map(fn, items))
