"""A tick stream known in advance, as numpy columns, and the windows over it: the engine's fast path.

Why: the per-event path (``backtest.windows.WindowBuilder`` fed one event at a time) costs ~6 µs
of Python per tick, more than the analysis itself. A backtest on bars knows its whole stream
before it starts, so everything the feed would compute tick by tick can be computed once with
numpy, and a window at "n events ingested" is a set of slices:

- tick records are the stream's own columns (a quote ``(ts, bid, ask, mid, 0, 0)``, a print
  ``(ts, last bid, last ask, price, volume, side)``: the ``WindowBuilder`` record);
- 1 s / 1 m bars follow ``marketdata.bars.BarRoller``'s rules exactly (epoch-aligned, OHLC over
  every tick's price, the tick rule for prints without a side, 1 m bars merged from closed 1 s
  bars, the forming bar the merge of the minute's closed 1 s bars and the forming 1 s bar). Sums
  are taken in the roller's order (a running sum restarted at each bar, one position of every bar
  per numpy step), so the floats are the roller's to the bit, not merely close;
- the reader's "n − 1 closed + forming" windows and the writer's "a rolled 1 m bar is kept only
  when newer than the last stored one" (history first).

Only for one symbol, time-ordered, quotes and prints (no depth): ``stream_from_events`` returns
None for anything else and the engine keeps the per-event path. ``tests/backtest/test_stream.py``
pins these windows to ``WindowBuilder``'s at every analysis pass, and the engine's two paths to the
same trades.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from marketdata.bars import MINUTE_MS, SECOND_MS, Bar
from marketdata.windows import BarWindow, MarketWindow, TickWindow
from matchtrader.events import QuoteEvent, TradeEvent

from .windows import READ_BARS_1M, READ_BARS_1S, READ_TICKS


@dataclass(frozen=True, slots=True)
class TickStream:
    """One symbol's quotes and trade prints in time order, one row per event."""

    symbol: str
    ts: np.ndarray  # int64, non-decreasing
    trade: np.ndarray  # bool: a trade print (else a quote)
    bid: np.ndarray  # float64: the quote's, or for a print the last quote's (NaN before any)
    ask: np.ndarray
    price: np.ndarray  # float64: the quote's mid, or the print's price
    volume: np.ndarray  # float64: 0 for a quote
    side: np.ndarray  # int8: the print's aggressor side (+1 / -1 / 0 unknown), 0 for a quote
    bar: np.ndarray  # int64: the source bar of each event

    def __len__(self) -> int:
        return len(self.ts)


def stream_from_events(events: Iterable) -> TickStream | None:
    """The columns of ``events`` (``event`` or ``(event, bar)``, as ``Engine.run`` takes them), or
    None when they are not a single time-ordered symbol of quotes and prints."""
    ts, trade, bid, ask, price, vol, side, bars = [], [], [], [], [], [], [], []
    symbol = None
    last_bid = last_ask = float("nan")
    for item in events:
        if type(item) is tuple:
            ev, b = item
        else:
            ev, b = item, (bars[-1] if bars else 0)
        cls = type(ev)
        if cls is QuoteEvent:
            last_bid, last_ask = ev.bid, ev.ask
            p, v, s, t = (ev.bid + ev.ask) * 0.5, 0.0, 0, False
        elif cls is TradeEvent:
            p, v, t = ev.price, ev.volume, True
            s = 1 if ev.side > 0 else (-1 if ev.side < 0 else 0)
        else:
            return None
        if symbol is None:
            symbol = ev.symbol
        elif ev.symbol != symbol or ev.ts_ms < ts[-1]:
            return None
        ts.append(ev.ts_ms)
        trade.append(t)
        bid.append(last_bid)
        ask.append(last_ask)
        price.append(p)
        vol.append(v)
        side.append(s)
        bars.append(b)
    if symbol is None:
        return None
    out = TickStream(symbol, np.array(ts, dtype=np.int64), np.array(trade, dtype=bool),
                     np.array(bid, dtype=np.float64), np.array(ask, dtype=np.float64),
                     np.array(price, dtype=np.float64), np.array(vol, dtype=np.float64),
                     np.array(side, dtype=np.int8), np.array(bars, dtype=np.int64))
    if not (np.isfinite(out.price).all() and np.isfinite(out.volume).all()):
        return None  # the roller's comparisons with NaN are order-dependent: the per-event path
    return out


def _segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal ``keys``: (start of each run, its length, run id of every row)."""
    n = len(keys)
    new = np.empty(n, dtype=bool)
    new[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    lengths = np.diff(np.append(starts, n))
    return starts, lengths, np.cumsum(new) - 1


_PAD = {np.maximum: -np.inf, np.minimum: np.inf, np.add: 0}
_LAYOUT: dict = {}  # the last runs' matrix layout, reused by the next accumulations over the same runs


def _running(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, op, first=None) -> np.ndarray:
    """``op`` accumulated along each run, in row order, restarted at each run's start (the running
    value as of every row), sequentially like the roller's ``+=`` (``ufunc.accumulate`` is a
    left-to-right loop, not a pairwise sum). ``first`` maps each run's first value (a bar that
    starts at 0.0 and adds). Runs are laid out as rows of a padded matrix when that stays small,
    else stepped one position of every run at a time."""
    n = len(values)
    width = int(lengths.max(initial=0))
    if n and len(starts) * width <= 4 * n + 4096:
        key = (id(starts), len(starts), n)
        flat = _LAYOUT.get(key)
        if flat is None or flat[0] is not starts:
            # each row's position in a (runs x width) matrix, row-major: run * width + offset in the run
            pos = np.arange(n) + np.repeat(np.arange(len(starts)) * width - starts, lengths)
            if len(_LAYOUT) >= 2:  # the tick runs and the minute runs of one stream: keep no more
                _LAYOUT.clear()
            flat = _LAYOUT[key] = (starts, pos)
        pos = flat[1]
        mat = np.full(len(starts) * width, _PAD[op], dtype=values.dtype)
        mat[pos] = values
        mat = mat.reshape(len(starts), width)
        if first is not None:
            mat[:, 0] = first(mat[:, 0])
        op.accumulate(mat, axis=1, out=mat)
        return mat.ravel()[pos]
    out = values.copy()
    if first is not None:
        out[starts] = first(values[starts])
    order = np.argsort(-lengths, kind="stable")
    s_sorted, l_sorted = starts[order], lengths[order]
    for j in range(1, width):
        live = s_sorted[: np.searchsorted(-l_sorted, -j, side="left")] + j  # runs longer than j
        out[live] = op(out[live - 1], values[live])
    return out


def _raw(cols) -> np.ndarray:
    """Bar columns (ts, open, high, low, close, volume, buy, sell, ticks) as one (9, n) block of
    raw 8-byte words (ts and ticks int64, the rest float64, each row one column), so that copying
    a whole bar is ONE numpy step on the words (bit-exact: an integer copy). Row views of the
    right dtype come from ``_row_views``."""
    n = len(cols[0])
    raw = np.empty((9, n), dtype=np.uint64)
    iv, fv = raw.view(np.int64), raw.view(np.float64)
    iv[0], iv[8] = cols[0], cols[8]
    for k in range(1, 8):
        fv[k] = cols[k]
    return raw


def _row_views(raw: np.ndarray) -> tuple:
    """The 9 rows of a ``_raw`` block as 1-D arrays of their own dtype (views)."""
    iv, fv = raw.view(np.int64), raw.view(np.float64)
    return (iv[0], *(fv[k] for k in range(1, 8)), iv[8])


def _zero_plus(v: np.ndarray) -> np.ndarray:
    return 0.0 + v  # a new bar starts at 0.0 and adds (so -0.0 becomes 0.0, as in the roller)


class StreamWindows:
    """``MarketWindow``s of a ``TickStream`` after its first ``n`` events, equal to what
    ``WindowBuilder`` holds after ingesting the same events."""

    def __init__(self, stream: TickStream, history: list[Bar] | None = None, reads: np.ndarray | None = None,
                 ticks: int = READ_TICKS, bars_1s: int = READ_BARS_1S, bars_1m: int = READ_BARS_1M):
        """``reads``: the event counts windows will be read at, when known (the engine's beats and
        wake-ups): the forming bars are then kept for those only (else for every event)."""
        self.stream = st = stream
        self.symbol = st.symbol
        self.read = (ticks, bars_1s, bars_1m)
        n = len(st)
        ts, price, vol = st.ts, st.price, st.volume
        # tick rule: the direction of the last price change over every tick, this one included
        direction = np.zeros(n, dtype=np.int8)
        if n > 1:
            d = np.sign(price[1:] - price[:-1]).astype(np.int8)
            at = np.where(d != 0, np.arange(1, n), 0)
            np.maximum.accumulate(at, out=at)
            direction[1:] = np.where(at > 0, d[np.maximum(at - 1, 0)], 0)
        eff = np.where(st.side != 0, st.side, direction)
        has = vol != 0
        buy = np.where(has & (eff > 0), vol, 0.0)
        sell = np.where(has & (eff < 0), vol, 0.0)
        sec = ts - ts % SECOND_MS
        starts, lengths, self.sec_id = _segments(sec)
        # the forming 1 s bar as of every tick
        f_high = _running(price, starts, lengths, np.maximum)
        f_low = _running(price, starts, lengths, np.minimum)
        f_vol = _running(vol, starts, lengths, np.add, _zero_plus)
        f_buy = _running(buy, starts, lengths, np.add, _zero_plus)
        f_sell = _running(sell, starts, lengths, np.add, _zero_plus)
        f_ticks = np.arange(n, dtype=np.int64) - starts[self.sec_id] + 1
        self.f1s = (sec, price[starts][self.sec_id], f_high, f_low, price, f_vol, f_buy, f_sell, f_ticks)
        # every 1 s bar (the last one may never close): its final values
        ends = starts + lengths - 1
        s_bars = [c[ends] for c in self.f1s]
        s_bars[0] = sec[starts]
        s_bars[1] = price[starts]
        # 1 m bars rolled from 1 s bars: running merge within each minute, as of every 1 s bar
        minute = s_bars[0] - s_bars[0] % MINUTE_MS
        m_starts, m_lengths, self.min_id = _segments(minute)
        m_run = (minute, s_bars[1][m_starts][self.min_id],
                 _running(s_bars[2], m_starts, m_lengths, np.maximum),
                 _running(s_bars[3], m_starts, m_lengths, np.minimum), s_bars[4],
                 _running(s_bars[5], m_starts, m_lengths, np.add),
                 _running(s_bars[6], m_starts, m_lengths, np.add),
                 _running(s_bars[7], m_starts, m_lengths, np.add),
                 _running(s_bars[8], m_starts, m_lengths, np.add))
        self.m_run = m_run
        self.m_first = np.zeros(len(starts), dtype=bool)  # 1 s bar opens its minute (no merged part before it)
        self.m_first[m_starts] = True
        m_ends = m_starts + m_lengths - 1
        rolled = [c[m_ends] for c in m_run]
        # history first (sorted, only increasing), then the rolled 1 m bars newer than it
        hist, last = [], -1
        for b in sorted(history or [], key=lambda b: b.ts_ms):
            if b.ts_ms > last:
                hist.append((b.ts_ms, b.open, b.high, b.low, b.close, b.volume, b.buy_volume, b.sell_volume, b.ticks))
                last = b.ts_ms
        self.hist_n = len(hist)
        self.g0 = int(np.searchsorted(rolled[0], last, side="right"))  # first rolled minute kept
        dtypes = (np.int64,) + (np.float64,) * 7 + (np.int64,)
        cols_1m = []
        for k, dt in enumerate(dtypes):
            h = np.array([row[k] for row in hist], dtype=dt)
            cols_1m.append(np.concatenate((h, rolled[k][self.g0:].astype(dt))))
        cols_1s = [c.astype(dt) for c, dt in zip(s_bars, dtypes)]
        # columns as raw (9, n) blocks (``_raw``) so that writing a bar is one numpy step: the
        # closed bars pristine, one bar per contiguous row (to put a bar back), plus a working
        # copy with a spare column where the forming bar is written (the windows' columns are
        # views of it)
        closed = {"1s": _raw(cols_1s), "1m": _raw(cols_1m)}
        self.n_closed = {tf: raw.shape[1] for tf, raw in closed.items()}
        self.closed_t = {tf: np.ascontiguousarray(raw.T) for tf, raw in closed.items()}
        self.work = {tf: np.concatenate((raw, np.zeros((9, 1), dtype=np.uint64)), axis=1)
                     for tf, raw in closed.items()}
        self.cols = {tf: _row_views(raw) for tf, raw in self.work.items()}
        self.last_ts = {tf: raw.view(np.int64)[0] for tf, raw in closed.items()}
        self._init_forming(reads)
        self.dirty: dict[str, int | None] = {"1s": None, "1m": None}
        self.cache: dict[str, tuple] = {"1s": (None, None), "1m": (None, None)}

    def _init_forming(self, reads) -> None:
        """The forming 1 s and 1 m bars after each count of events in ``reads`` (column j: after
        reads[j] events): the forming 1 s bar's running values at the last event, and the 1 m bar
        as the roller merges it (the minute's closed 1 s bars, then the forming 1 s bar)."""
        n = len(self.stream)
        if reads is None:
            reads = np.arange(1, n + 1)
        reads = np.unique(np.asarray(reads, dtype=np.int64))
        reads = reads[(reads >= 1) & (reads <= n)]
        self.read_col = {v: j for j, v in enumerate(reads.tolist())}
        at = reads - 1
        f1 = [c[at] for c in self.f1s]
        k_at = self.sec_id[at]
        prev = np.maximum(k_at - 1, 0)
        alone = self.m_first[k_at]
        mr = [c[prev] for c in self.m_run]
        fm = (f1[0] - f1[0] % MINUTE_MS,
              np.where(alone, f1[1], mr[1]),
              np.where(alone | (f1[2] > mr[2]), f1[2], mr[2]),
              np.where(alone | (f1[3] < mr[3]), f1[3], mr[3]),
              f1[4],
              np.where(alone, f1[5], mr[5] + f1[5]),
              np.where(alone, f1[6], mr[6] + f1[6]),
              np.where(alone, f1[7], mr[7] + f1[7]),
              np.where(alone, f1[8], mr[8] + f1[8]))
        # one read per contiguous row (read j's bar is ``forming[tf][j]``: 9 raw words)
        self.forming = {"1s": np.ascontiguousarray(_raw(f1).T), "1m": np.ascontiguousarray(_raw(fm).T)}
        if hasattr(self, "last_ts"):  # per read: closed counts and the rows a window ends at
            c1s = k_at
            c1m = self.hist_n + np.maximum(0, self.min_id[k_at] - self.g0)
            rows = []
            for tf, count, f_ts in (("1s", c1s, f1[0]), ("1m", c1m, fm[0])):
                last = self.last_ts[tf]
                last_closed = np.where(count > 0, last[np.maximum(count - 1, 0)] if len(last) else 0, 0)
                rows.append((count, np.where(f_ts > last_closed, count + 1, count)))
            # (1 s closed, 1 s rows, 1 m closed, 1 m rows, the last tick's time) per read
            self.read_rows = list(zip(*(c.tolist() for pair in rows for c in pair), self.stream.ts[at].tolist()))

    def _forming_at(self, n: int) -> dict:
        """The forming bars after ``n`` events, as one-row blocks (the same arithmetic as the
        announced reads, for one event)."""
        cache = getattr(self, "_one", None)
        if cache is not None and cache[0] == n:
            return cache[1]
        saved = (self.read_col, self.forming, self.read_rows)
        self._init_forming(np.array([n]))
        out = self.forming
        self.read_col, self.forming, self.read_rows = saved
        self._one = (n, out)
        return out

    def _counts(self, n: int) -> tuple[int, int]:
        """Closed 1 s and 1 m bars after ``n`` events."""
        if n == 0:
            return 0, self.hist_n
        k = int(self.sec_id[n - 1])  # the forming 1 s bar
        closed_min = int(self.min_id[k])  # minutes whose every 1 s bar closed
        return k, self.hist_n + max(0, closed_min - self.g0)

    def _restore(self, tf: str, count: int) -> None:
        """Put back the closed bar the last forming bar covered, unless that is row ``count``."""
        row = self.dirty[tf]
        if row != count:
            if row is not None and row < self.n_closed[tf]:
                self.work[tf][:, row] = self.closed_t[tf][row]
            self.dirty[tf] = None

    def _view(self, tf: str, hi: int, want: int) -> BarWindow:
        """The window of rows up to ``hi`` (views of the working block; cached while ``hi`` is)."""
        cached = self.cache[tf]
        if cached[0] == hi:  # same rows: the views already see the rewritten forming row
            return cached[1]
        lo = hi - want if hi > want else 0
        c = self.cols[tf]
        bw = BarWindow(self.symbol, tf, c[0][lo:hi], c[1][lo:hi], c[2][lo:hi], c[3][lo:hi], c[4][lo:hi],
                       c[5][lo:hi], c[6][lo:hi], c[7][lo:hi], c[8][lo:hi])
        self.cache[tf] = (hi, bw)
        return bw

    def _bar_window(self, tf: str, count: int, n: int, want: int) -> BarWindow:
        self._restore(tf, count)
        last_closed = int(self.last_ts[tf][count - 1]) if count else 0
        if n and want > 0:
            j = self.read_col.get(n)
            if j is None:  # a read not announced: compute this one (tests; the engine announces all)
                bar = self._forming_at(n)[tf][0]
            else:
                bar = self.forming[tf][j]
            if int(bar.view(np.int64)[0]) > last_closed:
                self.work[tf][:, count] = bar
                self.dirty[tf] = count
                hi = count + 1
            elif count:
                hi = count
            else:
                return BarWindow.empty(self.symbol, tf)
        elif count:
            hi = count
        else:
            return BarWindow.empty(self.symbol, tf)
        return self._view(tf, hi, want)

    def _rows(self, tf: str, j: int, count: int, hi: int, want: int) -> BarWindow:
        """``_bar_window`` for an announced read ``j`` (counts and rows precomputed)."""
        if hi == 0:
            return BarWindow.empty(self.symbol, tf)
        if self.dirty[tf] != count:
            self._restore(tf, count)
        if hi > count:
            self.work[tf][:, count] = self.forming[tf][j]
            self.dirty[tf] = count
        cached = self.cache[tf]
        if cached[0] == hi:  # same rows: the views already see the rewritten forming row
            return cached[1]
        return self._view(tf, hi, want)

    def window(self, n: int) -> MarketWindow:
        """The window after the first ``n`` events (views, valid until the next call)."""
        want_ticks, want_1s, want_1m = self.read
        j = self.read_col.get(n)
        if j is not None and want_1s > 0 and want_1m > 0:
            st = self.stream
            lo = max(0, n - want_ticks)
            c1s, h1s, c1m, h1m, last_ms = self.read_rows[j]
            return MarketWindow(self.symbol,
                                TickWindow(self.symbol, st.ts[lo:n], st.bid[lo:n], st.ask[lo:n], st.price[lo:n],
                                           st.volume[lo:n], st.side[lo:n]),
                                self._rows("1s", j, c1s, h1s, want_1s), self._rows("1m", j, c1m, h1m, want_1m), None,
                                last_ms)
        st = self.stream
        if n:
            lo = max(0, n - want_ticks)
            tw = TickWindow(self.symbol, st.ts[lo:n], st.bid[lo:n], st.ask[lo:n], st.price[lo:n], st.volume[lo:n],
                            st.side[lo:n])
        else:
            tw = TickWindow.empty(self.symbol)
        c1s, c1m = self._counts(n)
        return MarketWindow(self.symbol, tw, self._bar_window("1s", c1s, n, want_1s),
                            self._bar_window("1m", c1m, n, want_1m), None,
                            int(st.ts[n - 1]) if n else None)


class StreamBuilder:
    """The engine's window source on the fast path: the stream's symbol from ``StreamWindows`` at
    ``pos`` events ingested; any other symbol of the run has seen no event (its history only)."""

    def __init__(self, windows: StreamWindows, others: Mapping):
        self.stream_windows = windows
        self.others = others  # symbol -> backtest.windows.SymbolBook (history only)
        self.pos = 0

    def windows(self, symbols) -> dict[str, MarketWindow]:
        sw = self.stream_windows
        if len(symbols) == 1 and symbols[0] == sw.symbol:
            return {sw.symbol: sw.window(self.pos)}
        return {s: (sw.window(self.pos) if s == sw.symbol else self.others[s].window()) for s in symbols}
