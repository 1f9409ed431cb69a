"""Client-side request budget: one Match-Trader session may make 500 requests/minute [DOC S1].

``RateLimiter`` is the small interface the client calls before every request; the order engine
plugs a Redis-shared implementation with the same interface. ``TokenBucket`` is the local,
thread-safe one. Its default (burst 50, refill 450/min) can never exceed 500 requests in any 60 s
window (50 + 450). ``priority="high"`` (closes, cancels) may use a reserve that normal requests
leave untouched, so an exit is not starved by a burst of reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class RateLimiter(Protocol):
    def acquire(self, cost: float = 1, priority: str = "normal") -> None:
        """Block until ``cost`` requests may be sent."""


class NoLimit:
    def acquire(self, cost: float = 1, priority: str = "normal") -> None:
        return None


class TokenBucket:
    def __init__(self, rate_per_minute: float = 450, burst: float = 50, high_reserve: float = 10, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if rate_per_minute <= 0 or burst <= 0 or not 0 <= high_reserve < burst:
            raise ValueError("rate and burst must be > 0 and 0 <= high_reserve < burst")
        self.rate = rate_per_minute / 60.0
        self.capacity = float(burst)
        self.reserve = float(high_reserve)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self, cost: float = 1, priority: str = "normal") -> float:
        """Take the tokens and return 0, or return the seconds to wait before trying again."""
        floor = 0.0 if priority == "high" else self.reserve
        with self._lock:
            self._refill()
            if self._tokens - cost >= floor - 1e-9:  # tolerance: float refill never loops on 1e-17 waits
                self._tokens -= cost
                return 0.0
            return (cost + floor - self._tokens) / self.rate

    def acquire(self, cost: float = 1, priority: str = "normal") -> None:
        if cost > self.capacity:
            raise ValueError("cost exceeds the bucket capacity")
        while True:
            wait = self.try_acquire(cost, priority)
            if wait <= 0:
                return
            self.waited_s += wait
            self._sleep(wait)
