"""Market windows built in memory from feed events: the backtest's stand-in for feed → Redis → reader.

The live analysis sees what ``marketdata.store.MarketDataWriter`` wrote and
``marketdata.reader.read_windows`` read back. This builder applies the SAME rules to the same
events (``matchtrader.events`` Quote/Trade/Depth), without Redis:

- a quote is a tick record ``(ts, bid, ask, mid, volume 0, side 0)``, rolled into bars at the mid;
  a trade print is ``(ts, last bid, last ask, price, volume, side)``, rolled at its price with its
  volume and side (``marketdata.bars.BarRoller``, the feed's own roller);
- a window is the last ``ticks`` records, the last closed 1 s / 1 m bars with the forming bar as
  the newest one (``n - 1`` closed + forming when a bar is forming, as the reader does), the
  latest book, and the newest tick's venue time;
- 1 m history (the feed's REST warm-up) goes in first with ``load_history``; a rolled 1 m bar is
  kept only when newer than the last stored one (the writer's rule).

Storage is preallocated numpy columns that double when full, so a window is a set of zero-copy
slices (the analysis is pure and never writes to them). The parity test
(tests/backtest/test_parity.py) pins this module against the live path.
"""

from __future__ import annotations

import math

import numpy as np

from marketdata.bars import Bar, BarRoller
from marketdata.windows import BarWindow, BookSnapshot, MarketWindow, TickWindow
from matchtrader.events import DepthEvent, QuoteEvent, TradeEvent

READ_TICKS = 2000  # marketdata.reader.read_windows defaults: what the live analysis asks for
READ_BARS_1S = 300
READ_BARS_1M = 200


class _Columns:
    """Growable numpy columns, one row per record. Rows are appended to a Python list (cheap per
    event) and moved into the arrays in one vectorised step when a window is read (once per
    analysis pass); one spare row is always free for the forming bar."""

    __slots__ = ("n", "cap", "cols", "pending")

    def __init__(self, dtypes: tuple, cap: int = 4096):
        self.n = 0
        self.cap = cap
        self.cols = [np.empty(cap, dtype=d) for d in dtypes]
        self.pending: list[tuple] = []

    def append(self, *values) -> None:
        self.pending.append(values)

    def flush(self) -> None:
        rows = self.pending
        if not rows:
            return
        k = len(rows)
        n = self.n
        if n + k + 1 > self.cap:
            while n + k + 1 > self.cap:
                self.cap *= 2
            self.cols = [np.concatenate((c[:n], np.empty(self.cap - n, dtype=c.dtype))) for c in self.cols]
        for c, values in zip(self.cols, zip(*rows)):
            c[n : n + k] = values
        self.n = n + k
        self.pending = []

    @property
    def count(self) -> int:
        return self.n + len(self.pending)

    def tail(self, k: int, extra: tuple | None = None) -> list[np.ndarray]:
        """The last ``k`` rows, plus ``extra`` written into the spare row after them (the forming
        bar): views, valid until the next read."""
        self.flush()
        n = self.n
        if extra is not None:
            for c, v in zip(self.cols, extra):
                c[n] = v
            n += 1
        lo = max(0, n - k)
        return [c[lo:n] for c in self.cols]


_TICK_DTYPES = (np.int64, np.float64, np.float64, np.float64, np.float64, np.int8)
_BAR_DTYPES = (np.int64,) + (np.float64,) * 7 + (np.int64,)


class SymbolBook:
    """One symbol's ticks, bars, quote and book, fed in event order."""

    __slots__ = ("symbol", "ticks", "bars", "roller", "bid", "ask", "book", "last_ts", "last_bar_ts")

    def __init__(self, symbol: str):
        self.symbol = symbol
        self.ticks = _Columns(_TICK_DTYPES)
        self.bars = {"1s": _Columns(_BAR_DTYPES, 1024), "1m": _Columns(_BAR_DTYPES, 256)}
        self.last_bar_ts = {"1s": -1, "1m": -1}
        self.roller = BarRoller()
        self.bid = math.nan
        self.ask = math.nan
        self.book: BookSnapshot | None = None
        self.last_ts: int | None = None

    def _closed(self, closed) -> None:
        for tf, bar in closed:
            if bar.ts_ms > self.last_bar_ts[tf]:
                self.bars[tf].append(bar.ts_ms, bar.open, bar.high, bar.low, bar.close, bar.volume,
                                     bar.buy_volume, bar.sell_volume, bar.ticks)
                self.last_bar_ts[tf] = bar.ts_ms

    def quote(self, ts: int, bid: float, ask: float) -> None:
        mid = (bid + ask) * 0.5
        self.ticks.pending.append((ts, bid, ask, mid, 0.0, 0))
        self.bid, self.ask, self.last_ts = bid, ask, ts
        closed = self.roller.update(ts, mid)
        if closed:
            self._closed(closed)

    def trade(self, ts: int, price: float, volume: float, side: int) -> None:
        self.ticks.pending.append((ts, self.bid, self.ask, price, volume, 1 if side > 0 else (-1 if side < 0 else 0)))
        self.last_ts = ts
        closed = self.roller.update(ts, price, volume, side)
        if closed:
            self._closed(closed)

    def depth(self, ts: int, bids, asks) -> None:
        self.book = BookSnapshot(self.symbol, ts, np.array([p for p, _ in bids], dtype=np.float64),
                                 np.array([s for _, s in bids], dtype=np.float64),
                                 np.array([p for p, _ in asks], dtype=np.float64),
                                 np.array([s for _, s in asks], dtype=np.float64))

    def load_history(self, bars: list[Bar], timeframe: str = "1m") -> None:
        for b in sorted(bars, key=lambda b: b.ts_ms):
            self._closed([(timeframe, b)])

    def _bar_window(self, tf: str, forming: Bar | None, n: int) -> BarWindow:
        store = self.bars[tf]
        last_closed = self.last_bar_ts[tf] if store.count else 0
        if forming is not None and forming.ts_ms > last_closed and n > 0:
            f = (forming.ts_ms, forming.open, forming.high, forming.low, forming.close, forming.volume,
                 forming.buy_volume, forming.sell_volume, forming.ticks)
            cols = store.tail(n, f)  # n - 1 closed + the forming one
        elif store.count:
            cols = store.tail(n)
        else:
            return BarWindow.empty(self.symbol, tf)
        return BarWindow(self.symbol, tf, *cols)

    def window(self, ticks: int = READ_TICKS, bars_1s: int = READ_BARS_1S, bars_1m: int = READ_BARS_1M) -> MarketWindow:
        if self.ticks.count:
            ts, bid, ask, price, vol, side = self.ticks.tail(ticks)
            tw = TickWindow(self.symbol, ts, bid, ask, price, vol, side)
        else:
            tw = TickWindow.empty(self.symbol)
        f1s, f1m = self.roller.forming() if self.roller.cur is not None else (None, None)
        return MarketWindow(self.symbol, tw, self._bar_window("1s", f1s, bars_1s),
                            self._bar_window("1m", f1m, bars_1m), self.book,
                            int(tw.ts_ms[-1]) if len(tw) else None)


class WindowBuilder:
    """All symbols: ``ingest(event)`` in feed order, ``window(symbol)`` at analysis time."""

    def __init__(self):
        self.books: dict[str, SymbolBook] = {}

    def book(self, symbol: str) -> SymbolBook:
        b = self.books.get(symbol)
        if b is None:
            b = self.books[symbol] = SymbolBook(symbol)
        return b

    def ingest(self, ev) -> SymbolBook | None:
        cls = type(ev)
        if cls is QuoteEvent:
            b = self.books.get(ev.symbol) or self.book(ev.symbol)
            b.quote(ev.ts_ms, ev.bid, ev.ask)
            return b
        if cls is TradeEvent:
            b = self.books.get(ev.symbol) or self.book(ev.symbol)
            b.trade(ev.ts_ms, ev.price, ev.volume, ev.side)
            return b
        if cls is DepthEvent:
            self.book(ev.symbol).depth(ev.ts_ms, ev.bids, ev.asks)
        return None

    def windows(self, symbols=None) -> dict[str, MarketWindow]:
        names = symbols if symbols is not None else list(self.books)
        return {s: self.book(s).window() for s in names}
