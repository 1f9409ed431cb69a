"""Columnar market-data windows: what the feed's reader returns and the analysis consumes.

Contract between ``marketdata.reader`` (reads Redis) and ``signals.analysis`` (pure functions).
All arrays of one window have the same length, oldest first. Times are epoch milliseconds, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMPTY_F = np.empty(0, dtype=np.float64)
EMPTY_I = np.empty(0, dtype=np.int64)


@dataclass(slots=True)
class TickWindow:
    """Last N ticks of one symbol. A tick is a quote update or a trade print.

    ``price`` is the trade price for prints, else the mid. ``volume`` is the traded size (0 for a
    pure quote update). ``side`` is +1 buy-aggressor, -1 sell-aggressor, 0 unknown (the analysis
    then infers it with the tick rule).
    """

    symbol: str
    ts_ms: np.ndarray  # int64
    bid: np.ndarray  # float64
    ask: np.ndarray  # float64
    price: np.ndarray  # float64
    volume: np.ndarray  # float64
    side: np.ndarray  # int8

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    @classmethod
    def empty(cls, symbol: str) -> "TickWindow":
        return cls(symbol, EMPTY_I, EMPTY_F, EMPTY_F, EMPTY_F, EMPTY_F, np.empty(0, dtype=np.int8))


@dataclass(slots=True)
class BarWindow:
    """Last N OHLCV bars of one symbol and timeframe ("1s", "1m"). ``buy_volume`` and
    ``sell_volume`` split ``volume`` by aggressor side (known or tick-rule inferred)."""

    symbol: str
    timeframe: str
    ts_ms: np.ndarray  # int64, bar open time
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    buy_volume: np.ndarray
    sell_volume: np.ndarray
    ticks: np.ndarray  # int64, number of ticks in the bar

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    @classmethod
    def empty(cls, symbol: str, timeframe: str) -> "BarWindow":
        return cls(symbol, timeframe, EMPTY_I, *([EMPTY_F] * 7), EMPTY_I)


@dataclass(slots=True)
class BookSnapshot:
    """Latest depth of one symbol, best levels first. Absent (None) where the source has no book."""

    symbol: str
    ts_ms: int
    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray


@dataclass(slots=True)
class MarketWindow:
    """Everything the analysis needs for one symbol, read in one Redis round trip."""

    symbol: str
    ticks: TickWindow
    bars_1s: BarWindow
    bars_1m: BarWindow
    book: BookSnapshot | None
    last_tick_ms: int | None  # venue time of the newest tick, for staleness and latency
