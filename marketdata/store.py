"""The feed's writer: market events in, pipelined Redis writes out (layout in ``redis_keys``).

Two halves, so the hot path stays cheap and testable:

- ``ingest(events)``: pure in-memory work per event — pack the tick record once, roll bars,
  keep the latest quote/book, count health. No I/O.
- ``flush()``: encode everything pending since the last flush into ONE buffer of Redis commands
  and send it in one round trip (no MULTI: ``transaction=False`` semantics).

Hot-path choices, measured (see ``bench/feed_ingest.py``): redis-py's pipeline spends ~15 µs of
Python per queued command (argument encoding, one reply parse each), which alone caps a feed near
50k ticks/s on this machine. So all of one symbol's writes of a batch — one ``XADD`` per tick,
the tape append, quote, forming bars, book, closed bars — are ONE ``EVALSHA`` of
``redis_keys.INGEST_LUA`` (one command and one reply per symbol per batch instead of one per
tick), encoded here as RESP bytes from per-symbol constant parts, and the whole batch is written
to the socket at once through redis-py's own ``Connection`` (connect, auth, socket handling,
hiredis reply parsing). The script is (re)loaded with ``SCRIPT LOAD`` at the head of the first
batch after every (re)connect, so a restarted Redis never answers NOSCRIPT for long.

Redis unavailable: the encoded batches stay in a bounded buffer (``buffer_max_ticks``) and
``flush()`` returns False; the caller retries with backoff. On overflow the oldest batches are
dropped, counted (``dropped``) and recorded as a gap once Redis is back. A batch whose send
failed half-way may be applied twice on retry (at-least-once; rare, and only on a Redis fault).
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
from .bars import Bar, BarRoller, HistoryCheck, check_history
from .health import now_ms

log = get_logger(__name__)

CRLF = b"\r\n"
_NAN = float("nan")
_RAW_LOG_CHARS = 200
# Batches without ticks (health, gaps) also pile up while Redis is away: bound their number too.
_MAX_PENDING_BATCHES = 10_000


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


_EMPTY = b"$0\r\n\r\n"
SCRIPT_SHA = hashlib.sha1(keys.INGEST_LUA.encode()).hexdigest().encode()


def _arg(x) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, float):
        return repr(x).encode()
    return str(x).encode()


def resp(*args) -> bytes:
    """RESP encoding of one command (bytes, str, int, float arguments)."""
    return b"*%d\r\n" % len(args) + b"".join(_bulk(_arg(a)) for a in args)


_INGEST_HEAD_ARGS = 3 + keys.INGEST_KEYS + keys.INGEST_FIXED_ARGS
_TICK_BULK = b"$%d\r\n" % keys.TICK.size


def ingest_prefix(symbol: str) -> bytes:
    """RESP bulks ``EVALSHA <sha> 7 <keys...>`` of one symbol (the ``*<argc>`` header, which
    depends on the number of ticks, goes before it; the ARGV bulks follow)."""
    ks = [keys.ticks_stream(symbol), keys.tape(symbol), keys.quote(symbol), keys.forming_bars(symbol),
          keys.book(symbol), keys.bars("1s", symbol), keys.bars("1m", symbol)]
    assert len(ks) == keys.INGEST_KEYS
    head = [b"EVALSHA", SCRIPT_SHA, b"%d" % len(ks)] + [k.encode() for k in ks]
    return b"".join(_bulk(a) for a in head)


def xadd_prefix(stream_key: str, maxlen: int) -> bytes:
    """RESP of ``XADD <key> MAXLEN ~ <maxlen> * d `` up to the record's bulk header."""
    args = [b"XADD", stream_key.encode(), b"MAXLEN", b"~", str(maxlen).encode(), b"*", keys.TICK_FIELD]
    return b"*%d\r\n" % (len(args) + 1) + b"".join(_bulk(a) for a in args) + b"$%d\r\n" % keys.TICK.size


class _Sym:
    """Per-symbol state held by the writer."""

    __slots__ = (
        "name", "prefix", "health_key",
        "recs", "roller", "bid", "ask", "quote_ts", "quote_recv", "quote_dirty", "book", "closed",
        "last_bar_ts", "bars_dirty", "candle_m1", "candle_forming",
        "ticks", "last_ts", "last_recv", "malformed", "out_of_order", "gaps", "health_dirty", "seq",
    )

    def __init__(self, name: str):
        self.name = name
        self.prefix = ingest_prefix(name)
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


@dataclass(slots=True)
class _Batch:
    chunks: list  # list[bytes] of packed commands
    commands: int
    ticks: int
    first_recv_ms: int
    last_recv_ms: int
    symbols: tuple


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
        self.redis = redis
        self.stream_maxlen = stream_maxlen
        self.tape_trim = (2 * tape_len * keys.TICK.size, tape_len * keys.TICK.size)
        self.bars_trim = {
            "1s": (2 * bars_1s_len * keys.BAR.size, bars_1s_len * keys.BAR.size),
            "1m": (2 * bars_1m_len * keys.BAR.size, bars_1m_len * keys.BAR.size),
        }
        self.gaps_maxlen = gaps_maxlen
        self.buffer_max_ticks = buffer_max_ticks
        self.transport_name = transport_name
        self._syms: dict[str, _Sym] = {}
        self._dirty: dict[str, _Sym] = {}  # touched since the last encode, insertion-ordered
        self._pending: deque[_Batch] = deque()
        self._pending_ticks = 0
        self._extra: list[tuple] = []  # non-symbol commands (gaps, subscribed set) for the next batch
        self._conn = None  # checked out of the client's pool; given back by close()
        self._inflight: tuple | None = None  # (batches, ncommands, script_load, sent_ms), replies unread
        self._need_script_load = True
        maxlen = _bulk(b"%d" % stream_maxlen)
        self._static_tape = maxlen + b"".join(_bulk(b"%d" % v) for v in self.tape_trim)
        self._static_1s = b"".join(_bulk(b"%d" % v) for v in self.bars_trim["1s"])
        self._static_1m = b"".join(_bulk(b"%d" % v) for v in self.bars_trim["1m"])
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
        self.redis_errors = 0
        self.error_replies = 0
        self.dropped = 0
        self._dropped_unrecorded = 0
        self._dropped_span = [0, 0]
        self._dropped_symbols: set[str] = set()
        self.subscribed: list[str] = []
        self._lag_sum = 0
        self._lag_n = 0
        self._lag_max = 0
        self._wlag_sum = 0
        self._wlag_n = 0
        self._last_health_ms = 0
        self._last_health_ticks = 0
        self._malformed_log_budget = malformed_log_per_min
        self._malformed_log_left = malformed_log_per_min
        self._malformed_log_reset_ms = 0
        self._malformed_suppressed = 0
        self.resets = 0
        # Called (writer thread) with every GapEvent: the feed re-loads history after a long one.
        self.on_gap: Callable[[GapEvent], None] | None = None
        # Called (writer thread) with a symbol whose source sequence started again; returns True
        # if a history re-check is on its way (the state is "resyncing" until ``resync_done``).
        self.on_source_restart: Callable[[str], bool] | None = None
        self._resyncing: set[str] = set()

    # ------------------------------------------------------------------ ingest (no I/O)
    def _sym(self, name: str) -> _Sym:
        st = self._syms.get(name)
        if st is None:
            st = self._syms[name] = _Sym(name)
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
                st = syms.get(ev.symbol) or self._sym(ev.symbol)
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
            elif cls is TradeEvent:
                st = syms.get(ev.symbol) or self._sym(ev.symbol)
                ts = ev.ts_ms
                price = ev.price
                side = ev.side
                st.recs.append(pack((ts << 2) | (2 if side > 0 else (0 if side < 0 else 1)), st.bid, st.ask, price,
                                    ev.volume))
                closed = st.roller.update(ts, price, ev.volume, side)
            else:
                self._ingest_other(ev)
                continue
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

    def _source_restarted(self, st: _Sym, seq: int) -> None:
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

    def _closed_bars(self, st: _Sym, closed) -> None:
        for tf, bar in closed:
            if tf == "1m" and st.candle_m1:
                continue  # broker candles are authoritative for 1 m on this symbol
            if bar.ts_ms > st.last_bar_ts[tf]:
                st.closed[tf].append(bar)
                st.last_bar_ts[tf] = bar.ts_ms
        st.bars_dirty = True

    def _mark(self, st: _Sym) -> None:
        if st.name not in self._dirty:
            self._dirty[st.name] = st

    def _ingest_other(self, ev) -> None:
        cls = type(ev)
        if cls is DepthEvent:
            st = self._sym(ev.symbol)
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
            st = self._sym(ev.symbol)
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
            st = self._sym(name)
            st.gaps += 1
            st.health_dirty = True
            self._mark(st)
        self._extra.append(self._gap_command(ev.reason, ev.symbols, ev.from_ms, ev.to_ms, ev.missed))
        log.warning("feed_gap", reason=ev.reason, symbols=ev.symbols[:20], nsymbols=len(ev.symbols),
                    from_ms=ev.from_ms, to_ms=ev.to_ms, missed=ev.missed)
        if self.on_gap is not None:
            try:
                self.on_gap(ev)
            except Exception:  # noqa: BLE001 - a hook must never stop ingestion
                log.exception("feed_gap_hook_failed", reason=ev.reason)

    def _gap_command(self, reason, symbols, from_ms, to_ms, missed) -> tuple:
        return (
            "XADD", keys.GAPS, "MAXLEN", "~", self.gaps_maxlen, "*",
            "reason", reason, "symbols", ",".join(symbols), "from_ms", from_ms, "to_ms", to_ms,
            "missed", "" if missed is None else missed, "recorded_ms", now_ms(),
        )

    def _on_candle(self, ev: CandleEvent) -> None:
        if ev.interval != "M1":
            return
        st = self._sym(ev.symbol)
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
        st = self._sym(symbol)
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

    def load_history(self, symbol: str, bars: list[Bar], timeframe: str = "1m") -> HistoryCheck | None:
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
        """
        if not self.flush():
            return None
        key = keys.bars(timeframe, symbol)
        try:
            stored = keys.decode_bars(self.redis.get(key) or b"")
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._unavailable(exc)
            return None
        bars = sorted(bars, key=lambda b: b.ts_ms)
        check = check_history(stored["ts_ms"], stored["close"], bars)
        st = self._sym(symbol)
        if check.joins or not len(stored):
            merged = self._merged_history(stored, bars)
        else:
            merged = b"".join(b.pack() for b in bars)
            self._reset_symbol(st, check, timeframe)
        keep = self.bars_trim[timeframe][1]
        self._extra.append(("SET", key, merged[-keep:] if len(merged) > keep else merged))
        if bars:
            newest_kept = int(stored["ts_ms"][-1]) if check.joins and len(stored) else -1
            st.last_bar_ts[timeframe] = max(bars[-1].ts_ms, newest_kept)
        log.info("feed_history_loaded", symbol=symbol, timeframe=timeframe, bars=len(bars), stored=len(stored),
                 overlap=check.overlap, mismatched=check.mismatched, joins=check.joins)
        self.flush()  # now, before any tick ingested after this call (it stays queued if Redis fails)
        return check

    @staticmethod
    def _merged_history(stored, bars: list[Bar]) -> bytes:
        """Stored bars before the history + the history + stored bars after it (oldest first)."""
        if not bars:
            return stored.tobytes()
        first, last = bars[0].ts_ms, bars[-1].ts_ms
        ts = stored["ts_ms"]
        return stored[ts < first].tobytes() + b"".join(b.pack() for b in bars) + stored[ts > last].tobytes()

    def _reset_symbol(self, st: _Sym, check: HistoryCheck, timeframe: str) -> None:
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
        self._extra.append(self._gap_command("source_reset", [name], now, now, None))
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

    # ------------------------------------------------------------------ encode
    def encode(self) -> None:
        """Turn everything ingested since the last call into one pending batch of commands."""
        if not self._dirty and not self._extra:
            return
        chunks: list[bytes] = []
        ncmd = 0
        static_tape = self._static_tape
        static_1s = self._static_1s
        static_1m = self._static_1m
        empty = _EMPTY
        empty4 = _EMPTY * 4
        empty_bar = keys.EMPTY_BAR
        sep = CRLF + _TICK_BULK
        for st in self._dirty.values():
            recs = st.recs
            chunks += (b"*%d\r\n" % (_INGEST_HEAD_ARGS + len(recs)), st.prefix, static_tape)
            if st.quote_dirty:
                bid, ask, ts, recv = repr(st.bid), repr(st.ask), str(st.quote_ts), str(st.quote_recv)
                chunks.append(("$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                    len(bid), bid, len(ask), ask, len(ts), ts, len(recv), recv)).encode())
                st.quote_dirty = False
            else:
                chunks.append(empty4)
            if st.roller.cur is not None or st.candle_forming is not None:
                f1s, f1m = st.roller.forming()
                if st.candle_m1:
                    f1m = st.candle_forming
                chunks.append(_bulk((f1s.pack() if f1s else empty_bar) + (f1m.pack() if f1m else empty_bar)))
            else:
                chunks.append(empty)
            if st.book is not None:
                chunks.append(_bulk(st.book))
                st.book = None
            else:
                chunks.append(empty)
            closed = st.closed
            for tf, static in (("1s", static_1s), ("1m", static_1m)):
                bars = closed[tf]
                if bars:
                    chunks += (_bulk(b"".join(b.pack() for b in bars)), static)
                    closed[tf] = []
                else:
                    chunks += (empty, static)
            if recs:  # one bulk per tick record, after the fixed arguments
                chunks += (_TICK_BULK, sep.join(recs), CRLF)
                st.recs = []
                st.health_dirty = True
            ncmd += 1
        for cmd in self._extra:
            chunks.append(resp(*cmd))
            ncmd += 1
        batch = _Batch(chunks, ncmd, self._batch_ticks, self._batch_first_recv, self._batch_last_recv,
                       tuple(self._dirty) if self._batch_ticks else ())
        self._extra = []
        self._dirty = {}
        self._batch_ticks = 0
        self._batch_first_recv = 0
        self._batch_last_recv = 0
        self._pending.append(batch)
        self._pending_ticks += batch.ticks
        self._enforce_bound()

    def _enforce_bound(self) -> None:
        while (self._pending_ticks > self.buffer_max_ticks or len(self._pending) > _MAX_PENDING_BATCHES) and len(
            self._pending
        ) > 1:
            old = self._pending.popleft()
            self._pending_ticks -= old.ticks
            self.dropped += old.ticks
            self._dropped_unrecorded += old.ticks
            if old.ticks:
                if not self._dropped_span[0]:
                    self._dropped_span[0] = old.first_recv_ms
                self._dropped_span[1] = old.last_recv_ms
                self._dropped_symbols.update(old.symbols)

    # ------------------------------------------------------------------ I/O
    @property
    def buffered_ticks(self) -> int:
        inflight = sum(b.ticks for b in self._inflight[0]) if self._inflight else 0
        return self._pending_ticks + self._batch_ticks + inflight

    def flush(self, wait: bool = True) -> bool:
        """Send everything pending in one round trip. False if Redis is unavailable (the data stays
        buffered, bounded); the caller retries later with backoff. Never raises for Redis faults.

        ``wait=False`` returns once the batch is written to the socket and reads its replies at the
        start of the next ``flush``: Redis executes batch N while the feed parses batch N+1 (the two
        cores work in parallel). A batch counts as delivered only once its replies are read; if the
        connection fails first, it is sent again (at-least-once).
        """
        if self._inflight is not None and not self._collect():
            return False
        self.encode()
        if not self._pending:
            return True
        batches = list(self._pending)
        payload = [c for b in batches for c in b.chunks]
        ncmd = sum(b.commands for b in batches)
        load = self._need_script_load
        if load:
            payload.insert(0, resp("SCRIPT", "LOAD", keys.INGEST_LUA))
            ncmd += 1
        conn = self._conn
        try:
            if conn is None:
                # Checked out of the client's pool (and given back by close()), so the pool's
                # bound counts it; redis-py connects on checkout: a refusal is "unavailable".
                conn = self._conn = self._checkout()
            conn.send_packed_command([b"".join(payload)], check_health=False)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._unavailable(exc)
            return False
        self._inflight = (batches, ncmd, load, now_ms())
        self._pending.clear()
        self._pending_ticks = 0
        return self._collect() if wait else True

    def _collect(self) -> bool:
        """Read the replies of the batch in flight. False (batch back in the buffer) on a Redis fault."""
        batches, ncmd, load, sent_ms = self._inflight
        errors = 0
        read = self._conn.read_response
        try:
            for _ in range(ncmd):
                try:
                    read()
                except ResponseError as exc:
                    errors += 1
                    if str(exc).startswith("NOSCRIPT"):
                        self._need_script_load = True  # someone flushed the script cache
                    if errors <= 3:
                        log.error("feed_redis_error_reply", error=str(exc)[:200])
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._inflight = None
            self._pending.extendleft(reversed(batches))
            self._pending_ticks += sum(b.ticks for b in batches)
            self._unavailable(exc)
            self._enforce_bound()
            return False
        self._inflight = None
        if load and not errors:
            self._need_script_load = False
        self.error_replies += errors
        for b in batches:  # received → handed to Redis (the replies may be read a batch later)
            if b.ticks:
                self._wlag_sum += (sent_ms - b.last_recv_ms) * b.ticks
                self._wlag_n += b.ticks
        if self._dropped_unrecorded:
            self._record_drop()
        return True

    def _checkout(self):
        """A connection of the client's pool, connected (the pool releases it itself if the
        connect fails)."""
        return self.redis.connection_pool.get_connection()

    def _release(self) -> None:
        """Give the connection back to the pool it came from (disconnected: our pipelined writes
        may have left replies unread on it, so it must not be reused as is)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.disconnect()
        except Exception:  # noqa: BLE001 - best effort on a broken socket
            pass
        try:
            self.redis.connection_pool.release(conn)
        except Exception:  # noqa: BLE001
            pass

    def _unavailable(self, exc: Exception) -> None:
        self.redis_errors += 1
        self._need_script_load = True  # the server may have restarted
        self._release()
        if self.redis_errors == 1 or self.redis_errors % 50 == 0:
            log.warning("feed_redis_unavailable", error=str(exc)[:200], buffered=self._pending_ticks,
                        failures=self.redis_errors)

    def _record_drop(self) -> None:
        missed = self._dropped_unrecorded
        self._extra.append(self._gap_command("buffer_overflow", sorted(self._dropped_symbols),
                                             self._dropped_span[0], self._dropped_span[1], missed))
        self.gaps += 1
        log.error("feed_buffer_overflow", dropped=missed, symbols=len(self._dropped_symbols))
        self._dropped_unrecorded = 0
        self._dropped_span = [0, 0]
        self._dropped_symbols = set()

    def write_health(self, at_ms: int | None = None) -> None:
        """Queue the health hashes (sent with the next flush)."""
        now = now_ms() if at_ms is None else at_ms
        dt = (now - self._last_health_ms) / 1000 if self._last_health_ms else 0
        rate = (self.ticks - self._last_health_ticks) / dt if dt > 0 else 0.0
        lag = self._lag_sum / self._lag_n if self._lag_n else 0.0
        wlag = self._wlag_sum / self._wlag_n if self._wlag_n else 0.0
        self._extra.append((
            "HSET", keys.HEALTH,
            "heartbeat_ms", now, "started_ms", self.started_ms, "pid", _pid(),
            "transport", self.transport_name, "connection", self.connection_state,
            "reconnects", self.reconnects, "malformed", self.malformed, "out_of_order", self.out_of_order,
            "gaps", self.gaps, "ticks", self.ticks, "ingest_rate", round(rate, 1),
            "lag_ms", round(lag, 1), "lag_max_ms", self._lag_max, "write_lag_ms", round(wlag, 1),
            "redis_errors", self.redis_errors, "error_replies", self.error_replies,
            "buffered", self.buffered_ticks, "dropped", self.dropped, "symbols", len(self.subscribed),
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
        self._wlag_sum = self._wlag_n = 0

    def close(self) -> None:
        """Give the connection back to the client's pool (replies of a batch still in flight are
        read first if possible, so nothing sent is left unaccounted)."""
        if self._inflight is not None and self._conn is not None:
            self._collect()
        self._release()


def _pid() -> int:
    return os.getpid()


def last_bar_ts(redis, symbol: str, timeframe: str) -> int:
    """Open time of the newest closed bar already in Redis (-1: none)."""
    raw = redis.getrange(keys.bars(timeframe, symbol), -keys.BAR.size, -1)
    if len(raw) < keys.BAR.size:
        return -1
    return keys.BAR.unpack(raw)[0]
