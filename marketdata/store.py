"""The feed's writer: market events in, pipelined Redis writes out (layout in ``redis_keys``).

``MarketDataWriter`` is the composition of three parts, each along one seam:

- ``marketdata.feed_state.FeedState`` — ``ingest(events)``: pure in-memory work per event (pack
  the tick record once, roll bars, keep the latest quote/book, count health). No I/O.
- ``marketdata.sink.RedisSink`` — ``flush()``: encode everything pending since the last flush
  into ONE buffer of RESP commands (``marketdata.resp``, shared with the reader) and send it in
  one round trip; a bounded buffer while Redis is away, at-least-once delivery.
- ``marketdata.history.load_history`` — the source's REST history reconciled with Redis.

The feed worker (``workers.feed``), the tests and the benches use this one object; its hot path
is the parts' own bound methods (no extra call per event or per batch).
"""

from __future__ import annotations

from . import history
from .bars import Bar, HistoryCheck
from .feed_state import FeedState
from .redis_keys import BAR
from .sink import RedisSink

__all__ = ["MarketDataWriter"]


def _state_attr(name: str) -> property:
    return property(lambda self: getattr(self.state, name), lambda self, v: setattr(self.state, name, v))


def _sink_attr(name: str) -> property:
    return property(lambda self: getattr(self.sink, name))


class MarketDataWriter:
    """Single-threaded writer (the feed's writer thread owns it)."""

    def __init__(
        self,
        redis,
        *,
        stream_maxlen: int = 20_000,
        tape_len: int = 5_000,
        bars_1s_len: int = 3_600,
        bars_1m_len: int = 1_440,
        gaps_maxlen: int = 10_000,
        buffer_max_ticks: int = 500_000,
        transport_name: str = "",
        malformed_log_per_min: int = 30,
    ):
        self.bars_trim = {
            "1s": (2 * bars_1s_len * BAR.size, bars_1s_len * BAR.size),
            "1m": (2 * bars_1m_len * BAR.size, bars_1m_len * BAR.size),
        }
        self.state = FeedState(gaps_maxlen=gaps_maxlen, transport_name=transport_name,
                               malformed_log_per_min=malformed_log_per_min)
        self.sink = RedisSink(redis, self.state, stream_maxlen=stream_maxlen, tape_len=tape_len,
                              bars_trim=self.bars_trim, buffer_max_ticks=buffer_max_ticks)
        self.redis = redis
        # the hot path: the parts' bound methods, no indirection
        self.ingest = self.state.ingest
        self.flush = self.sink.flush
        self.encode = self.sink.encode
        self.warmup_bars = self.state.warmup_bars
        self.resync_done = self.state.resync_done
        self.set_subscribed = self.state.set_subscribed
        self.close = self.sink.close

    # figures and hooks of the state (the feed sets ``connection_state`` to "stopped" on exit)
    on_gap = _state_attr("on_gap")  # Callable[[GapEvent], None] | None
    on_source_restart = _state_attr("on_source_restart")  # Callable[[str], bool] | None
    connection_state = _state_attr("connection_state")
    ticks = _state_attr("ticks")
    gaps = _state_attr("gaps")
    resets = _state_attr("resets")
    malformed = _state_attr("malformed")
    out_of_order = _state_attr("out_of_order")
    reconnects = _state_attr("reconnects")
    subscribed = _state_attr("subscribed")
    started_ms = _state_attr("started_ms")
    transport_name = _state_attr("transport_name")
    # figures of the sink
    buffered_ticks = _sink_attr("buffered_ticks")
    dropped = _sink_attr("dropped")
    redis_errors = _sink_attr("redis_errors")
    error_replies = _sink_attr("error_replies")

    def load_history(self, symbol: str, bars: list[Bar], timeframe: str = "1m") -> HistoryCheck | None:
        """See :func:`marketdata.history.load_history`."""
        return history.load_history(self.state, self.sink, symbol, bars, timeframe, self.bars_trim[timeframe][1])

    def write_health(self, at_ms: int | None = None) -> None:
        """Queue the health hashes (sent with the next flush)."""
        self.state.write_health(self.sink.health_fields(), at_ms)
