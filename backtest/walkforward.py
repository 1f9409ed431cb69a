"""Walk-forward folds: rolling in-sample / out-of-sample windows over a run's bars. Pure.

Why: one in-sample / out-of-sample split judges a parameter set on one stretch of history; a
sweep that ranks on it can pick what happened to suit that stretch. Walk-forward repeats the split
on ``k`` rolling windows (fold i: in-sample bars ``[i*o, i*o + r*o)``, out-of-sample the next
``o`` bars, with ``o = n // (k + r)``; the last fold's out-of-sample runs to the end) and scores
each out-of-sample window, so a ranking rewards parameters that held up on every later stretch.

The engine still runs once over all bars (warm windows, one cool-down state), as for the single
split: each fold's trades are those opened in its window and its equity curve is cut to it
(``runner._segment_summary``). Parameters are the run's own in every fold (a sweep varies them
across runs), so the in-sample score beside the out-of-sample one shows how much of the result
survived leaving the stretch it was seen on.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

MAX_FOLDS = 50
MIN_OOS_BARS = 5  # a shorter out-of-sample window says nothing


class WalkForwardError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Fold:
    index: int
    is_lo: int
    is_hi: int  # exclusive; == oos_lo
    oos_lo: int
    oos_hi: int  # exclusive


def folds(n_bars: int, k: int, is_ratio: float = 3.0) -> list[Fold]:
    """``k`` rolling folds over ``n_bars``: in-sample ``is_ratio`` times as long as out-of-sample."""
    if not (2 <= k <= MAX_FOLDS):
        raise WalkForwardError(f"walk-forward folds must be in [2, {MAX_FOLDS}], got {k}")
    if not (0 < is_ratio <= 20):
        raise WalkForwardError(f"walk-forward in-sample ratio must be in (0, 20], got {is_ratio}")
    oos = int(n_bars // (k + is_ratio))
    ins = int(round(is_ratio * oos))
    if oos < MIN_OOS_BARS or ins < 1:
        raise WalkForwardError(f"{n_bars} bars are too few for {k} walk-forward folds with in-sample ratio {is_ratio}")
    out = []
    for i in range(k):
        lo = i * oos
        hi = n_bars if i == k - 1 else lo + ins + oos
        out.append(Fold(i, lo, lo + ins, lo + ins, hi))
    return out


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.fmean(values), 4) if values else None
