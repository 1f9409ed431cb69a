"""Support and resistance: swing pivots of bars plus book walls, clustered by a tolerance in ticks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_EMPTY = np.empty(0, dtype=np.float64)
_ZERO_INDEX = np.zeros(1, dtype=np.int64)


def swing_highs(high: np.ndarray, width: int = 2) -> np.ndarray:
    """Fractal pivot highs: high[i] strictly above every high within ``width`` bars on each side.

    Only confirmed pivots (``width`` bars exist after them) are returned, oldest first.
    """
    high = np.asarray(high, dtype=np.float64)
    n = high.shape[0]
    if width < 1 or n < 2 * width + 1:
        return _EMPTY
    centre = high[width : n - width]
    # one vectorised comparison per neighbour offset (a loop over `width`, not over bars)
    is_pivot = np.ones(centre.shape[0], dtype=bool)
    for k in range(1, width + 1):
        is_pivot &= centre > high[width - k : n - width - k]
        is_pivot &= centre > high[width + k : n - width + k]
    return centre[is_pivot]


def swing_lows(low: np.ndarray, width: int = 2) -> np.ndarray:
    """Fractal pivot lows: low[i] strictly below every low within ``width`` bars on each side."""
    return -swing_highs(-np.asarray(low, dtype=np.float64), width)


def cluster_levels(prices: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Group prices whose sorted neighbours are <= ``tolerance`` apart (single linkage: a chain
    of close prices forms one cluster). Returns (cluster mean prices ascending, member counts)."""
    prices = np.asarray(prices, dtype=np.float64)
    prices = np.sort(prices[np.isfinite(prices)])  # a NaN/inf pivot or wall is no level
    if prices.shape[0] == 0:
        return _EMPTY, np.empty(0, dtype=np.int64)
    # small epsilon so that a gap of exactly `tolerance` ticks survives float noise
    breaks = np.flatnonzero(prices[1:] - prices[:-1] > tolerance * (1 + 1e-9)) + 1
    starts = np.concatenate((_ZERO_INDEX, breaks))
    counts = np.concatenate((breaks, (prices.shape[0],))) - starts
    means = np.add.reduceat(prices, starts) / counts
    return means, counts


@dataclass(frozen=True, slots=True)
class NearestLevels:
    """Closest support at or below and resistance at or above the price; NaN when none."""

    support: float
    support_ticks: float  # (price - support) / tick_size
    resistance: float
    resistance_ticks: float  # (resistance - price) / tick_size
    level_count: int


def _ticks(distance: float, tick_size: float) -> float:
    """Distance in ticks, rounded to 1e-6 tick so float noise (4.9999999 ticks) does not flip
    a comparison against a whole number of ticks."""
    ticks = distance / tick_size
    return round(ticks, 6) if math.isfinite(ticks) else ticks


def nearest_levels(levels: np.ndarray, price: float, tick_size: float) -> NearestLevels:
    """A level exactly at the price is both support and resistance (distance 0). A price or tick
    size that is not finite (and > 0 for the tick) has no levels: every output is NaN then."""
    levels = np.asarray(levels, dtype=np.float64)
    if not (math.isfinite(price) and math.isfinite(tick_size) and tick_size > 0):
        return NearestLevels(math.nan, math.nan, math.nan, math.nan, int(levels.shape[0]))
    levels = levels[np.isfinite(levels)]
    below = levels[levels <= price]
    above = levels[levels >= price]
    support = float(below.max()) if below.shape[0] else math.nan
    resistance = float(above.min()) if above.shape[0] else math.nan
    support_ticks = _ticks(price - support, tick_size)
    resistance_ticks = _ticks(resistance - price, tick_size)
    if not math.isfinite(support_ticks):  # too far to count in ticks (overflow): no level
        support = support_ticks = math.nan
    if not math.isfinite(resistance_ticks):
        resistance = resistance_ticks = math.nan
    return NearestLevels(
        support=support,
        support_ticks=support_ticks,
        resistance=resistance,
        resistance_ticks=resistance_ticks,
        level_count=int(levels.shape[0]),
    )


def support_resistance(
    price: float,
    tick_size: float,
    *,
    high: np.ndarray | None = None,
    low: np.ndarray | None = None,
    wall_prices: np.ndarray | None = None,
    pivot_width: int = 2,
    tolerance_ticks: float = 3.0,
) -> NearestLevels:
    """Nearest support/resistance from swing pivots of (high, low) and book wall prices,
    clustered within ``tolerance_ticks`` ticks."""
    parts = []
    if high is not None and low is not None and high.shape[0]:
        parts += [swing_highs(high, pivot_width), swing_lows(low, pivot_width)]
    if wall_prices is not None and wall_prices.shape[0]:
        parts.append(np.asarray(wall_prices, dtype=np.float64))
    candidates = np.concatenate(parts) if parts else _EMPTY
    centres, _ = cluster_levels(candidates, tolerance_ticks * tick_size)
    return nearest_levels(centres, price, tick_size)
