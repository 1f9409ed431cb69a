"""The feed's Redis sink: what the feed state changed, encoded as RESP and sent in one round trip.

``flush()`` takes everything the state (``marketdata.feed_state``) changed since the last flush,
encodes it into ONE buffer of Redis commands and sends it in one round trip (no MULTI:
``transaction=False`` semantics). Layout in ``redis_keys``; RESP encoding in ``marketdata.resp``.

Hot-path choices, measured (see ``bench/feed_ingest.py``): all of one symbol's writes of a batch —
one ``XADD`` per tick, the tape append, quote, forming bars, book, closed bars — are ONE
``EVALSHA`` of ``redis_keys.INGEST_LUA`` (one command and one reply per symbol per batch instead
of one per tick), encoded from per-symbol constant parts, and the whole batch is written to the
socket at once through redis-py's own ``Connection`` (connect, auth, socket handling, hiredis reply
parsing). The script is (re)loaded with ``SCRIPT LOAD`` at the head of the first batch after every
(re)connect, so a restarted Redis never answers NOSCRIPT for long.

Redis unavailable: the encoded batches stay in a bounded buffer (``buffer_max_ticks``) and
``flush()`` returns False; the caller retries with backoff. On overflow the oldest batches are
dropped, counted (``dropped``) and recorded as a gap once Redis is back. A batch whose send
failed half-way may be applied twice on retry (at-least-once; rare, and only on a Redis fault).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tradeops.logging import get_logger

from . import redis_keys as keys
from .feed_state import FeedState
from .health import now_ms
from .resp import CRLF, EMPTY, bulk, command

log = get_logger(__name__)

# Batches without ticks (health, gaps) also pile up while Redis is away: bound their number too.
_MAX_PENDING_BATCHES = 10_000
SCRIPT_SHA = hashlib.sha1(keys.INGEST_LUA.encode()).hexdigest().encode()

_INGEST_HEAD_ARGS = 3 + keys.INGEST_KEYS + keys.INGEST_FIXED_ARGS
_TICK_BULK = b"$%d\r\n" % keys.TICK.size


def ingest_prefix(symbol: str) -> bytes:
    """RESP bulks ``EVALSHA <sha> 7 <keys...>`` of one symbol (the ``*<argc>`` header, which
    depends on the number of ticks, goes before it; the ARGV bulks follow)."""
    ks = [keys.ticks_stream(symbol), keys.tape(symbol), keys.quote(symbol), keys.forming_bars(symbol),
          keys.book(symbol), keys.bars("1s", symbol), keys.bars("1m", symbol)]
    assert len(ks) == keys.INGEST_KEYS
    head = [b"EVALSHA", SCRIPT_SHA, b"%d" % len(ks)] + [k.encode() for k in ks]
    return b"".join(bulk(a) for a in head)


def xadd_prefix(stream_key: str, maxlen: int) -> bytes:
    """RESP of ``XADD <key> MAXLEN ~ <maxlen> * d `` up to the record's bulk header."""
    args = [b"XADD", stream_key.encode(), b"MAXLEN", b"~", str(maxlen).encode(), b"*", keys.TICK_FIELD]
    return b"*%d\r\n" % (len(args) + 1) + b"".join(bulk(a) for a in args) + b"$%d\r\n" % keys.TICK.size


@dataclass(slots=True)
class _Batch:
    chunks: list  # list[bytes] of packed commands
    commands: int
    ticks: int
    first_recv_ms: int
    last_recv_ms: int
    symbols: tuple


class RedisSink:
    """Sends a :class:`FeedState`'s batches on one connection of ``redis``'s pool (single-threaded)."""

    def __init__(self, redis, state: FeedState, *, stream_maxlen: int = 20_000, tape_len: int = 5_000,
                 bars_trim: dict[str, tuple[int, int]], buffer_max_ticks: int = 500_000):
        self.redis = redis
        self.state = state
        self.stream_maxlen = stream_maxlen
        self.buffer_max_ticks = buffer_max_ticks
        self.tape_trim = (2 * tape_len * keys.TICK.size, tape_len * keys.TICK.size)
        self._prefixes: dict[str, bytes] = {}
        self._pending: deque[_Batch] = deque()
        self._pending_ticks = 0
        self._conn = None  # checked out of the client's pool; given back by close()
        self._inflight: tuple | None = None  # (batches, ncommands, script_load, sent_ms), replies unread
        self._need_script_load = True
        maxlen = bulk(b"%d" % stream_maxlen)
        self._static_tape = maxlen + b"".join(bulk(b"%d" % v) for v in self.tape_trim)
        self._static_1s = b"".join(bulk(b"%d" % v) for v in bars_trim["1s"])
        self._static_1m = b"".join(bulk(b"%d" % v) for v in bars_trim["1m"])
        self.redis_errors = 0
        self.error_replies = 0
        self.dropped = 0
        self._dropped_unrecorded = 0
        self._dropped_span = [0, 0]
        self._dropped_symbols: set[str] = set()
        self._wlag_sum = 0
        self._wlag_n = 0

    def encode(self) -> None:
        """Turn everything ingested since the last call into one pending batch of commands."""
        taken = self.state.take_batch()
        if taken is None:
            return
        dirty, extra, batch_ticks, first_recv, last_recv = taken
        prefixes = self._prefixes
        chunks: list[bytes] = []
        ncmd = 0
        static_tape = self._static_tape
        static_1s = self._static_1s
        static_1m = self._static_1m
        empty = EMPTY
        empty4 = EMPTY * 4
        empty_bar = keys.EMPTY_BAR
        sep = CRLF + _TICK_BULK
        for name, st in dirty.items():
            recs = st.recs
            prefix = prefixes.get(name)
            if prefix is None:
                prefix = prefixes[name] = ingest_prefix(name)
            chunks += (b"*%d\r\n" % (_INGEST_HEAD_ARGS + len(recs)), prefix, static_tape)
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
                chunks.append(bulk((f1s.pack() if f1s else empty_bar) + (f1m.pack() if f1m else empty_bar)))
            else:
                chunks.append(empty)
            if st.book is not None:
                chunks.append(bulk(st.book))
                st.book = None
            else:
                chunks.append(empty)
            closed = st.closed
            for tf, static in (("1s", static_1s), ("1m", static_1m)):
                bars = closed[tf]
                if bars:
                    chunks += (bulk(b"".join(b.pack() for b in bars)), static)
                    closed[tf] = []
                else:
                    chunks += (empty, static)
            if recs:  # one bulk per tick record, after the fixed arguments
                chunks += (_TICK_BULK, sep.join(recs), CRLF)
                st.recs = []
                st.health_dirty = True
            ncmd += 1
        for cmd in extra:
            chunks.append(command(*cmd))
            ncmd += 1
        batch = _Batch(chunks, ncmd, batch_ticks, first_recv, last_recv, tuple(dirty) if batch_ticks else ())
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
        return self._pending_ticks + self.state.pending_ticks + inflight

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
            payload.insert(0, command("SCRIPT", "LOAD", keys.INGEST_LUA))
            ncmd += 1
        conn = self._conn
        try:
            if conn is None:
                # Checked out of the client's pool (and given back by close()), so the pool's
                # bound counts it; redis-py connects on checkout: a refusal is "unavailable".
                conn = self._conn = self._checkout()
            conn.send_packed_command([b"".join(payload)], check_health=False)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self.unavailable(exc)
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
            self.unavailable(exc)
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

    def unavailable(self, exc: Exception) -> None:
        self.redis_errors += 1
        self._need_script_load = True  # the server may have restarted
        self._release()
        if self.redis_errors == 1 or self.redis_errors % 50 == 0:
            log.warning("feed_redis_unavailable", error=str(exc)[:200], buffered=self._pending_ticks,
                        failures=self.redis_errors)

    def _record_drop(self) -> None:
        missed = self._dropped_unrecorded
        self.state.record_gap("buffer_overflow", sorted(self._dropped_symbols), self._dropped_span[0],
                              self._dropped_span[1], missed)
        log.error("feed_buffer_overflow", dropped=missed, symbols=len(self._dropped_symbols))
        self._dropped_unrecorded = 0
        self._dropped_span = [0, 0]
        self._dropped_symbols = set()

    def health_fields(self) -> list:
        """The sink's figures for the feed's health hash (HSET field/value pairs); resets the
        write-lag average."""
        wlag = self._wlag_sum / self._wlag_n if self._wlag_n else 0.0
        self._wlag_sum = self._wlag_n = 0
        return ["write_lag_ms", round(wlag, 1), "redis_errors", self.redis_errors, "error_replies", self.error_replies,
                "buffered", self.buffered_ticks, "dropped", self.dropped]

    def close(self) -> None:
        """Give the connection back to the client's pool (replies of a batch still in flight are
        read first if possible, so nothing sent is left unaccounted)."""
        if self._inflight is not None and self._conn is not None:
            self._collect()
        self._release()

