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

Cadence from the data session's budget (issue 16): the feed logs in with a DEDICATED data login
(``FEED_EMAIL``, never a trading account's — ``workers.feed.check_dedicated_data_login``), so
quote polling never competes with an account's order and position calls and the whole session
budget belongs to market data. ``interval_s=None`` derives both periods from
``budget_per_min`` (``FEED_DATA_BUDGET_PER_MIN``, default 450 = 90 % of the documented 500):
``cadence(n, budget)`` gives candles at most ``CANDLE_SHARE`` (20 %) of it, every symbol at least
every ``CANDLE_MIN_EVERY_S`` (30 s; a 1 m candle closes once a minute), and the rest to quotes,
one call per cycle, never faster than ``MIN_INTERVAL_S`` — 10 symbols: candles every 30 s
(20/min), quotes every 0.140 s (430/min); 100 symbols: candles every 66.7 s (90/min), quotes
every 0.167 s (360/min). The interval is recomputed when the symbol set changes. Latency floor
this gives a live account: a quote change is seen 0..interval after the broker stamps it
(half an interval on average) plus one HTTP round trip to the broker's API (README "Tick to trade").

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


CANDLE_SHARE = 0.2
CANDLE_MIN_EVERY_S = 30.0
MIN_INTERVAL_S = 0.1  # 600 calls/min: above any documented session budget anyway


def cadence(n_symbols: int, budget_per_min: float) -> tuple[float, float]:
    """(quote interval s, candle period s) that spend a dedicated data session's budget."""
    if budget_per_min <= 0:
        raise ValueError("budget_per_min must be > 0")
    n = max(1, n_symbols)
    candle_every = max(CANDLE_MIN_EVERY_S, n * 60.0 / (CANDLE_SHARE * budget_per_min))
    quotes_per_min = budget_per_min - n * 60.0 / candle_every
    return max(MIN_INTERVAL_S, 60.0 / quotes_per_min), candle_every


def candle_period(n_symbols: int, interval_s: float, budget_per_min: float, floor_s: float = 10.0) -> float:
    quotes_per_min = 60.0 / interval_s
    left = budget_per_min - quotes_per_min
    if left <= 0:
        raise ValueError(f"quote polling alone ({quotes_per_min:.0f}/min) exceeds the budget ({budget_per_min}/min)")
    return max(floor_s, n_symbols * 60.0 / left)


class PollingTransport:
    def __init__(self, client, interval_s: float | None = 1.0, candle_interval: str = "M1", *,
                 symbols: Iterable[str] = (), candle_every_s: float | None = None, budget_per_min: float = 300.0,
                 candles: bool = True):
        """``interval_s=None``: quote interval and candle period from ``budget_per_min`` (``cadence``)."""
        self.from_budget = interval_s is None
        if self.from_budget:
            interval_s, _ = cadence(len(set(symbols)), budget_per_min)
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
        if self.from_budget:
            return cadence(len(self._symbols), self.budget_per_min)[1]
        return candle_period(max(1, len(self._symbols)), self.interval_s, self.budget_per_min)

    def requests_per_minute(self) -> float:
        n = len(self._symbols)
        return 60.0 / self.interval_s + (n * 60.0 / self.candle_every_s if self.candles_enabled else 0.0)

    def set_symbols(self, symbols: Iterable[str]) -> None:
        with self._lock:
            self._symbols = sorted(set(symbols))
            if self.from_budget:
                self.interval_s = cadence(len(self._symbols), self.budget_per_min)[0]

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
