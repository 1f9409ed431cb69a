"""Pure bar rolling: ticks → 1 s OHLCV bars → 1 m OHLCV bars. No Redis, no clock.

Semantics (the numbers a test can compute by hand):

- A tick is ``(ts_ms, price, volume, side)``: a trade print (volume > 0) or a quote update
  (price = mid, volume = 0). OHLC runs over every tick's price; ``ticks`` counts them (tick
  volume); ``volume`` sums traded size.
- Bars are aligned on UTC epoch: a 1 s bar covers ``[t, t + 1000)``, a 1 m bar ``[t, t + 60000)``,
  ``ts_ms`` is the open time. Time is the venue's (``ts_ms``), never the wall clock, so a bar
  closes when the first tick of a later bar arrives; a quiet period leaves no empty bars.
- A tick older than the forming bar (venue clock skew between quote and trade frames) is folded
  into the forming bar rather than reopening a closed one: closed bars are final.
- Buy/sell split: the print's aggressor side when the source says it; otherwise the tick rule —
  the direction of the last price change over all ticks (an uptick → buy, a downtick → sell,
  a zero tick carries the last direction). With no direction yet the volume counts in ``volume``
  but in neither side.
- 1 m bars are rolled from closed 1 s bars (cheaper per tick, and the two always agree); the
  forming 1 m bar is the merge of the minute's closed 1 s bars and the forming 1 s bar.
"""

from __future__ import annotations

from dataclasses import dataclass

from .redis_keys import BAR

SECOND_MS = 1_000
MINUTE_MS = 60_000


@dataclass(slots=True)
class Bar:
    ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    buy_volume: float = 0.0
    sell_volume: float = 0.0
    ticks: int = 0

    def pack(self) -> bytes:
        return BAR.pack(
            self.ts_ms, self.open, self.high, self.low, self.close,
            self.volume, self.buy_volume, self.sell_volume, self.ticks,
        )

    def copy(self, ts_ms: int | None = None) -> "Bar":
        return Bar(
            self.ts_ms if ts_ms is None else ts_ms, self.open, self.high, self.low, self.close,
            self.volume, self.buy_volume, self.sell_volume, self.ticks,
        )

    def absorb(self, later: "Bar") -> None:
        """Merge a later bar of the same period into this one (in place)."""
        if later.high > self.high:
            self.high = later.high
        if later.low < self.low:
            self.low = later.low
        self.close = later.close
        self.volume += later.volume
        self.buy_volume += later.buy_volume
        self.sell_volume += later.sell_volume
        self.ticks += later.ticks


def merged(first: Bar | None, later: Bar | None, ts_ms: int) -> Bar | None:
    """A new bar opened at ``ts_ms`` combining ``first`` then ``later`` (either may be None)."""
    if first is None:
        return None if later is None else later.copy(ts_ms)
    out = first.copy(ts_ms)
    if later is not None:
        out.absorb(later)
    return out


class BarRoller:
    """Rolls one symbol's ticks into 1 s and 1 m bars. Feed ticks in arrival order.

    ``update`` returns ``None`` (the common case, no allocation) or a list of ``(timeframe, Bar)``
    closed by this tick, oldest first. ``forming()`` returns the forming (1 s, 1 m) bars.
    """

    __slots__ = ("small_ms", "big_ms", "cur", "cur_end", "minute", "last_price", "direction")

    def __init__(self, small_ms: int = SECOND_MS, big_ms: int = MINUTE_MS):
        if big_ms % small_ms:
            raise ValueError("the big period must be a multiple of the small one")
        self.small_ms = small_ms
        self.big_ms = big_ms
        self.cur: Bar | None = None  # forming small bar
        self.cur_end = -(2**62)
        self.minute: Bar | None = None  # closed small bars of the forming big bar, merged
        self.last_price: float | None = None
        self.direction = 0  # tick-rule state: +1 up, -1 down, 0 none yet

    def update(self, ts_ms: int, price: float, volume: float = 0.0, side: int = 0):
        # tick rule over every tick's price
        last = self.last_price
        if last is not None:
            if price > last:
                self.direction = 1
            elif price < last:
                self.direction = -1
        self.last_price = price

        closed = None
        cur = self.cur
        if ts_ms >= self.cur_end:
            closed = self._open(ts_ms, price)
            cur = self.cur
        else:
            if price > cur.high:
                cur.high = price
            elif price < cur.low:
                cur.low = price
            cur.close = price
        cur.ticks += 1
        if volume:
            cur.volume += volume
            if not side:
                side = self.direction
            if side > 0:
                cur.buy_volume += volume
            elif side < 0:
                cur.sell_volume += volume
        return closed

    def _open(self, ts_ms: int, price: float):
        closed = []
        cur = self.cur
        big = self.big_ms
        if cur is not None:
            closed.append(("1s", cur))
            if self.minute is None:
                self.minute = cur.copy(cur.ts_ms - cur.ts_ms % big)
            else:
                self.minute.absorb(cur)
        start = ts_ms - ts_ms % self.small_ms
        if self.minute is not None and start >= self.minute.ts_ms + big:
            closed.append(("1m", self.minute))
            self.minute = None
        self.cur = Bar(start, price, price, price, price)
        self.cur_end = start + self.small_ms
        return closed or None

    def forming(self) -> tuple[Bar | None, Bar | None]:
        cur = self.cur
        if cur is None:
            return None, self.minute
        big_start = cur.ts_ms - cur.ts_ms % self.big_ms
        return cur, merged(self.minute, cur, big_start)


def roll(ticks, small_ms: int = SECOND_MS, big_ms: int = MINUTE_MS):
    """Convenience for tests and back-fills: roll an iterable of ``(ts_ms, price, volume, side)``.

    Returns ``(closed_1s, closed_1m, forming_1s, forming_1m)``.
    """
    roller = BarRoller(small_ms, big_ms)
    out = {"1s": [], "1m": []}
    for t in ticks:
        closed = roller.update(*t)
        if closed:
            for tf, bar in closed:
                out[tf].append(bar)
    f1s, f1m = roller.forming()
    return out["1s"], out["1m"], f1s, f1m


@dataclass(frozen=True, slots=True)
class HistoryCheck:
    """Whether a source's closed bars continue the bars already stored (see ``check_history``)."""

    joins: bool
    overlap: int  # compared minutes: held on both sides, the newest ones only
    mismatched: int  # of those, how many closes differ by more than ``tolerance``
    tolerance: float
    stored_close: float | None  # newest stored close (for the log)
    source_close: float | None  # the source's close at the same minute, or its first open


def check_history(stored_ts, stored_close, source: list[Bar], *, tolerance_ranges: float = 3.0,
                  rel_floor: float = 1e-4, max_mismatch_share: float = 0.2, newest: int = 10) -> HistoryCheck:
    """Do the source's bars (the broker's REST candles, oldest first) describe the same price path
    as the stored ones (``stored_ts``/``stored_close``: int64/float64 arrays, oldest first)?

    Why: Redis outlives the processes. After the broker (or the simulator, which restarts from its
    seed) restarts, the bars in Redis belong to another price path; appending the new history and
    ticks behind them gives the analysis a window mixing two markets (EMAs, levels and ATR from
    one, the live quote from the other).

    Rule: look at the newest ``newest`` minutes both sides hold (two paths from one seed start
    alike and drift apart: they would join at the newest end). The newest of them must agree, and
    all but ``max_mismatch_share`` of the others. Agree = the closes differ by at most
    ``tolerance_ranges`` x the source's median bar range, and at least ``rel_floor`` x price (the
    feed rolls its own bars from mids, the broker's candles are bids). No common minute at all
    (the stored bars end before the source's history starts) does not join; nothing stored does.
    """
    n = len(stored_ts)
    if not source:
        return HistoryCheck(True, 0, 0, 0.0, float(stored_close[-1]) if n else None, None)
    if n == 0:
        return HistoryCheck(True, 0, 0, 0.0, None, source[-1].close)
    ranges = sorted(b.high - b.low for b in source)
    closes = sorted(b.close for b in source)
    tol = max(tolerance_ranges * ranges[len(ranges) // 2], rel_floor * abs(closes[len(closes) // 2]))
    by_ts = {b.ts_ms: b.close for b in source}
    pairs = [(close, by_ts[ts]) for ts, close in zip(stored_ts.tolist(), stored_close.tolist()) if ts in by_ts]
    pairs = pairs[-newest:]
    overlap = len(pairs)
    mismatched = sum(1 for a, b in pairs if abs(a - b) > tol)
    last_pair = pairs[-1] if pairs else (float(stored_close[-1]), source[0].open)
    newest_agrees = bool(pairs) and abs(pairs[-1][0] - pairs[-1][1]) <= tol  # where the two would join
    joins = overlap > 0 and newest_agrees and mismatched <= max_mismatch_share * overlap
    return HistoryCheck(joins, overlap, mismatched, tol, last_pair[0], last_pair[1])
