"""History loading: the source's closed bars (REST candles) reconciled with what Redis holds.

The one synchronous, read-then-write path of the feed's writer (rare: start-up, after a long gap or
a source restart): it drains the sink, reads the stored bars, decides with the pure
``bars.check_history`` whether they continue the source's history, and queues the result before
any later tick.
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tradeops.logging import get_logger

from . import redis_keys as keys
from .bars import Bar, HistoryCheck, check_history
from .feed_state import FeedState
from .sink import RedisSink

log = get_logger(__name__)


def load_history(state: FeedState, sink: RedisSink, symbol: str, bars: list[Bar], timeframe: str,
                 keep: int) -> HistoryCheck | None:
    """Put the source's closed history (REST candles, oldest first) into Redis, reconciled with
    what Redis already holds for ``symbol``. The source is authoritative for the minutes it
    covers: those stored bars are REPLACED (never appended behind newer ones); stored bars older
    than the history stay, and bars newer than it (live, rolled by this feed) stay after it.

    If the stored bars do not continue the source's history (``check_history``: the broker or
    simulator restarted on another price path, or the data is from an earlier run), every key
    of the symbol (ticks, tape, bars, forming bars, quote, book) is deleted first, a
    ``source_reset`` gap is recorded, and only the source's history remains: the analysis never
    sees a window mixing two markets.

    Synchronous (the writer thread, rare): drains what is pending, reads the stored bars, writes
    the result before any later tick. Returns None if Redis is unavailable (the caller retries).
    ``keep``: bytes of bars kept in Redis (the bar tape's trim length).
    """
    if not sink.flush():
        return None
    key = keys.bars(timeframe, symbol)
    try:
        stored = keys.decode_bars(sink.redis.get(key) or b"")
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        sink.unavailable(exc)
        return None
    bars = sorted(bars, key=lambda b: b.ts_ms)
    check = check_history(stored["ts_ms"], stored["close"], bars)
    st = state.sym(symbol)
    if check.joins or not len(stored):
        merged = merged_history(stored, bars)
    else:
        merged = b"".join(b.pack() for b in bars)
        state.reset_symbol(st, check, timeframe)
    state.queue("SET", key, merged[-keep:] if len(merged) > keep else merged)
    if bars:
        newest_kept = int(stored["ts_ms"][-1]) if check.joins and len(stored) else -1
        st.last_bar_ts[timeframe] = max(bars[-1].ts_ms, newest_kept)
    log.info("feed_history_loaded", symbol=symbol, timeframe=timeframe, bars=len(bars), stored=len(stored),
             overlap=check.overlap, mismatched=check.mismatched, joins=check.joins)
    sink.flush()  # now, before any tick ingested after this call (it stays queued if Redis fails)
    return check


def merged_history(stored, bars: list[Bar]) -> bytes:
    """Stored bars before the history + the history + stored bars after it (oldest first)."""
    if not bars:
        return stored.tobytes()
    first, last = bars[0].ts_ms, bars[-1].ts_ms
    ts = stored["ts_ms"]
    return stored[ts < first].tobytes() + b"".join(b.pack() for b in bars) + stored[ts > last].tobytes()
