"""Support/resistance: fractal pivots, clustering, nearest levels."""

import math

import numpy as np
import pytest

from signals.analysis.levels import cluster_levels, nearest_levels, support_resistance, swing_highs, swing_lows


def test_swing_highs_width_2():
    # i=2: 5 > max(1, 2, 2, 1); i=6: 4 > max(1, 3, 3, 2); nothing else is above both neighbours
    assert swing_highs(np.array([1, 2, 5, 2, 1, 3, 4, 3, 2.0]), 2).tolist() == [5.0, 4.0]


def test_swing_lows_width_2():
    assert swing_lows(np.array([5, 4, 1, 4, 5, 3, 2, 3, 4.0]), 2).tolist() == [1.0, 2.0]


def test_ties_are_not_pivots_and_edges_are_unconfirmed():
    assert swing_highs(np.array([1, 3, 3, 1, 0.0]), 1).size == 0
    # the last bar is the highest but has no bars after it yet
    assert swing_highs(np.array([1, 2, 3, 4, 5.0]), 1).size == 0
    assert swing_highs(np.array([1.0, 2.0]), 2).size == 0


def test_width_1_finds_more_pivots():
    # i=1: 3 > 1, 2; i=3: 4 > 2, 1
    assert swing_highs(np.array([1, 3, 2, 4, 1.0]), 1).tolist() == [3.0, 4.0]


def test_cluster_by_tolerance():
    # tick 0.0001, tolerance 2 ticks: gaps 2, 1, 7 ticks -> {1.0000, 1.0002, 1.0003}, {1.0010}
    centres, counts = cluster_levels(np.array([1.0010, 1.0002, 1.0000, 1.0003]), 2 * 0.0001)
    assert counts.tolist() == [3, 1]
    assert centres == pytest.approx([(1.0000 + 1.0002 + 1.0003) / 3, 1.0010])


def test_cluster_empty():
    centres, counts = cluster_levels(np.array([]), 1.0)
    assert centres.size == 0 and counts.size == 0


def test_nearest_levels_in_ticks():
    n = nearest_levels(np.array([1.0000, 1.0010, 0.9990]), 1.0005, 0.0001)
    assert n.support == 1.0 and n.support_ticks == pytest.approx(5)
    assert n.resistance == 1.001 and n.resistance_ticks == pytest.approx(5)


def test_level_at_the_price_is_both_and_none_is_nan():
    n = nearest_levels(np.array([2.0]), 2.0, 0.5)
    assert (n.support_ticks, n.resistance_ticks) == (0.0, 0.0)
    n = nearest_levels(np.array([]), 2.0, 0.5)
    assert math.isnan(n.support) and math.isnan(n.resistance_ticks)


def test_support_resistance_from_pivots_and_walls():
    high = np.array([10, 11, 14, 11, 10, 12, 13, 12, 11.0])  # pivot highs 14, 13
    low = np.array([9, 8, 9, 10, 9, 7, 9, 10, 10.0])  # pivot lows (width 1) 8 at i=1, 7 at i=5
    # walls 12.9 (merges with 13 at tolerance 2 ticks of 0.1) and 11.5
    n = support_resistance(12.0, 0.1, high=high, low=low, wall_prices=np.array([12.9, 11.5]), pivot_width=1, tolerance_ticks=2)
    assert n.resistance == pytest.approx((12.9 + 13.0) / 2)
    assert n.resistance_ticks == pytest.approx(9.5)
    assert n.support == 11.5 and n.support_ticks == pytest.approx(5)
    # candidates 7, 8 (lows), 11.5, 12.9 (walls), 13, 14 (highs): 12.9 and 13 are 1 tick apart
    # and merge -> 5 clusters: 7, 8, 11.5, 12.95, 14
    assert n.level_count == 5
