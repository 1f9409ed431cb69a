"""Every analyzer is total: finite output in its documented range, or no signal with a reason,
whatever numbers reach it (NaN, infinities, negatives, absurd magnitudes). Hypothesis drives it."""

import dataclasses
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from marketdata.windows import BarWindow, BookSnapshot, TickWindow
from signals.analysis.indicators import compute_indicators
from signals.analysis.levels import support_resistance
from signals.analysis.orderbook import analyse_book, book_imbalance
from signals.analysis.synthetic import DEFAULT_NOW_MS, PlantedSurge, make_market_window
from signals.analysis.volume import analyse_volume
from signals.strategy import DEFAULT_PARAMS, Reason, evaluate

FAST = settings(max_examples=60, deadline=None)
BAD = [math.nan, math.inf, -math.inf, -1.0, -4.5, 0.0, 1e308]
anything = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(BAD))
anything_arrays = hnp.arrays(np.float64, st.integers(0, 12), elements=anything)


@FAST
@given(bids=anything_arrays, asks=anything_arrays, levels=st.integers(1, 10))
def test_imbalance_is_finite_and_in_range(bids, asks, levels):
    v = book_imbalance(bids, asks, levels)
    assert math.isfinite(v) and -1.0 <= v <= 1.0


def test_the_reported_cases():
    """An infinite ask size gave NaN, a negative size -4.5."""
    assert book_imbalance(np.array([1.0]), np.array([math.inf])) == 0.0 or -1.0 <= book_imbalance(
        np.array([1.0]), np.array([math.inf])) <= 1.0
    assert -1.0 <= book_imbalance(np.array([1.0]), np.array([-0.6])) <= 1.0


@FAST
@given(prices=anything_arrays, sizes=anything_arrays)
def test_book_features_total(prices, sizes):
    n = min(prices.shape[0], sizes.shape[0])
    book = BookSnapshot("X", DEFAULT_NOW_MS, prices[:n], sizes[:n], prices[:n][::-1].copy(), sizes[:n][::-1].copy())
    f = analyse_book(book)
    assert -1.0 <= f.imbalance <= 1.0
    assert np.isfinite(f.walls.prices).all() and np.isfinite(f.walls.sizes).all()
    for best in (f.best_bid, f.best_ask):
        assert math.isnan(best) or (math.isfinite(best) and best > 0)


def _poison(arr: np.ndarray, idx: np.ndarray, values: list) -> np.ndarray:
    out = arr.copy()
    for i, v in zip(idx, values):
        if out.shape[0]:
            out[int(i) % out.shape[0]] = v
    return out


@st.composite
def poisoned_windows(draw):
    seed = draw(st.integers(0, 5_000))
    surge = draw(st.sampled_from([None, 1, -1]))
    w = make_market_window(seed=seed, surge=PlantedSurge(direction=surge) if surge else None,
                           with_book=draw(st.booleans()), n_ticks=400, history_s=120)
    k = draw(st.integers(1, 6))
    t = w.ticks
    idx = draw(hnp.arrays(np.int64, k, elements=st.integers(0, 10_000)))
    field = draw(st.sampled_from(["price", "volume", "bid", "ask"]))
    vals = draw(st.lists(anything, min_size=k, max_size=k))
    ticks = dataclasses.replace(t, **{field: _poison(getattr(t, field), idx, vals)})
    bars_1s = w.bars_1s
    if draw(st.booleans()) and len(bars_1s):
        bars_1s = dataclasses.replace(bars_1s, volume=_poison(bars_1s.volume, idx, vals))
    bars_1m = w.bars_1m
    if draw(st.booleans()) and len(bars_1m):
        bars_1m = dataclasses.replace(bars_1m, close=_poison(bars_1m.close, idx, vals),
                                      high=_poison(bars_1m.high, idx[::-1], vals))
    book = w.book
    if book is not None and draw(st.booleans()):
        book = dataclasses.replace(book, ask_sizes=_poison(book.ask_sizes, idx, vals),
                                   bid_prices=_poison(book.bid_prices, idx, vals))
    return dataclasses.replace(w, ticks=ticks, bars_1s=bars_1s, bars_1m=bars_1m, book=book)


def _all_finite(features: dict) -> bool:
    return all(math.isfinite(v) for v in features.values() if isinstance(v, float))


@settings(max_examples=80, deadline=None)
@given(w=poisoned_windows())
def test_strategy_is_total_on_poisoned_windows(w):
    d = evaluate(w, DEFAULT_PARAMS, DEFAULT_NOW_MS, None, 0.00001)  # never raises
    assert isinstance(d.reason, Reason)
    assert math.isfinite(d.strength) and 0.0 <= d.strength <= 1.0
    assert _all_finite(d.features), d.features
    if d.is_signal:
        e = d.exit
        assert all(math.isfinite(x) and x > 0 for x in (e.entry_price, e.stop_loss, e.take_profit))


@FAST
@given(w=poisoned_windows(), recent_s=st.integers(2, 10))
def test_volume_total(w, recent_s):
    v = analyse_volume(w.ticks, w.bars_1s, DEFAULT_NOW_MS, recent_s=recent_s, baseline_s=100, min_baseline_s=5)
    for x in (v.ratio, v.zscore, v.recent_volume, v.recent_rate, v.baseline_rate, v.baseline_std,
              v.buy_volume, v.sell_volume, v.price_change):
        assert math.isfinite(x)
    assert 0.0 <= v.buy_ratio <= 1.0 and 0.0 <= v.strength <= 1.0 and v.direction in (-1, 0, 1)


@FAST
@given(vols=hnp.arrays(np.float64, 50, elements=st.floats(0, 1e308)))
def test_volume_overflow_is_neutral_not_infinite(vols):
    ts = DEFAULT_NOW_MS - 1 - np.arange(50, dtype=np.int64)[::-1] * 1_000
    price = np.full(50, 100.0)
    t = TickWindow("X", ts, price, price, price, vols, np.zeros(50, dtype=np.int8))
    v = analyse_volume(t, None, DEFAULT_NOW_MS, recent_s=5, baseline_s=40, min_baseline_s=5)
    assert math.isfinite(v.ratio) and math.isfinite(v.zscore) and math.isfinite(v.recent_rate)
    assert v.valid or (not v.is_surge and v.ratio == 0.0)


def test_one_nan_volume_does_not_silence_the_symbol():
    w = make_market_window(seed=3, surge=PlantedSurge(direction=1))
    clean = evaluate(w, DEFAULT_PARAMS, DEFAULT_NOW_MS, None, 0.00001)
    vol = w.ticks.volume.copy()
    vol[len(vol) // 2] = math.nan  # an old tick in the baseline
    poisoned = dataclasses.replace(w, ticks=dataclasses.replace(w.ticks, volume=vol))
    d = evaluate(poisoned, DEFAULT_PARAMS, DEFAULT_NOW_MS, None, 0.00001)
    assert d.reason == clean.reason and d.side == clean.side
    assert d.features["dropped_ticks"] == 1


def test_nan_last_price_does_not_raise():
    w = make_market_window(seed=4, surge=PlantedSurge(direction=-1))
    price = w.ticks.price.copy()
    price[-1] = math.nan
    d = evaluate(dataclasses.replace(w, ticks=dataclasses.replace(w.ticks, price=price)),
                 DEFAULT_PARAMS, DEFAULT_NOW_MS, None, 0.00001)
    assert d.reason != Reason.ANALYSIS_ERROR and _all_finite(d.features)


def test_all_ticks_bad_is_bad_data():
    w = make_market_window(seed=5)
    t = dataclasses.replace(w.ticks, price=np.full(len(w.ticks), math.nan))
    assert evaluate(dataclasses.replace(w, ticks=t), DEFAULT_PARAMS, DEFAULT_NOW_MS, None, 0.00001).reason == Reason.BAD_DATA


@FAST
@given(high=anything_arrays, low=anything_arrays, walls=anything_arrays, price=anything)
def test_levels_total(high, low, walls, price):
    n = min(high.shape[0], low.shape[0])
    lv = support_resistance(price, 0.01, high=high[:n], low=low[:n], wall_prices=walls)
    for x, d in ((lv.support, lv.support_ticks), (lv.resistance, lv.resistance_ticks)):
        assert math.isnan(x) or (math.isfinite(x) and math.isfinite(d) and d >= 0)


@FAST
@given(close=hnp.arrays(np.float64, st.integers(0, 60), elements=anything))
def test_indicators_total(close):
    n = close.shape[0]
    bars = BarWindow("X", "1m", np.arange(n, dtype=np.int64) * 60_000, close, close, close, close,
                     np.ones(n), np.zeros(n), np.zeros(n), np.ones(n, dtype=np.int64))
    ind = compute_indicators(bars)
    assert math.isnan(ind.rsi) or 0.0 <= ind.rsi <= 100.0
    for x in (ind.ema_fast, ind.ema_slow, ind.atr):
        assert math.isnan(x) or math.isfinite(x)


# --- price_change from the last price BEFORE the recent window (signals/ANALYSIS.md) --------------
def _ticks_from(ts, price):
    ts = np.asarray(ts, dtype=np.int64)
    price = np.asarray(price, dtype=np.float64)
    n = ts.shape[0]
    return TickWindow("X", ts, price, price, price, np.ones(n), np.zeros(n, dtype=np.int8))


def _bars_1s(ts_s, close):
    n = len(ts_s)
    c = np.asarray(close, dtype=np.float64)
    return BarWindow("X", "1s", np.asarray(ts_s, dtype=np.int64) * 1000, c, c, c, c, np.ones(n), np.zeros(n),
                     np.zeros(n), np.ones(n, dtype=np.int64))


def test_price_change_reference_before_window_when_tick_window_starts_inside_it():
    now = 1_700_000_010_500
    recent_start = (now // 1000 - 5 + 1) * 1000
    # the tick window starts 1 s INSIDE the recent window, the price having already moved 100 -> 101
    ticks = _ticks_from([recent_start + 1000, recent_start + 2000, now - 10], [101.0, 102.0, 103.0])
    bars = _bars_1s([recent_start // 1000 - 2, recent_start // 1000 - 1, recent_start // 1000 + 1],
                    [99.5, 100.0, 101.0])
    v = analyse_volume(ticks, bars, now, recent_s=5, baseline_s=20, min_baseline_s=1)
    assert v.price_change == 3.0  # 103 - 100 (the last 1 s close before the window), not 103 - 101
    # without bars, the first tick is the only reference there is
    assert analyse_volume(ticks, None, now, recent_s=5, baseline_s=20, min_baseline_s=1).price_change == 2.0
    # a tick before the window wins over the bars
    ticks2 = _ticks_from([recent_start - 1, recent_start + 1000, now - 10], [100.5, 101.0, 103.0])
    assert analyse_volume(ticks2, bars, now, recent_s=5, baseline_s=20, min_baseline_s=1).price_change == 2.5
