"""Indicators are TA-Lib's values, unchanged; too little history gives NaN."""

import math

import numpy as np
import talib

from marketdata.windows import BarWindow
from signals.analysis.indicators import atr, compute_indicators, ema, rsi


def bars(n, seed=1):
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 0.5, n))
    high = close + rng.uniform(0, 0.5, n)
    low = close - rng.uniform(0, 0.5, n)
    z = np.zeros(n)
    return BarWindow("T", "1m", np.arange(n, dtype=np.int64) * 60_000, close, high, low, close, z + 1, z, z, np.ones(n, dtype=np.int64))


def test_values_are_talib_unchanged():
    b = bars(120)
    ind = compute_indicators(b, rsi_period=14, ema_fast=9, ema_slow=21, atr_period=14)
    assert ind.rsi == talib.RSI(b.close, timeperiod=14)[-1]
    assert ind.ema_fast == talib.EMA(b.close, timeperiod=9)[-1]
    assert ind.ema_slow == talib.EMA(b.close, timeperiod=21)[-1]
    assert ind.atr == talib.ATR(b.high, b.low, b.close, timeperiod=14)[-1]
    assert ind.complete


def test_array_helpers_match_talib_and_accept_non_contiguous_input():
    b = bars(80)
    strided = np.repeat(b.close, 2)[::2]  # a non-contiguous view
    np.testing.assert_array_equal(rsi(strided, 7), talib.RSI(b.close, timeperiod=7))
    np.testing.assert_array_equal(ema(b.close, 5), talib.EMA(b.close, timeperiod=5))
    np.testing.assert_array_equal(atr(b.high, b.low, b.close, 5), talib.ATR(b.high, b.low, b.close, timeperiod=5))


def test_too_short_history_is_nan():
    # RSI(14) needs 15 closes, EMA(21) 21 closes, ATR(14) 15 bars: 10 bars give none of them
    ind = compute_indicators(bars(10))
    assert math.isnan(ind.rsi) and math.isnan(ind.ema_slow) and math.isnan(ind.atr)
    assert not math.isnan(ind.ema_fast)  # EMA(9) is defined from the 9th close
    assert not ind.complete


def test_no_bars_is_all_nan():
    ind = compute_indicators(BarWindow.empty("T", "1m"))
    assert not ind.complete
    assert all(math.isnan(v) for v in (ind.rsi, ind.ema_fast, ind.ema_slow, ind.atr))
