"""Fast reads of live market data for the analysis: all symbols' windows in ONE round trip.

``read_windows(redis, symbols)`` sends, for every symbol, a ``GETRANGE`` of the tick tape and of
the two bar tapes, then one ``MGET`` of every forming-bar and book key — packed as one RESP
buffer and written to the socket at once — then turns each reply into numpy arrays with one
``np.frombuffer`` and one transposing copy (no per-tick Python objects). Measured on the 2-core CI machine:
100 symbols × 2,000 ticks (+300 1 s and 200 1 m bars) in well under 20 ms (see
``bench/feed_ingest.py``).

Why the commands are packed (``marketdata.resp``, shared with the feed's writer) rather than sent
with ``redis.pipeline()``: redis-py spends ~15 µs of Python per queued command; for 300 commands
that alone is 4-5 ms of a 20 ms budget. The connection (and its hiredis reply parser, auth,
reconnect) is still redis-py's, taken from the client's pool.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from . import redis_keys as keys
from .resp import command, round_trip
from .windows import BarWindow, BookSnapshot, MarketWindow, TickWindow

_PER_SYMBOL = 3  # GETRANGE of tape, bars 1s, bars 1m; then ONE MGET of every forming bar and book


def _tail_cmd(key: str, nbytes: int) -> bytes:
    if nbytes <= 0:
        return command(b"GET", b"md:__none__")  # GETRANGE k -0 -1 would return the whole string
    return command(b"GETRANGE", key.encode(), b"-%d" % nbytes, b"-1")


def _bars(symbol: str, timeframe: str, closed_raw: bytes, forming: bytes | None, n: int) -> BarWindow:
    words = keys.BAR_WORDS
    size = keys.BAR.size
    usable = len(closed_raw) - len(closed_raw) % size
    rows = np.frombuffer(closed_raw, dtype="<f8", offset=len(closed_raw) - usable).reshape(-1, words)
    if forming is not None and n > 0:
        forming_ts = keys.BAR.unpack_from(forming, 0)[0]
        last_closed = int(rows[-1, :1].view("<i8")[0]) if len(rows) else 0
        if forming_ts > last_closed:  # still forming: it is the newest bar, n - 1 closed ones before it
            k = min(len(rows), n - 1)
            m = np.empty((words, k + 1))
            if k:
                m[:, :k] = rows[len(rows) - k :].T
            m[:, k] = np.frombuffer(forming, dtype="<f8", count=words)
            return _bar_window(symbol, timeframe, m)
    if len(rows) > n:
        rows = rows[len(rows) - n :]
    if not len(rows):
        return BarWindow.empty(symbol, timeframe)
    return _bar_window(symbol, timeframe, rows.T.copy())


def _bar_window(symbol: str, timeframe: str, m: np.ndarray) -> BarWindow:
    """(9, n) C-contiguous matrix, one row per BAR field → BarWindow of contiguous row views."""
    return BarWindow(symbol, timeframe, m[0].view("<i8"), m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8].view("<i8"))


def _ticks(symbol: str, raw: bytes) -> TickWindow:
    m = keys.columns(raw, keys.TICK_WORDS)
    if not m.shape[1]:
        return TickWindow.empty(symbol)
    word = m[0].view("<i8")
    side = (word & 3).astype(np.int8)
    side -= 1
    return TickWindow(symbol, word >> 2, m[1], m[2], m[3], m[4], side)


def _book(symbol: str, raw: bytes | None) -> BookSnapshot | None:
    if not raw:
        return None
    ts, bp, bs, ap, asz = keys.decode_book(raw)
    return BookSnapshot(symbol, ts, bp, bs, ap, asz)


@functools.lru_cache(maxsize=64)
def _request(names: tuple[str, ...], ticks: int, bars_1s: int, bars_1m: int) -> bytes:
    """The packed commands of one read (cached: the analysis asks the same thing every second)."""
    tick_bytes = ticks * keys.TICK.size
    b1s = bars_1s * keys.BAR.size
    b1m = bars_1m * keys.BAR.size
    parts = []
    small = []
    for s in names:
        parts.append(_tail_cmd(keys.tape(s), tick_bytes))
        parts.append(_tail_cmd(keys.bars("1s", s), b1s))
        parts.append(_tail_cmd(keys.bars("1m", s), b1m))
        small += [keys.forming_bars(s).encode(), keys.book(s).encode()]
    parts.append(command(b"MGET", *small))
    return b"".join(parts)


def read_windows(
    redis,
    symbols: Iterable[str],
    ticks: int = 2000,
    bars_1s: int = 300,
    bars_1m: int = 200,
    *,
    include_forming: bool = True,
) -> dict[str, MarketWindow]:
    """Last ``ticks`` ticks, last ``bars_1s``/``bars_1m`` bars (the forming bar included as the
    newest one unless ``include_forming=False``) and the latest book of every symbol, oldest
    first, in one round trip. A symbol with no data gets empty windows and ``book=None``.

    Works with any redis-py client on the feed's database (replies are read undecoded, so
    ``decode_responses=True`` clients are fine too).
    """
    names = list(dict.fromkeys(symbols))
    if not names:
        return {}
    replies = round_trip(redis, _request(tuple(names), ticks, bars_1s, bars_1m), _PER_SYMBOL * len(names) + 1)
    small = replies[-1]
    out: dict[str, MarketWindow] = {}
    for i, s in enumerate(names):
        tape_raw, r1s, r1m = replies[i * _PER_SYMBOL : (i + 1) * _PER_SYMBOL]
        forming, book_raw = small[2 * i], small[2 * i + 1]
        f1s = f1m = None
        if include_forming and forming and len(forming) >= 2 * keys.BAR.size:
            f1s = forming[: keys.BAR.size]
            f1m = forming[keys.BAR.size : 2 * keys.BAR.size]
        tw = _ticks(s, tape_raw or b"") if ticks > 0 else TickWindow.empty(s)
        out[s] = MarketWindow(
            symbol=s,
            ticks=tw,
            bars_1s=_bars(s, "1s", r1s or b"", f1s, bars_1s),
            bars_1m=_bars(s, "1m", r1m or b"", f1m, bars_1m),
            book=_book(s, book_raw),
            last_tick_ms=int(tw.ts_ms[-1]) if len(tw) else None,
        )
    return out


def read_quotes(redis, symbols: Iterable[str]) -> dict[str, dict]:
    """Latest quote per symbol: ``{"bid": float, "ask": float, "ts_ms": int, "recv_ms": int}``;
    symbols never quoted are absent. One round trip."""
    names = list(dict.fromkeys(symbols))
    pipe = redis.pipeline(transaction=False)
    for s in names:
        pipe.hgetall(keys.quote(s))
    out = {}
    for s, raw in zip(names, pipe.execute()):
        if not raw:
            continue
        d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        out[s] = {"bid": float(d["bid"]), "ask": float(d["ask"]), "ts_ms": int(d["ts_ms"]),
                  "recv_ms": int(d["recv_ms"])}
    return out


def tick_times(window: TickWindow) -> np.ndarray:
    """Tick venue times as numpy datetime64[ms] (UTC), for display and pandas."""
    return window.ts_ms.astype("datetime64[ms]")
