"""Helpers of the analysis service/task tests: synthetic market windows replayed into the real
Redis through the feed's own writer (``marketdata.store.MarketDataWriter``), so the service reads
exactly what the feed would have written. The pytest fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import time
from decimal import Decimal

import numpy as np

from marketdata.bars import Bar
from marketdata.store import MarketDataWriter
from marketdata.windows import MarketWindow
from matchtrader.events import DepthEvent, QuoteEvent, TradeEvent
from signals.analysis.synthetic import PlantedSurge, make_market_window

TICK_SIZE = Decimal("0.00001")


def now_ms() -> int:
    return int(time.time() * 1000)


def window_events(w: MarketWindow) -> list:
    """The feed events that rebuild ``w`` in Redis: a quote whenever bid/ask change, then the
    trade print (venue side as generated: 0 = unknown, the tick rule decides), and the book."""
    t = w.ticks
    events: list = []
    last_quote = None
    ts, bid, ask, price, vol, side = (t.ts_ms.tolist(), t.bid.tolist(), t.ask.tolist(), t.price.tolist(),
                                      t.volume.tolist(), t.side.tolist())
    for i in range(len(t)):
        if (bid[i], ask[i]) != last_quote:
            events.append(QuoteEvent(w.symbol, bid[i], ask[i], ts[i], ts[i]))
            last_quote = (bid[i], ask[i])
        if vol[i] > 0:
            events.append(TradeEvent(w.symbol, price[i], vol[i], int(side[i]), ts[i], ts[i]))
    if w.book is not None:
        b = w.book
        events.append(DepthEvent(w.symbol, list(zip(b.bid_prices.tolist(), b.bid_sizes.tolist())),
                                 list(zip(b.ask_prices.tolist(), b.ask_sizes.tolist())), b.ts_ms, b.ts_ms))
    return events


def history_bars(w: MarketWindow) -> list[Bar]:
    """The 1 m bars closed before the tick window starts (the feed's REST warm-up)."""
    m = w.bars_1m
    first_minute = (int(w.ticks.ts_ms[0]) // 60_000) * 60_000 if len(w.ticks) else 2**62
    return [
        Bar(int(m.ts_ms[i]), float(m.open[i]), float(m.high[i]), float(m.low[i]), float(m.close[i]),
            float(m.volume[i]), float(m.buy_volume[i]), float(m.sell_volume[i]), int(m.ticks[i]))
        for i in np.flatnonzero(m.ts_ms < first_minute)
    ]


def write_windows(writer: MarketDataWriter, windows) -> None:
    """Replay synthetic windows into Redis as the feed would have written them."""
    for w in windows:
        writer.warmup_bars(w.symbol, history_bars(w), "1m")
        writer.ingest(window_events(w))
        if not writer.flush():
            raise RuntimeError("Redis unavailable")


class Market:
    """Writes synthetic symbols into the test Redis: ``market.surge("EURUSD")``, ``.calm(...)``."""

    def __init__(self, redis):
        self.redis = redis
        # One writer (one connection) for the whole test, as the feed has: a writer per window
        # would take a new pooled connection each time.
        self.writer = MarketDataWriter(redis)

    def close(self) -> None:
        self.writer.close()

    def clear(self) -> None:
        """Forget every market-data key (``md:*``) and start a new writer: a fresh feed. The
        analysis's own keys (cool-downs, locks) stay."""
        self.writer.close()
        for key in self.redis.scan_iter(match="md:*", count=1000):
            self.redis.delete(key)
        self.writer = MarketDataWriter(self.redis)

    def write(self, symbol: str, *, at_ms: int | None = None, **kw) -> MarketWindow:
        """A window whose newest tick is 200 ms before ``at_ms`` (default: now)."""
        kw.setdefault("history_s", 150)
        kw.setdefault("n_ticks", 2_000)
        w = make_market_window(symbol, now_ms=at_ms if at_ms is not None else now_ms(), **kw)
        write_windows(self.writer, [w])
        return w

    def surge(self, symbol: str, direction: int = 1, **kw) -> MarketWindow:
        return self.write(symbol, surge=PlantedSurge(direction=direction), **kw)

    def calm(self, symbol: str, **kw) -> MarketWindow:
        return self.write(symbol, **kw)
