"""The feed's state, pure: market events in, per-symbol records and Redis commands to send out.

``FeedState.ingest(events)`` is the hot path and does only in-memory work per event: pack the tick
record once, roll bars, keep the latest quote and book, count health. No I/O: the Redis sink
(``marketdata.sink``) takes what changed with ``take_batch()`` and encodes it; history loading
(``marketdata.history``) reconciles REST candles with what Redis holds. Commands that are not
per-symbol (gaps, the subscribed set, health hashes, the connection state) are queued as argument
tuples for the next batch.

Sequence numbers: a quote whose ``seq`` goes backwards means the source restarted (the transport
drops older frames within a session); the ``on_source_restart`` hook decides whether a history
re-check follows, and until ``resync_done`` the connection state says "resyncing" so the analysis
does not trust a window that may mix two price paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from matchtrader.events import (
    CandleEvent,
    ConnectionEvent,
    DepthEvent,
    GapEvent,
    MalformedFrame,
    QuoteEvent,
    TradeEvent,
)
from tradeops.logging import get_logger

from . import redis_keys as keys
from .bars import Bar, BarRoller, HistoryCheck
from .health import now_ms

log = get_logger(__name__)

_NAN = float("nan")
_RAW_LOG_CHARS = 200


class SymbolState:
    """Per-symbol state of the feed."""

    __slots__ = (
        "name", "health_key",
        "recs", "roller", "bid", "ask", "quote_ts", "quote_recv", "quote_dirty", "book", "closed",
        "last_bar_ts", "bars_dirty", "candle_m1", "candle_forming",
        "ticks", "last_ts", "last_recv", "malformed", "out_of_order", "gaps", "health_dirty", "seq",
        "prescreen", "prescreen_key",
    )

    def __init__(self, name: str):
        self.name = name
        self.health_key = keys.health_symbol(name)
        self.recs: list[bytes] = []
        self.roller = BarRoller()
        self.bid = _NAN
        self.ask = _NAN
        self.quote_ts = 0
        self.quote_recv = 0
        self.quote_dirty = False
        self.book: bytes | None = None
        self.closed: dict[str, list[Bar]] = {"1s": [], "1m": []}
        self.last_bar_ts = {"1s": -1, "1m": -1}
        self.bars_dirty = False
        self.candle_m1 = False  # the source sends broker M1 candles: they are the 1 m bars
        self.candle_forming: Bar | None = None
        self.ticks = 0
        self.last_ts = 0
        self.last_recv = 0
        self.malformed = 0
        self.out_of_order = 0
        self.gaps = 0
        self.health_dirty = False
        self.seq = -1  # the source's quote sequence number (simulator extension), -1: none yet
        # the symbol's strategy's wake-up hook (signals.strategies.Strategy.prescreen), None: off
        self.prescreen = None
        self.prescreen_key = None



class FeedState:
    """Single-threaded (the feed's writer thread owns it)."""

    def __init__(self, *, gaps_maxlen: int = 10_000, transport_name: str = "", malformed_log_per_min: int = 30):
        self.gaps_maxlen = gaps_maxlen
        self.transport_name = transport_name
        self._syms: dict[str, SymbolState] = {}
        self._dirty: dict[str, SymbolState] = {}  # touched since the last take_batch, insertion-ordered
        self._extra: list[tuple] = []  # non-symbol commands (gaps, subscribed set, health) for the next batch
        # batch-window accounting
        self._batch_ticks = 0
        self._batch_first_recv = 0
        self._batch_last_recv = 0
        # process health
        self.started_ms = now_ms()
        self.connection_state = ""
        self.reconnects = 0
        self.malformed = 0
        self.out_of_order = 0
        self.gaps = 0
        self.ticks = 0
        self.subscribed: list[str] = []
        self._lag_sum = 0
        self._lag_n = 0
        self._lag_max = 0
        self._last_health_ms = 0
        self._last_health_ticks = 0
        self._malformed_log_budget = malformed_log_per_min
        self._malformed_log_left = malformed_log_per_min
        self._malformed_log_reset_ms = 0
        self._malformed_suppressed = 0
        self.resets = 0
        # Called with every GapEvent: the feed re-loads history after a long one.
        self.on_gap: Callable[[GapEvent], None] | None = None
        # Called with a symbol whose source sequence started again; returns True if a history
        # re-check is on its way (the state is "resyncing" until ``resync_done``).
        self.on_source_restart: Callable[[str], bool] | None = None
        self._resyncing: set[str] = set()
        # Pre-screen wake-ups since the feed last took them: (symbol, venue ts ms, receive wall ms).
        # The feed sends them once the batch holding their tick is stored (workers.feed).
        self.wakes: list[tuple[str, int, int]] = []

    def set_prescreen(self, symbol: str, key, prescreen) -> bool:
        """Install ``prescreen`` (an object with ``on_tick(ts_ms, price, volume) -> bool``) for
        ``symbol`` unless the one installed has the same ``key`` (strategy, params): an unchanged
        configuration keeps its incremental baseline. ``prescreen=None`` removes it."""
        st = self.sym(symbol)
        if st.prescreen_key == key and (st.prescreen is None) == (prescreen is None):
            return False
        st.prescreen = prescreen
        st.prescreen_key = key if prescreen is not None else None
        return True

    def take_wakes(self) -> list[tuple[str, int, int]]:
        wakes, self.wakes = self.wakes, []
        return wakes

    @property
    def pending_ticks(self) -> int:
        """Ticks ingested since the last ``take_batch``."""
        return self._batch_ticks

    def take_batch(self) -> tuple[dict[str, SymbolState], list[tuple], int, int, int] | None:
        """Hand over what changed since the last call: (dirty symbols, extra commands, ticks,
        first and last receive time); None when nothing did. The caller encodes the symbols'
        pending records and clears them (``marketdata.sink``)."""
        if not self._dirty and not self._extra:
            return None
        out = (self._dirty, self._extra, self._batch_ticks, self._batch_first_recv, self._batch_last_recv)
        self._dirty = {}
        self._extra = []
        self._batch_ticks = 0
        self._batch_first_recv = 0
        self._batch_last_recv = 0
        return out

    def queue(self, *command) -> None:
        """A Redis command (a tuple of arguments) to send with the next batch."""
        self._extra.append(command)

    def record_gap(self, reason: str, symbols, from_ms: int, to_ms: int, missed: int | None) -> None:
        """A gap the feed caused itself (buffer overflow while Redis was away): in ``md:gaps``."""
        self._extra.append(self.gap_command(reason, symbols, from_ms, to_ms, missed))
        self.gaps += 1

    def sym(self, name: str) -> SymbolState:
        st = self._syms.get(name)
        if st is None:
            st = self._syms[name] = SymbolState(name)
        return st

    def ingest(self, events) -> int:
        """Apply a batch of events to the in-memory state. Returns the number of ticks."""
        syms = self._syms
        dirty = self._dirty
        pack = keys.TICK.pack
        n = 0
        lag_sum = 0
        lag_max = self._lag_max
        first_recv = 0
        last_recv = 0
        for ev in events:
            cls = type(ev)
            if cls is QuoteEvent:
                st = syms.get(ev.symbol) or self.sym(ev.symbol)
                seq = ev.seq
                if seq is not None:
                    if seq < st.seq:  # within a session the transport drops older frames: a new source
                        self._source_restarted(st, seq)
                    st.seq = seq
                bid = ev.bid
                ask = ev.ask
                ts = ev.ts_ms
                mid = (bid + ask) * 0.5
                st.recs.append(pack((ts << 2) | 1, bid, ask, mid, 0.0))
                st.bid = bid
                st.ask = ask
                st.quote_ts = ts
                st.quote_recv = ev.recv_ms
                st.quote_dirty = True
                closed = st.roller.update(ts, mid)
                price = mid
                vol = 0.0
            elif cls is TradeEvent:
                st = syms.get(ev.symbol) or self.sym(ev.symbol)
                ts = ev.ts_ms
                price = ev.price
                side = ev.side
                st.recs.append(pack((ts << 2) | (2 if side > 0 else (0 if side < 0 else 1)), st.bid, st.ask, price,
                                    ev.volume))
                vol = ev.volume
                closed = st.roller.update(ts, price, vol, side)
            else:
                self._ingest_other(ev)
                continue
            ps = st.prescreen
            if ps is not None and ps.on_tick(ts, price, vol):
                self.wakes.append((st.name, ts, ev.recv_ms))
            if closed:
                self._closed_bars(st, closed)
            recv = ev.recv_ms
            if not first_recv:
                first_recv = recv
            last_recv = recv
            lag = recv - ts
            lag_sum += lag
            if lag > lag_max:
                lag_max = lag
            st.ticks += 1
            st.last_ts = ts
            st.last_recv = recv
            if st.name not in dirty:
                dirty[st.name] = st
                st.health_dirty = True
            n += 1
        if n:
            self.ticks += n
            self._lag_sum += lag_sum
            self._lag_n += n
            self._lag_max = lag_max
            self._batch_ticks += n
            if not self._batch_first_recv:
                self._batch_first_recv = first_recv
            self._batch_last_recv = last_recv
        return n

    def _source_restarted(self, st: SymbolState, seq: int) -> None:
        """The quote sequence started again (the simulator restarted, however briefly): its
        history must be re-checked, whatever the length of the gap (``on_source_restart``)."""
        log.warning("feed_source_restarted", symbol=st.name, seq=seq, last_seq=st.seq)
        if self.on_source_restart is None:
            return
        try:
            resync = self.on_source_restart(st.name)
        except Exception:  # noqa: BLE001 - a hook must never stop ingestion
            log.exception("feed_source_restart_hook_failed", symbol=st.name)
            return
        if resync:
            # Until the history is re-checked, Redis may hold the old run's path next to the new
            # ticks: the analysis must not trust it (signals.service.FEED_NOT_LIVE).
            self._resyncing.add(st.name)
            if self.connection_state != "resyncing":
                self._set_connection("resyncing")

    def _set_connection(self, state: str) -> None:
        """Record the connection state, in Redis at once (with the next flush), not with the next
        health write: the analysis reads it every pass."""
        self.connection_state = state
        self._extra.append(("HSET", keys.HEALTH, "connection", state))

    def resync_done(self, symbol: str) -> None:
        """The symbol's history was re-checked after a restart; once every restarted symbol's
        was, the data is live again."""
        self._resyncing.discard(symbol)
        if not self._resyncing and self.connection_state == "resyncing":
            log.info("feed_resynced")
            self._set_connection("connected")

    def _closed_bars(self, st: SymbolState, closed) -> None:
        for tf, bar in closed:
            if tf == "1m" and st.candle_m1:
                continue  # broker candles are authoritative for 1 m on this symbol
            if bar.ts_ms > st.last_bar_ts[tf]:
                st.closed[tf].append(bar)
                st.last_bar_ts[tf] = bar.ts_ms
        st.bars_dirty = True

    def _mark(self, st: SymbolState) -> None:
        if st.name not in self._dirty:
            self._dirty[st.name] = st

    def _ingest_other(self, ev) -> None:
        cls = type(ev)
        if cls is DepthEvent:
            st = self.sym(ev.symbol)
            st.book = keys.encode_book(ev.ts_ms, ev.bids, ev.asks)
            self._mark(st)
        elif cls is MalformedFrame:
            self._on_malformed(ev)
        elif cls is GapEvent:
            self._on_gap(ev)
        elif cls is ConnectionEvent:
            self.reconnects = max(self.reconnects, ev.reconnects)
            # the analysis stops trusting the newest ticks as soon as their source is known to be
            # away (signals.service.FEED_NOT_LIVE)
            self._set_connection(ev.state)
            log.info("feed_connection", state=ev.state, reconnects=ev.reconnects, detail=ev.detail)
        elif cls is CandleEvent:
            self._on_candle(ev)
        else:
            log.warning("feed_unknown_event", type=cls.__name__)

    def _on_malformed(self, ev: MalformedFrame) -> None:
        out_of_order = ev.kind == "out_of_order"
        if out_of_order:
            self.out_of_order += 1
        else:
            self.malformed += 1
        if ev.symbol:
            st = self.sym(ev.symbol)
            if out_of_order:
                st.out_of_order += 1
            else:
                st.malformed += 1
            st.health_dirty = True
            self._mark(st)
        # Log with context, but a storm of bad frames must not become a storm of log lines.
        now = now_ms()
        if now >= self._malformed_log_reset_ms:
            if self._malformed_suppressed:
                log.warning("feed_malformed_suppressed", count=self._malformed_suppressed)
            self._malformed_log_reset_ms = now + 60_000
            self._malformed_log_left = self._malformed_log_budget
            self._malformed_suppressed = 0
        if self._malformed_log_left > 0:
            self._malformed_log_left -= 1
            log.warning(
                "feed_out_of_order_frame" if out_of_order else "feed_malformed_frame",
                symbol=ev.symbol, error=ev.error, raw=ev.raw[:_RAW_LOG_CHARS],
            )
        else:
            self._malformed_suppressed += 1

    def _on_gap(self, ev: GapEvent) -> None:
        self.gaps += 1
        for name in ev.symbols:
            st = self.sym(name)
            st.gaps += 1
            st.health_dirty = True
            self._mark(st)
        self._extra.append(self.gap_command(ev.reason, ev.symbols, ev.from_ms, ev.to_ms, ev.missed))
        log.warning("feed_gap", reason=ev.reason, symbols=ev.symbols[:20], nsymbols=len(ev.symbols),
                    from_ms=ev.from_ms, to_ms=ev.to_ms, missed=ev.missed)
        if self.on_gap is not None:
            try:
                self.on_gap(ev)
            except Exception:  # noqa: BLE001 - a hook must never stop ingestion
                log.exception("feed_gap_hook_failed", reason=ev.reason)

    def gap_command(self, reason, symbols, from_ms, to_ms, missed) -> tuple:
        return (
            "XADD", keys.GAPS, "MAXLEN", "~", self.gaps_maxlen, "*",
            "reason", reason, "symbols", ",".join(symbols), "from_ms", from_ms, "to_ms", to_ms,
            "missed", "" if missed is None else missed, "recorded_ms", now_ms(),
        )

    def _on_candle(self, ev: CandleEvent) -> None:
        if ev.interval != "M1":
            return
        st = self.sym(ev.symbol)
        st.candle_m1 = True
        bar = Bar(ev.time_ms, ev.open, ev.high, ev.low, ev.close, ev.volume, 0.0, 0.0, int(ev.volume))
        if ev.closed:
            if bar.ts_ms > st.last_bar_ts["1m"]:
                st.closed["1m"].append(bar)
                st.last_bar_ts["1m"] = bar.ts_ms
            if st.candle_forming is not None and st.candle_forming.ts_ms <= bar.ts_ms:
                st.candle_forming = None
        else:
            st.candle_forming = bar
        st.bars_dirty = True
        self._mark(st)

    def warmup_bars(self, symbol: str, bars: list[Bar], timeframe: str = "1m", last_ts_in_redis: int = -1) -> int:
        """Queue closed history bars (REST candles at start-up) before the live ones. Bars not newer
        than what Redis or this process already holds are skipped. Returns how many were queued."""
        st = self.sym(symbol)
        floor = max(st.last_bar_ts[timeframe], last_ts_in_redis)
        fresh = sorted((b for b in bars if b.ts_ms > floor), key=lambda b: b.ts_ms)
        if st.closed[timeframe] and fresh:
            # live bars already queued: history goes before them, never after
            first_live = st.closed[timeframe][0].ts_ms
            fresh = [b for b in fresh if b.ts_ms < first_live]
            st.closed[timeframe][:0] = fresh
        else:
            st.closed[timeframe].extend(fresh)
            if fresh:
                st.last_bar_ts[timeframe] = fresh[-1].ts_ms
        if fresh:
            self._mark(st)
        return len(fresh)

    def reset_symbol(self, st: SymbolState, check: HistoryCheck, timeframe: str) -> None:
        """Forget the symbol's market data (Redis and in memory): it belongs to another price path."""
        name = st.name
        self._extra.append(("DEL", keys.ticks_stream(name), keys.tape(name), keys.quote(name), keys.book(name),
                            keys.forming_bars(name), *(keys.bars(tf, name) for tf in keys.TIMEFRAMES)))
        st.roller = BarRoller()
        st.closed = {"1s": [], "1m": []}
        st.last_bar_ts = {"1s": -1, "1m": -1}
        st.candle_forming = None
        st.bid = st.ask = _NAN
        st.book = None
        now = now_ms()
        self._extra.append(self.gap_command("source_reset", [name], now, now, None))
        self.gaps += 1
        self.resets += 1
        st.gaps += 1
        st.health_dirty = True
        log.warning("feed_source_reset", symbol=name, timeframe=timeframe, overlap=check.overlap,
                    mismatched=check.mismatched, tolerance=check.tolerance, stored_close=check.stored_close,
                    source_close=check.source_close)

    def set_subscribed(self, symbols) -> None:
        """Record the subscribed set in ``md:symbols`` (written with the next flush)."""
        self.subscribed = sorted(set(symbols))
        for gone in self._resyncing - set(self.subscribed):
            self.resync_done(gone)
        # MULTI/EXEC: a reader never sees the set empty between the DEL and the SADD
        self._extra += [("MULTI",), ("DEL", keys.SYMBOLS)]
        if self.subscribed:
            self._extra.append(("SADD", keys.SYMBOLS, *self.subscribed))
        self._extra.append(("EXEC",))

    def write_health(self, io_fields: list, at_ms: int | None = None) -> None:
        """Queue the health hashes (sent with the next flush). ``io_fields``: the sink's own
        figures (write lag, Redis errors, buffered and dropped ticks) as HSET field/value pairs."""
        now = now_ms() if at_ms is None else at_ms
        dt = (now - self._last_health_ms) / 1000 if self._last_health_ms else 0
        rate = (self.ticks - self._last_health_ticks) / dt if dt > 0 else 0.0
        lag = self._lag_sum / self._lag_n if self._lag_n else 0.0
        self._extra.append((
            "HSET", keys.HEALTH,
            "heartbeat_ms", now, "started_ms", self.started_ms, "pid", os.getpid(),
            "transport", self.transport_name, "connection", self.connection_state,
            "reconnects", self.reconnects, "malformed", self.malformed, "out_of_order", self.out_of_order,
            "gaps", self.gaps, "ticks", self.ticks, "ingest_rate", round(rate, 1),
            "lag_ms", round(lag, 1), "lag_max_ms", self._lag_max, *io_fields, "symbols", len(self.subscribed),
        ))
        for st in self._syms.values():
            if st.health_dirty:
                fields = ["ticks", st.ticks, "malformed", st.malformed, "out_of_order", st.out_of_order,
                          "gaps", st.gaps]
                if st.last_ts:
                    fields += ["last_tick_ms", st.last_ts, "last_recv_ms", st.last_recv,
                               "lag_ms", st.last_recv - st.last_ts]
                self._extra.append(("HSET", st.health_key, *fields))
                st.health_dirty = False
        self._last_health_ms = now
        self._last_health_ticks = self.ticks
        self._lag_sum = self._lag_n = self._lag_max = 0

