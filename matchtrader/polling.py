"""REST polling transport for the real Match-Trader Platform API (no public stream,
[doc §4](../docs/match-trader-api.md)).

Request budget ([doc §1](../docs/match-trader-api.md): 500 requests/minute per session [DOC S1]):
- quotes: ONE ``GET /quotations?symbols=A,B,C`` per cycle → ``60 / interval_s`` requests/min
  (60/min at the default 1 s, the web terminal's own rate [OBS S8]);
- candles: one ``GET /candles`` per symbol every ``candle_every_s`` → ``N * 60 / candle_every_s``/min.
``budget_per_min`` (default 300) is what market data may use, leaving the rest of the 500 for
trading on the same session. With the defaults and N symbols, ``candle_every_s`` is chosen as
``max(10, N * 60 / (300 - 60))`` — e.g. 10 symbols → 10 s (60 + 60 = 120 req/min);
100 symbols → 25 s (60 + 240 = 300 req/min). The client's own rate limiter still guards the total.

Quotes are deduplicated by ``timestampMs``: an unchanged quote is not emitted twice. A failed poll
emits ``GapEvent(reason="poll_failed")`` covering the time since the last good poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from tradeops.logging import get_logger

from . import protocol as P
from .errors import BrokerError, RateLimited
from .events import CandleEvent, GapEvent, MalformedFrame, QuoteEvent, TransportStats
from .transport import EventSink

log = get_logger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def candle_period(n_symbols: int, interval_s: float, budget_per_min: float, floor_s: float = 10.0) -> float:
    quotes_per_min = 60.0 / interval_s
    left = budget_per_min - quotes_per_min
    if left <= 0:
        raise ValueError(f"quote polling alone ({quotes_per_min:.0f}/min) exceeds the budget ({budget_per_min}/min)")
    return max(floor_s, n_symbols * 60.0 / left)


class PollingTransport:
    def __init__(self, client, interval_s: float = 1.0, candle_interval: str = "M1", *,
                 symbols: Iterable[str] = (), candle_every_s: float | None = None, budget_per_min: float = 300.0,
                 candles: bool = True):
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        if candle_interval not in P.INTERVAL_SECONDS:
            raise ValueError(f"candle_interval must be one of {P.INTERVALS}")
        self.client = client
        self.interval_s = interval_s
        self.candle_interval = candle_interval
        self.budget_per_min = budget_per_min
        self._fixed_candle_every = candle_every_s
        self.candles_enabled = candles
        self.stats = TransportStats()
        self._lock = threading.Lock()
        self._symbols: list[str] = sorted(set(symbols))
        self._last_quote_ts: dict[str, int] = {}
        self._last_candle: dict[str, tuple] = {}
        self._next_candles = 0.0
        candle_period(max(1, len(self._symbols)), interval_s, budget_per_min)  # validate the budget early

    @property
    def candle_every_s(self) -> float:
        if self._fixed_candle_every is not None:
            return self._fixed_candle_every
        return candle_period(max(1, len(self._symbols)), self.interval_s, self.budget_per_min)

    def requests_per_minute(self) -> float:
        n = len(self._symbols)
        return 60.0 / self.interval_s + (n * 60.0 / self.candle_every_s if self.candles_enabled else 0.0)

    def set_symbols(self, symbols: Iterable[str]) -> None:
        with self._lock:
            self._symbols = sorted(set(symbols))

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        last_ok = now_ms()
        next_t = time.monotonic()
        while not stop.is_set():
            with self._lock:
                symbols = list(self._symbols)
            wait_extra = 0.0
            if symbols:
                try:
                    self.poll_once(symbols, sink)
                    last_ok = now_ms()
                except BrokerError as e:
                    self.stats.gaps += 1
                    self.stats.extra["poll_failures"] = self.stats.extra.get("poll_failures", 0) + 1
                    sink(GapEvent("poll_failed", symbols, last_ok, now_ms()))
                    log.info("poll_failed", error=type(e).__name__, detail=str(e)[:200])
                    if isinstance(e, RateLimited):
                        wait_extra = e.retry_after
            next_t += self.interval_s
            delay = max(0.0, next_t - time.monotonic()) + wait_extra
            if wait_extra or delay == 0.0:
                next_t = time.monotonic() + delay
            stop.wait(delay)

    def poll_once(self, symbols: list[str], sink: EventSink) -> None:
        """One cycle: quotations for all symbols in one call, then candles if due. Raises BrokerError."""
        quotes = self.client.quotations(symbols, on_malformed=self._malformed(sink))
        recv = now_ms()
        self.stats.frames += 1
        for q in quotes:
            if self._last_quote_ts.get(q.symbol) == q.timestamp_ms:
                continue  # unchanged since the last poll
            self._last_quote_ts[q.symbol] = q.timestamp_ms
            sink(QuoteEvent(q.symbol, float(q.bid), float(q.ask), q.timestamp_ms, recv))
        if self.candles_enabled and time.monotonic() >= self._next_candles:
            self._next_candles = time.monotonic() + self.candle_every_s
            for sym in symbols:
                self._poll_candles(sym, sink)

    def _malformed(self, sink: EventSink, symbol: str | None = None):
        """A bad entry in a poll answer (NaN, negative price, missing field) becomes a
        ``MalformedFrame`` (counted and logged by the feed writer); the rest of the answer is used."""
        def report(entry, exc) -> None:
            self.stats.malformed += 1
            sym = entry.get(P.F_SYMBOL) if isinstance(entry, dict) else None
            sink(MalformedFrame(repr(entry)[:500], str(exc), now_ms(), sym if isinstance(sym, str) else symbol))
        return report

    def _poll_candles(self, symbol: str, sink: EventSink) -> None:
        size_ms = P.INTERVAL_SECONDS[self.candle_interval] * 1000
        last = self._last_candle.get(symbol)
        frm = last[0] if last else now_ms() - 3 * size_ms
        rows = self.client.candles(symbol, self.candle_interval, datetime.fromtimestamp(frm / 1000, tz=UTC),
                                   on_malformed=self._malformed(sink, symbol))
        recv = now_ms()
        self.stats.frames += 1
        for i, c in enumerate(rows):
            key = (c.time_ms, c.close, c.volume, c.high, c.low)
            if last is not None and (c.time_ms < last[0] or key == last):
                continue
            closed = i < len(rows) - 1
            sink(CandleEvent(symbol, self.candle_interval, c.time_ms, float(c.open), float(c.high), float(c.low),
                             float(c.close), float(c.volume), closed, recv))
            self._last_candle[symbol] = key
            last = key
