"""WebSocket market-data transport (simulator push protocol, [doc §8](../docs/match-trader-api.md) "Streaming").

The real Match-Trader Platform API has no public stream ([doc §4](../docs/match-trader-api.md)); this speaks the
simulator's ``/ws`` protocol, whose ``depth``/``trades`` channels and per-symbol ``seq`` numbers are
simulator EXTENSIONS. Sequence numbers run per (frame type, symbol): a client that subscribes
only to quotes sees a gap-free quote sequence.

Hot path: :func:`parse_frame` is a pure function (``json.loads`` + slotted dataclasses), so the
feed benchmark can drive it without a socket. Gap detection lives in :class:`SequenceTracker`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable

import websocket  # websocket-client

from tradeops.backoff import full_jitter
from tradeops.logging import get_logger

from . import protocol as P
from .events import (
    BUY,
    SELL,
    UNKNOWN_SIDE,
    CandleEvent,
    ConnectionEvent,
    DepthEvent,
    GapEvent,
    MalformedFrame,
    MarketEvent,
    QuoteEvent,
    TradeEvent,
    TransportStats,
)
from .transport import EventSink

log = get_logger(__name__)

_loads = json.loads
_SIDES = {P.SIDE_BUY: BUY, P.SIDE_SELL: SELL}
_IGNORED = frozenset({P.WS_T_PONG, P.WS_T_HEARTBEAT, P.WS_T_SUBSCRIBED, P.WS_T_UNSUBSCRIBED, P.WS_T_POSITIONS,
                      P.WS_T_ORDERS, P.WS_T_BALANCE, P.WS_T_ERROR, P.WS_T_POSITION_CLOSED})
ACCOUNT_TYPES = frozenset({P.WS_T_POSITIONS, P.WS_T_ORDERS, P.WS_T_BALANCE, P.WS_T_POSITION_CLOSED})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _bad(raw, error: str, recv_ms: int, symbol=None) -> list[MarketEvent]:
    text = raw if isinstance(raw, str) else repr(raw)
    return [MalformedFrame(text[:500], error, recv_ms, symbol)]


def _px(value) -> float:
    """A market price: a finite number > 0. ``float()`` alone accepts NaN, Infinity and "-1"
    (JSON allows NaN/Infinity in Python's parser): those frames are malformed."""
    x = float(value)
    if not (0.0 < x < _INF):  # also False for NaN
        raise ValueError(f"price {value!r} is not a finite positive number")
    return x


def _sz(value) -> float:
    """A size: a finite number >= 0."""
    x = float(value)
    if not (0.0 <= x < _INF):
        raise ValueError(f"size {value!r} is not a finite non-negative number")
    return x


_INF = float("inf")


def parse_frame(raw: str | bytes, recv_ms: int) -> list[MarketEvent]:
    """One text frame → market events. Never raises: garbage becomes a ``MalformedFrame``.
    Control/account frames (pong, heartbeat, subscribed, positions...) yield no events."""
    try:
        msg = _loads(raw)
    except (ValueError, TypeError) as e:
        return _bad(raw, f"invalid JSON: {e}", recv_ms)
    if type(msg) is not dict:
        return _bad(raw, "frame is not a JSON object", recv_ms)
    t = msg.get("type")
    try:
        if t == "quote":
            d = msg["data"]
            return [QuoteEvent(d["symbol"], _px(d["bid"]), _px(d["ask"]), int(d["timestampMs"]), recv_ms,
                               msg.get("seq"))]
        if t == "trade":
            d = msg["data"]
            return [TradeEvent(d["symbol"], _px(d["price"]), _sz(d["volume"]),
                               _SIDES.get(d.get("aggressor"), UNKNOWN_SIDE), int(d["timestampMs"]), recv_ms,
                               msg.get("seq"))]
        if t == "depth":
            d = msg["data"]
            return [DepthEvent(d["symbol"], [(_px(p), _sz(s)) for p, s in d["bids"]],
                               [(_px(p), _sz(s)) for p, s in d["asks"]], int(d["timestampMs"]), recv_ms,
                               msg.get("seq"))]
        if t == "candle":
            d = msg["data"]
            return [CandleEvent(msg["symbol"], msg["interval"], int(d["time"]), _px(d["open"]), _px(d["high"]),
                                _px(d["low"]), _px(d["close"]), _sz(d.get("volume") or 0.0),
                                bool(msg.get("closed")), recv_ms)]
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        sym = msg.get("data", {}).get("symbol") if isinstance(msg.get("data"), dict) else None
        return _bad(raw, f"bad {t} frame: {type(e).__name__}: {e}", recv_ms, sym)
    if t in _IGNORED:
        return []
    return _bad(raw, f"unknown frame type {t!r}", recv_ms)


class SequenceTracker:
    """Per (event type, symbol) sequence check: a jump → ``GapEvent(reason="sequence", missed=n)``;
    a lower or equal seq → ``MalformedFrame(kind="out_of_order")`` and the event is dropped."""

    __slots__ = ("_last",)

    def __init__(self):
        self._last: dict[tuple, tuple[int, int]] = {}

    def reset(self) -> None:
        self._last.clear()

    def check(self, ev, raw: str = "") -> tuple[bool, MarketEvent | None]:
        """(keep the event?, extra event to emit before it or None)."""
        seq = ev.seq
        if seq is None:
            return True, None
        key = (type(ev), ev.symbol)
        last = self._last.get(key)
        if last is None or seq == last[0] + 1:
            self._last[key] = (seq, ev.ts_ms)
            return True, None
        if seq <= last[0]:
            text = raw if isinstance(raw, str) else repr(raw)
            return False, MalformedFrame(text[:500], f"seq {seq} after {last[0]}", ev.recv_ms, ev.symbol,
                                         kind="out_of_order")
        gap = GapEvent("sequence", [ev.symbol], last[1], ev.ts_ms, missed=seq - last[0] - 1)
        self._last[key] = (seq, ev.ts_ms)
        return True, gap


class _Closed(Exception):
    def __init__(self, code: int | None):
        super().__init__(f"closed by server (code {code})")
        self.code = code


class WebSocketTransport:
    """Implements ``MarketDataTransport`` over the simulator's ``/ws``."""

    def __init__(self, ws_url: str, auth_headers_provider: Callable[[], dict[str, str]], symbols: Iterable[str],
                 channels: Iterable[str] = (P.WS_CH_QUOTES, P.WS_CH_TRADES, P.WS_CH_DEPTH), *,
                 candle_intervals: Iterable[str] = (), ping_interval: float = 10.0, stale_after: float = 75.0,
                 connect_timeout: float = 5.0, recv_timeout: float = 0.25, backoff_base: float = 0.5,
                 backoff_cap: float = 5.0, on_auth_error: Callable[[], None] | None = None,
                 on_account: Callable[[dict], None] | None = None, rng: random.Random | None = None):
        self.ws_url = ws_url
        self.auth_headers_provider = auth_headers_provider
        self.channels = tuple(c for c in channels if c in (P.WS_CH_QUOTES, P.WS_CH_TRADES, P.WS_CH_DEPTH))
        self.account = P.WS_CH_ACCOUNT in tuple(channels)
        self.candle_intervals = tuple(candle_intervals) or ((("M1",)) if P.WS_CH_CANDLES in tuple(channels) else ())
        self.ping_interval = ping_interval
        self.stale_after = stale_after
        self.connect_timeout = connect_timeout
        self.recv_timeout = recv_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.on_auth_error = on_auth_error
        self.on_account = on_account
        self._rng = rng or random.Random()
        self.stats = TransportStats()
        self._lock = threading.Lock()
        self._desired: set[str] = set(symbols)
        self._dirty = True
        self._subscribed: set[str] = set()
        self.tracker = SequenceTracker()
        self._ws: websocket.WebSocket | None = None
        self._session_data = False  # the current session delivered market data (resets the backoff)

    # -- protocol ----------------------------------------------------------------------------------
    def set_symbols(self, symbols: Iterable[str]) -> None:
        with self._lock:
            self._desired = set(symbols)
            self._dirty = True

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempt-1))).

        The cap is short (5 s, mean wait 2.5 s once capped): a reconnect attempt is one TCP
        handshake from ONE feed process, and every second without market data is a second the
        strategy trades blind; a 30 s cap meant ~15 s of extra gap after the broker came back."""
        return full_jitter(attempt, self.backoff_base, self.backoff_cap, self._rng)

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        attempt = 0
        down_since: int | None = None
        while not stop.is_set():
            try:
                ws = self._connect()
            except Exception as e:  # noqa: BLE001 - every connect failure means "retry later"
                attempt += 1
                status = getattr(e, "status_code", None)
                if status == 401 and self.on_auth_error is not None:
                    self._safe(self.on_auth_error)
                if down_since is None:
                    down_since = now_ms()
                log.info("ws_connect_failed", url=self.ws_url, error=type(e).__name__, status=status, attempt=attempt)
                stop.wait(self.backoff(attempt))
                continue
            self._session_data = False
            connected_at = time.monotonic()
            if down_since is not None:
                self.stats.reconnects += 1
                self.stats.gaps += 1
                with self._lock:
                    syms = sorted(self._desired)
                sink(GapEvent("reconnect", syms, down_since, now_ms()))
            sink(ConnectionEvent("connected", self.stats.reconnects))
            detail = ""
            try:
                self._session(ws, sink, stop)
            except _Closed as e:
                detail = str(e)
                if e.code == P.WS_CLOSE_AUTH_EXPIRED and self.on_auth_error is not None:
                    self._safe(self.on_auth_error)
            except (websocket.WebSocketException, OSError, ValueError) as e:
                detail = f"{type(e).__name__}: {e}"
            finally:
                self._ws = None
                try:
                    ws.close(timeout=0.2)
                except Exception:  # noqa: BLE001
                    pass
            if stop.is_set():
                sink(ConnectionEvent("disconnected", self.stats.reconnects, "stopped"))
                break
            down_since = now_ms()
            sink(ConnectionEvent("disconnected", self.stats.reconnects, detail))
            log.info("ws_disconnected", url=self.ws_url, detail=detail)
            # A session that delivered market data was healthy, however short: reconnect at once
            # and start the backoff from the base again. Only connects that deliver nothing
            # (refused, closed at once, auth) grow the wait toward the cap. (Reset by wall time,
            # sessions cut every 5 s pushed every wait to the cap and lost a third of the quotes.)
            if self._session_data:
                attempt = 0
                if time.monotonic() - connected_at < 1.0:  # data, then cut at once: no reconnect storm
                    stop.wait(self.backoff(1))
                continue
            attempt += 1
            stop.wait(self.backoff(attempt))

    @staticmethod
    def _safe(fn) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            log.warning("ws_auth_refresh_failed", error=type(e).__name__)

    def _connect(self) -> websocket.WebSocket:
        headers = [f"{k}: {v}" for k, v in self.auth_headers_provider().items()]
        ws = websocket.create_connection(self.ws_url, header=headers, timeout=self.connect_timeout,
                                         enable_multithread=True)
        ws.settimeout(self.recv_timeout)
        self._ws = ws
        return ws

    def _send(self, ws, obj: dict) -> None:
        ws.send(json.dumps(obj))

    def _sync_subscriptions(self, ws, initial: bool) -> None:
        with self._lock:
            if not self._dirty and not initial:
                return
            want = set(self._desired)
            self._dirty = False
        if initial:
            self._subscribed = set()
            if self.account:
                self._send(ws, {P.WS_OP: P.WS_OP_SUBSCRIBE, P.WS_CHANNEL: P.WS_CH_ACCOUNT})
        add = sorted(want - self._subscribed)
        remove = sorted(self._subscribed - want)
        for ch in self.channels:
            if add:
                self._send(ws, {P.WS_OP: P.WS_OP_SUBSCRIBE, P.WS_CHANNEL: ch, P.F_SYMBOLS: add})
            if remove:
                self._send(ws, {P.WS_OP: P.WS_OP_UNSUBSCRIBE, P.WS_CHANNEL: ch, P.F_SYMBOLS: remove})
        for iv in self.candle_intervals:
            for s in add:
                self._send(ws, {P.WS_OP: P.WS_OP_SUBSCRIBE, P.WS_CHANNEL: P.WS_CH_CANDLES, P.F_SYMBOL: s,
                                P.F_INTERVAL: iv})
            for s in remove:
                self._send(ws, {P.WS_OP: P.WS_OP_UNSUBSCRIBE, P.WS_CHANNEL: P.WS_CH_CANDLES, P.F_SYMBOL: s,
                                P.F_INTERVAL: iv})
        self._subscribed = want

    def _session(self, ws, sink: EventSink, stop: threading.Event) -> None:
        self.tracker.reset()  # sequences re-base after a reconnect (the reconnect gap covers the hole)
        self._sync_subscriptions(ws, initial=True)
        stats = self.stats
        tracker = self.tracker
        last_rx = last_ping = time.monotonic()
        while not stop.is_set():
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                opcode, data = None, None
            mono = time.monotonic()
            if opcode is not None:
                last_rx = mono
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise _Closed(int.from_bytes(data[:2], "big") if data and len(data) >= 2 else None)
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    raw = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
                    stats.frames += 1
                    recv = now_ms()
                    events = parse_frame(raw, recv)
                    if not events and self.on_account is not None and '"type"' in raw:
                        self._maybe_account(raw)
                    for ev in events:
                        if type(ev) is MalformedFrame:
                            stats.malformed += 1
                            sink(ev)
                            continue
                        self._session_data = True  # market data received: a healthy session
                        if getattr(ev, "seq", None) is not None:
                            keep, extra = tracker.check(ev, raw)
                            if extra is not None:
                                if type(extra) is MalformedFrame:
                                    stats.out_of_order += 1
                                else:
                                    stats.gaps += 1
                                sink(extra)
                            if not keep:
                                continue
                        sink(ev)
            if mono - last_ping >= self.ping_interval:
                last_ping = mono
                self._send(ws, {P.WS_OP: P.WS_OP_PING})
            if mono - last_rx > self.stale_after:
                raise websocket.WebSocketTimeoutException(f"no frame for {self.stale_after:.0f}s")
            if self._dirty:
                self._sync_subscriptions(ws, initial=False)

    def _maybe_account(self, raw: str) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        if isinstance(msg, dict) and msg.get("type") in ACCOUNT_TYPES:
            self._safe(lambda: self.on_account(msg))
