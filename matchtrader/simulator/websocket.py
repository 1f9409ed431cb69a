"""The WebSocket face: subscriptions, per-client bounded queues, tick fan-out and account pushes.

Each client gets a bounded queue drained by its own writer task; a client that cannot keep up is
closed (1013) rather than allowed to grow memory. Sequence numbers are per (kind, symbol) so the
feed can detect gaps; the fault knobs inject truncated and replayed frames here.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import WSMsgType, web

from .. import protocol as P
from .auth import AuthError
from .exchange import closed_row_json
from .market import Tick
from .validation import Invalid, check_closed_positions, decode_json
from .wire import BadRequest, err, json_default, now_ms, parse_time_ms


class WsConn:
    """One WebSocket client: its subscriptions and a bounded outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse, uuid: str, session, maxsize: int):
        self.ws = ws
        self.uuid = uuid
        self.session = session
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=maxsize)
        self.subs: dict[str, set] = {P.WS_CH_QUOTES: set(), P.WS_CH_TRADES: set(), P.WS_CH_DEPTH: set()}
        self.candles: set[tuple[str, str]] = set()
        self.account = False
        self.opened = time.monotonic()
        self.last_frame: dict[tuple, str] = {}  # key -> previous frame (for out-of-order injection)

    def put(self, frame: str) -> bool:
        try:
            self.queue.put_nowait(frame)
            return True
        except asyncio.QueueFull:
            return False



class WsHub:
    """Every open WebSocket client, and the frames pushed to them."""

    def __init__(self, sim):
        self.sim = sim
        self.market = sim.market
        self.exchange = sim.exchange
        self.faults = sim.faults
        self.sessions = sim.sessions
        self.stats = sim.stats
        self.conns: set[WsConn] = set()
        self.seq: dict[tuple[str, str], int] = {}

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_get(P.PATH_WS, self.ws_handler)
        r.add_get(P.PATH_WS_CLOSED_SNAPSHOT, self.ws_closed_snapshot)

    async def close_all(self, code: int, message: bytes) -> None:
        for c in list(self.conns):
            self.conns.discard(c)
            await c.ws.close(code=code, message=message)

    def close_later(self, conn: WsConn, code: int, message: bytes) -> None:
        self.conns.discard(conn)
        asyncio.ensure_future(conn.ws.close(code=code, message=message))

    def _ws_auth(self, request: web.Request):
        token = request.headers.get(P.HDR_TRADING_TOKEN)
        found = self.sessions.by_trading.get(token or "")
        if found is None:
            raise AuthError(401, "Invalid trading api token")
        s, uuid = found
        want = request.query.get("uuid")
        if want and want != uuid:
            raise AuthError(401, "Token does not belong to this account")
        self.sessions.check(uuid, token, request.cookies.get(P.COOKIE_AUTH), self.faults.config.strict_auth, time.time())
        return s, uuid

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        try:
            session, uuid = self._ws_auth(request)
        except AuthError as e:
            return err(e.status, e.message)
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=1 << 20, compress=False)
        await ws.prepare(request)
        conn = WsConn(ws, uuid, session, self.sim.config.ws_queue_max)
        self.conns.add(conn)
        self.stats["ws_connections"] += 1
        writer = asyncio.create_task(self._ws_writer(conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._ws_command(conn, msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self.conns.discard(conn)
            writer.cancel()
            try:
                await writer
            except (asyncio.CancelledError, Exception):
                pass
        return ws

    async def _ws_writer(self, conn: WsConn) -> None:
        ws = conn.ws
        try:
            while not ws.closed:
                frame = await conn.queue.get()
                await ws.send_str(frame)
                self.stats["ws_frames"] += 1
        except (ConnectionError, RuntimeError):
            pass

    def send(self, conn: WsConn, data: dict) -> None:
        if not conn.put(json.dumps(data, default=json_default)):
            self.drop_slow(conn)

    def drop_slow(self, conn: WsConn) -> None:
        self.stats["slow_consumers_dropped"] += 1
        self.conns.discard(conn)
        asyncio.ensure_future(conn.ws.close(code=1013, message=b"slow consumer"))

    def _ws_command(self, conn: WsConn, text: str) -> None:
        try:
            msg = json.loads(text)
            if not isinstance(msg, dict):
                raise ValueError("frame must be an object")
            op = msg.get(P.WS_OP)
            if op == P.WS_OP_PING:
                self.send(conn, {P.WS_TYPE: P.WS_T_PONG, P.F_TIMESTAMP_MS: now_ms()})
                return
            if op not in (P.WS_OP_SUBSCRIBE, P.WS_OP_UNSUBSCRIBE):
                raise ValueError(f"unknown op {op!r}")
            ch = msg.get(P.WS_CHANNEL)
            add = op == P.WS_OP_SUBSCRIBE
            reply = {P.WS_TYPE: P.WS_T_SUBSCRIBED if add else P.WS_T_UNSUBSCRIBED, P.WS_CHANNEL: ch}
            if ch in conn.subs:
                syms = msg.get(P.F_SYMBOLS)
                if not isinstance(syms, list) or not all(isinstance(s, str) for s in syms):
                    raise ValueError("'symbols' must be a list of strings")
                unknown = [s for s in syms if s not in self.market.states]
                known = [s for s in syms if s in self.market.states]
                (conn.subs[ch].update if add else conn.subs[ch].difference_update)(known)
                reply[P.F_SYMBOLS] = known
                if unknown:
                    reply["unknown"] = unknown
            elif ch == P.WS_CH_CANDLES:
                sym, interval = msg.get(P.F_SYMBOL), msg.get(P.F_INTERVAL, "M1")
                if sym not in self.market.states or interval not in P.INTERVAL_SECONDS:
                    raise ValueError("candles needs a known 'symbol' and a valid 'interval'")
                (conn.candles.add if add else conn.candles.discard)((sym, interval))
                reply.update({P.F_SYMBOL: sym, P.F_INTERVAL: interval})
            elif ch == P.WS_CH_ACCOUNT:
                conn.account = add
            else:
                raise ValueError(f"unknown channel {ch!r}")
            self.send(conn, reply)
            if add and ch == P.WS_CH_ACCOUNT:
                self.push_account(conn)
        except ValueError as e:
            self.send(conn, {P.WS_TYPE: P.WS_T_ERROR, "code": P.WS_ERR_BAD_REQUEST, "message": str(e)})

    def push_account(self, conn: WsConn) -> None:
        ex = self.exchange
        self.send(conn, {P.WS_TYPE: P.WS_T_POSITIONS, P.WS_DATA: {"positions": ex.positions_json(conn.uuid)}})
        self.send(conn, {P.WS_TYPE: P.WS_T_ORDERS, P.WS_DATA: {"orders": ex.orders_json(conn.uuid)}})
        self.push_balance(conn)

    def push_balance(self, conn: WsConn) -> None:
        summary = self.exchange.account_summary(self.exchange.accounts[conn.uuid])
        self.send(conn, {P.WS_TYPE: P.WS_T_BALANCE, P.WS_DATA: summary})

    async def ws_closed_snapshot(self, request: web.Request) -> web.StreamResponse:
        """The documented one-shot command ([doc §4](../../docs/match-trader-api.md)): one request frame in, one
        ``{"operations"}`` out."""
        try:
            _s, uuid = self._ws_auth(request)
        except AuthError as e:
            return err(e.status, e.message)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            msg = await ws.receive(timeout=30)
            # the same refusals as the REST /closed-positions (validation.py): no NaN, sane times
            body = decode_json(msg.data.encode(), None) if msg.type == WSMsgType.TEXT else None
            check_closed_positions(uuid, body, {}, None)
            ops = self.exchange.closed_json(uuid, parse_time_ms(body.get("from"), "from"),
                                            parse_time_ms(body.get("to"), "to"), body.get("symbols") or None)
            await ws.send_str(json.dumps({"operations": ops}, default=json_default))
        except (BadRequest, ValueError, Invalid, TimeoutError) as e:
            await ws.send_str(json.dumps({P.WS_TYPE: P.WS_T_ERROR, "code": P.WS_ERR_BAD_REQUEST,
                                          "message": str(e) or "no request frame in time"}))
        await ws.close()
        return ws

    def _next_seq(self, kind: str, symbol: str) -> int:
        key = (kind, symbol)
        n = self.seq.get(key, 0) + 1
        self.seq[key] = n
        return n

    def _broadcast(self, key: tuple, frame: str, targets) -> None:
        f = self.faults
        inject = f.config.p_ws_malformed > 0 or f.config.p_ws_out_of_order > 0
        for c in targets:
            if not c.put(frame):
                self.drop_slow(c)
                continue
            if inject:
                if f.roll("p_ws_malformed"):
                    c.put(frame[: max(1, len(frame) // 2)])  # truncated JSON
                prev = c.last_frame.get(key)
                if prev is not None and f.roll("p_ws_out_of_order"):
                    c.put(prev)  # an older seq replayed after a newer one
                c.last_frame[key] = frame

    def broadcast_tick(self, t: Tick) -> None:
        sym = t.symbol
        conns = list(self.conns)
        q_t = [c for c in conns if sym in c.subs[P.WS_CH_QUOTES]]
        if q_t:
            frame = json.dumps({P.WS_TYPE: P.WS_T_QUOTE, P.WS_SEQ: self._next_seq("quote", sym), P.WS_DATA: {
                "symbol": sym, "bid": t.bid, "ask": t.ask, "high": self.market.states[sym].day_high,
                "low": self.market.states[sym].day_low, "timestampMs": t.ts_ms}})
            self._broadcast(("quote", sym), frame, q_t)
        tr_t = [c for c in conns if sym in c.subs[P.WS_CH_TRADES]]
        if tr_t:
            for tr in t.trades:
                frame = json.dumps({P.WS_TYPE: P.WS_T_TRADE, P.WS_SEQ: self._next_seq("trade", sym), P.WS_DATA: {
                    "symbol": sym, "price": tr.price, "volume": tr.volume,
                    P.F_AGGRESSOR: P.SIDE_BUY if tr.side > 0 else P.SIDE_SELL, "timestampMs": t.ts_ms}})
                self._broadcast(("trade", sym), frame, tr_t)
        d_t = [c for c in conns if sym in c.subs[P.WS_CH_DEPTH]]
        if d_t:
            frame = json.dumps({P.WS_TYPE: P.WS_T_DEPTH, P.WS_SEQ: self._next_seq("depth", sym), P.WS_DATA: {
                "symbol": sym, "bids": t.bids, "asks": t.asks, "timestampMs": t.ts_ms}})
            self._broadcast(("depth", sym), frame, d_t)
        c_subs: dict[str, list] = {}
        for c in conns:
            for s, iv in c.candles:
                if s == sym:
                    c_subs.setdefault(iv, []).append(c)
        for iv, targets in c_subs.items():
            for closed, row in self._candle_rows(t, iv):
                frame = json.dumps({P.WS_TYPE: P.WS_T_CANDLE, P.WS_SEQ: self._next_seq("candle:" + iv, sym),
                                    P.F_SYMBOL: sym, P.F_INTERVAL: iv, P.F_CLOSED: closed, P.F_TIMESTAMP_MS: t.ts_ms,
                                    P.WS_DATA: dict(zip(("time", "open", "high", "low", "close", "volume"), row))})
                self._broadcast(("candle:" + iv, sym), frame, targets)

    def _candle_rows(self, t: Tick, interval: str):
        size = P.INTERVAL_SECONDS[interval] * 1000
        out = []
        if t.closed_candle is not None:
            end = t.closed_candle[0] + 60_000
            if interval == "M1":
                out.append((True, t.closed_candle))
            elif end % size == 0:
                rows = self.market.candles(t.symbol, interval, end - size, end - size)
                if rows:
                    out.append((True, rows[-1]))
        if interval == "M1":
            out.append((False, t.candle))
        else:
            b = t.ts_ms // size * size
            rows = self.market.candles(t.symbol, interval, b, b)
            if rows:
                out.append((False, rows[-1]))
        return out

    def flush_dirty(self) -> None:
        ex = self.exchange
        if not ex.dirty:
            return
        with ex.lock:
            dirty, ex.dirty = ex.dirty, set()
        closes = ex.drain_close_events()
        subscribers = [c for c in list(self.conns) if c.account and c.uuid in dirty]
        for uuid, row in closes:  # EXT positionClosed: before the snapshots, numbered per account
            seq = self._next_seq(P.WS_T_POSITION_CLOSED, uuid)
            frame = {P.WS_TYPE: P.WS_T_POSITION_CLOSED, P.WS_SEQ: seq, P.WS_DATA: closed_row_json(row)}
            for c in subscribers:
                if c.uuid == uuid:
                    self.send(c, frame)
        for c in subscribers:
            self.push_account(c)
