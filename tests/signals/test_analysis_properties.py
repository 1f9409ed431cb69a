"""Invariants under hypothesis (modest example counts: the module runs in seconds)."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from marketdata.windows import TickWindow
from signals.analysis.orderbook import book_imbalance
from signals.analysis.synthetic import DEFAULT_NOW_MS, PlantedSurge, make_flat_window, make_market_window
from signals.analysis.volume import analyse_volume, tick_rule_sides
from signals.strategy import DEFAULT_PARAMS, Side, evaluate, exit_plan

FAST = settings(max_examples=40, deadline=None)
sizes = hnp.arrays(np.float64, st.integers(0, 12), elements=st.floats(0, 1e6, allow_nan=False))


@FAST
@given(bids=sizes, asks=sizes, levels=st.integers(1, 10))
def test_imbalance_in_range(bids, asks, levels):
    assert -1.0 <= book_imbalance(bids, asks, levels) <= 1.0


@st.composite
def tick_windows(draw):
    n = draw(st.integers(0, 300))
    gaps = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 3_000)))
    ts = DEFAULT_NOW_MS - 1 - np.cumsum(gaps)[::-1]
    steps = draw(hnp.arrays(np.int64, n, elements=st.integers(-2, 2)))
    price = 100.0 + 0.01 * np.cumsum(steps)
    volume = draw(hnp.arrays(np.float64, n, elements=st.floats(0, 1e4, allow_nan=False)))
    side = draw(hnp.arrays(np.int8, n, elements=st.sampled_from([-1, 0, 0, 1])))
    return TickWindow("H", ts.astype(np.int64), price - 0.01, price + 0.01, price, volume, side)


@FAST
@given(t=tick_windows(), recent_s=st.integers(2, 10), baseline_s=st.integers(10, 400))
def test_volume_features_in_range(t, recent_s, baseline_s):
    v = analyse_volume(t, None, DEFAULT_NOW_MS, recent_s=recent_s, baseline_s=baseline_s, min_baseline_s=5)
    assert 0.0 <= v.buy_ratio <= 1.0
    assert 0.0 <= v.strength <= 1.0
    assert v.direction in (-1, 0, 1)
    assert v.ratio >= 0.0 and math.isfinite(v.zscore)
    assert set(np.unique(tick_rule_sides(t.price, t.side))) <= {-1, 0, 1}


@FAST
@given(
    n_ticks=st.integers(50, 2_500),
    ticks_per_s=st.sampled_from([0.5, 1.0, 2.0, 5.0, 8.0, 20.0]),
    price=st.floats(0.5, 50_000),
    volume=st.floats(0.01, 1e4),
    with_book=st.booleans(),
)
def test_no_signal_on_flat_data(n_ticks, ticks_per_s, price, volume, with_book):
    window = make_flat_window(n_ticks=n_ticks, ticks_per_s=ticks_per_s, price=price, volume=volume, with_book=with_book)
    d = evaluate(window, DEFAULT_PARAMS, DEFAULT_NOW_MS, None, 0.00001)
    assert not d.is_signal


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), direction=st.sampled_from([None, 1, -1]), with_book=st.booleans())
def test_decisions_are_consistent(seed, direction, with_book):
    surge = PlantedSurge(direction=direction) if direction else None
    d = evaluate(make_market_window(seed=seed, surge=surge, with_book=with_book), DEFAULT_PARAMS, DEFAULT_NOW_MS, None, 0.00001)
    assert 0.0 <= d.strength <= 1.0
    assert d.is_signal == (d.exit is not None)
    if direction is None:  # a calm market never fires
        assert not d.is_signal
    if d.is_signal:  # a planted surge can only fire in its own direction
        assert d.side is (Side.BUY if direction == 1 else Side.SELL)
    else:
        assert d.strength == 0.0


@FAST
@given(
    side=st.sampled_from([Side.BUY, Side.SELL]),
    tick=st.sampled_from([0.00001, 0.0001, 0.001, 0.01, 0.25, 0.5, 1.0, 5.0]),
    entry_ticks=st.integers(1_000, 10_000_000),
    atr=st.one_of(st.just(float("nan")), st.floats(0, 1e3)),
)
def test_exit_prices_on_the_right_side_and_on_the_grid(side, tick, entry_ticks, atr):
    entry = entry_ticks * tick
    plan = exit_plan(side, entry, atr * tick, tick, DEFAULT_PARAMS)
    if side is Side.BUY:
        assert plan.stop_loss < plan.entry_price < plan.take_profit
    else:
        assert plan.take_profit < plan.entry_price < plan.stop_loss
    for price in (plan.stop_loss, plan.take_profit, plan.entry_price):
        assert abs(price / tick - round(price / tick)) < 1e-6
    assert abs(plan.stop_loss - plan.entry_price) >= DEFAULT_PARAMS.min_stop_ticks * tick * (1 - 1e-9)
