"""A token bucket per caller (API key, or client address in development mode), per process.

Each caller may make ``rate`` requests per second on average and ``burst`` at once. The same
buckets, keyed by client address, count failed authentications (``server.auth_failure_rate``):
:meth:`RateLimiter.spend` on each failure, :meth:`RateLimiter.wait` before authenticating. With
``--workers N`` every worker keeps its own buckets, so the effective limit is up to N times
higher; put a shared limiter in front (a proxy) when that matters.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time

from grounded.errors import RateLimited

__all__ = ["RateLimiter"]


class RateLimiter:
    """``check(who)`` passes or raises :class:`RateLimited` with the seconds to wait."""

    def __init__(self, rate: float, burst: int, *, max_callers: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.max_callers = max_callers
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, who: str) -> None:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(who, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[who] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise RateLimited(
                    f"rate limit of {self.rate:g} requests/s (burst {self.burst}) exceeded; retry in {wait:.2f} s",
                    retry_after=wait,
                )
            if len(self._buckets) >= self.max_callers and who not in self._buckets:
                self._buckets.clear()  # a flood of distinct callers: start over rather than grow
            self._buckets[who] = (tokens - 1.0, now)

    def wait(self, who: str) -> float:
        """Seconds until ``who`` has a whole token again (0: it has one now); consumes nothing."""
        now = time.monotonic()
        with self._lock:
            found = self._buckets.get(who)
        if found is None:
            return 0.0
        tokens = min(float(self.burst), found[0] + (now - found[1]) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def spend(self, who: str) -> None:
        """Take a token from ``who``'s bucket if one is left (a failure to count, never refused)."""
        with contextlib.suppress(RateLimited):
            self.check(who)

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))
