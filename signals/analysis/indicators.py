"""TA-Lib indicators on 1 m bars. Values are TA-Lib's, unchanged; NaN means "not enough history"."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import talib

from marketdata.windows import BarWindow


def _f64(values: np.ndarray) -> np.ndarray:
    """TA-Lib wants C-contiguous float64."""
    return np.ascontiguousarray(values, dtype=np.float64)


def _last(values: np.ndarray) -> float:
    return float(values[-1]) if values.shape[0] else math.nan


@dataclass(frozen=True, slots=True)
class Indicators:
    """Latest value of each indicator; NaN when the bars are too few for its period."""

    rsi: float
    ema_fast: float
    ema_slow: float
    atr: float

    @property
    def complete(self) -> bool:
        return not any(math.isnan(v) for v in (self.rsi, self.ema_fast, self.ema_slow, self.atr))


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    return talib.RSI(_f64(close), timeperiod=period)


def ema(close: np.ndarray, period: int) -> np.ndarray:
    return talib.EMA(_f64(close), timeperiod=period)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    return talib.ATR(_f64(high), _f64(low), _f64(close), timeperiod=period)


def compute_indicators(
    bars: BarWindow, *, rsi_period: int = 14, ema_fast: int = 9, ema_slow: int = 21, atr_period: int = 14
) -> Indicators:
    """RSI, fast/slow EMA of close and ATR of the given bars (the last bar included as it is).

    Total: bars whose high, low or close is not a finite price > 0 are left out; a value that
    still comes out non-finite (overflow) is NaN, i.e. "not available"."""
    if len(bars) == 0:
        return Indicators(math.nan, math.nan, math.nan, math.nan)
    high, low, close = _f64(bars.high), _f64(bars.low), _f64(bars.close)
    with np.errstate(invalid="ignore"):
        good = (high > 0) & (high < np.inf) & (low > 0) & (low < np.inf) & (close > 0) & (close < np.inf)
    if not good.all():
        high, low, close = _f64(high[good]), _f64(low[good]), _f64(close[good])
    if close.shape[0] == 0:
        return Indicators(math.nan, math.nan, math.nan, math.nan)
    return Indicators(
        rsi=_finite(_last(rsi(close, rsi_period))),
        ema_fast=_finite(_last(ema(close, ema_fast))),
        ema_slow=_finite(_last(ema(close, ema_slow))),
        atr=_finite(_last(atr(high, low, close, atr_period))),
    )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.nan
