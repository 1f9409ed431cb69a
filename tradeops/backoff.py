"""Backoff between retries: the one formula for every retry loop (pure, no I/O).

``exponential(attempt, base_s, cap_s)`` = min(cap, base · 2^(attempt-1)): the first retry waits
``base_s``, each later one twice as long, never more than ``cap_s``. ``full_jitter`` draws the wait
uniformly in [0, exponential]: many clients retrying after one outage (a thousand order tasks, a
feed's reconnects) spread out instead of arriving together (the "full jitter" of AWS's
architecture blog, which has the lowest total work of the usual variants).

Attempts count from 1 (the first retry). Used by the feed's Redis flush and history warm-up
(``workers.feed``) and the WebSocket reconnect (``matchtrader.stream``).
"""

from __future__ import annotations

import random


def exponential(attempt: int, base_s: float, cap_s: float) -> float:
    """min(cap_s, base_s · 2^(attempt-1)); attempt 1 (or less) gives base_s (capped)."""
    return min(cap_s, base_s * 2 ** max(0, attempt - 1))


def full_jitter(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """A wait drawn uniformly in [0, exponential(attempt, base_s, cap_s)]."""
    return (rng or random).uniform(0, exponential(attempt, base_s, cap_s))
