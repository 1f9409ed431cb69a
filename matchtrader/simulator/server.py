"""The simulator's aiohttp server: broker REST + WebSocket on one port, plus the ``/_sim/`` control API.

Thin I/O around pure parts: :class:`Market` (prices), :class:`Exchange` (books), :class:`Sessions`
(auth) and :class:`FaultInjector`. The market loop steps prices at ``tick_rate``, feeds quotes to
the exchange (pending orders, SL/TP) and pushes frames to WebSocket subscribers.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from datetime import datetime
from decimal import Decimal, InvalidOperation

from aiohttp import WSMsgType, web

from tradeops.logging import get_logger

from .. import protocol as P
from .auth import AuthError, Sessions
from .config import SimConfig
from .exchange import Exchange, Reject
from .faults import FaultInjector
from .market import Market, Tick

log = get_logger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _json_default(o):
    if isinstance(o, Decimal):
        return str(o)
    raise TypeError(type(o).__name__)


def jresp(data, status: int = 200, headers=None) -> web.Response:
    return web.Response(text=json.dumps(data, default=_json_default), status=status,
                        content_type="application/json", headers=headers)


def err(status: int, message: str, headers=None) -> web.Response:
    return jresp({P.F_ERROR_MESSAGE: message}, status, headers)


def op_ok(order_id: str | None) -> dict:
    return {P.F_STATUS: P.STATUS_OK, P.F_NATIVE_CODE: None, P.F_ERROR_MESSAGE: "", P.F_ORDER_ID: order_id}


def op_rejected(code: str, message: str) -> dict:
    return {P.F_STATUS: P.STATUS_REJECTED, P.F_NATIVE_CODE: code, P.F_ERROR_MESSAGE: message, P.F_ORDER_ID: None}


class BadRequest(Exception):
    pass


# --- request body helpers -------------------------------------------------------------------------
def _field(body: dict, key: str, required: bool = True):
    if key not in body or body[key] is None:
        if required:
            raise BadRequest(f"Field '{key}' is required")
        return None
    return body[key]


def _decimal(body: dict, key: str, required: bool = True) -> Decimal | None:
    v = _field(body, key, required)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise BadRequest(f"Field '{key}' must be a number")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise BadRequest(f"Field '{key}' must be a number") from None
    if not d.is_finite():
        raise BadRequest(f"Field '{key}' must be a finite number")
    return d


def _price_or_none(body: dict, key: str) -> Decimal | None:
    d = _decimal(body, key, required=False)
    return None if d is None or d == 0 else d  # 0 means "none" [OBS]


def _side(body: dict, key: str = P.F_ORDER_SIDE) -> str:
    v = _field(body, key)
    if not isinstance(v, str) or v.upper() not in P.SIDES:
        raise BadRequest(f"Field '{key}' must be BUY or SELL")
    return v.upper()


def _parse_time_ms(v, name: str) -> int:
    if v is None or v == "":
        raise BadRequest(f"Parameter '{name}' is required")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return int(v)
    s = str(v)
    if s.isdigit():
        return int(s)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"Parameter '{name}' must be an ISO-8601 time or epoch ms") from None
    if dt.tzinfo is None:
        from datetime import UTC

        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


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


class Simulator:
    def __init__(self, config: SimConfig):
        self.config = config
        self.started_ms = now_ms()
        self.market = Market(
            config.symbols, seed=config.seed, now_ms=self.started_ms, tick_rate=config.tick_rate,
            history_minutes=config.history_minutes, replay=config.replay,
            replay_ticks_per_bar=config.replay_ticks_per_bar, volatility_scale=config.volatility_scale,
            surges_per_hour=config.surges_per_hour, depth_levels=config.depth_levels,
        )
        self.exchange = Exchange({s: st.spec for s, st in self.market.states.items()},
                                 commission_per_lot=config.commission_per_lot, slippage_points=config.slippage_points)
        self.faults = FaultInjector(config.faults, seed=config.seed)
        self.sessions = Sessions()
        self.conns: set[WsConn] = set()
        self.seq: dict[tuple[str, str], int] = {}
        self.rate: dict[str, deque] = {}
        self.stats = {"requests": 0, "ws_frames": 0, "ws_connections": 0, "ticks": 0, "slow_consumers_dropped": 0}
        self._tasks: list[asyncio.Task] = []
        self._last_tick_ms: dict[str, int] = {}
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        for sym in self.market.symbols:
            bid, ask = self.market.quote(sym)
            self.exchange.on_quote(sym, self._d(sym, bid), self._d(sym, ask), self.started_ms)
        self.exchange.closed_symbols = set(config.faults.closed_symbols)

    def _d(self, symbol: str, x: float) -> Decimal:
        prec = self.market.states[symbol].spec.price_precision
        return Decimal(f"{x:.{prec}f}")

    # -- app ---------------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        r = app.router
        r.add_get(P.PATH_PLATFORM_DETAILS, self.platform_details)
        r.add_post(P.PATH_LOGIN, self.login)
        r.add_post(P.PATH_LOGIN_ALIAS, self.login)
        r.add_post(P.PATH_REFRESH, self.refresh)
        r.add_route("*", "/mtr-api/{uuid}/{tail:.*}", self.trading)
        r.add_get(P.PATH_WS, self.ws_handler)
        r.add_get(P.PATH_WS_CLOSED_SNAPSHOT, self.ws_closed_snapshot)
        r.add_post("/_sim/accounts", self.c_create_accounts)
        r.add_get("/_sim/accounts/{uuid}/ledger", self.c_ledger)
        r.add_get("/_sim/faults", self.c_get_faults)
        r.add_post("/_sim/faults", self.c_set_faults)
        r.add_post("/_sim/surge", self.c_surge)
        r.add_post("/_sim/positions/{id}/close", self.c_close_position)
        r.add_post("/_sim/market", self.c_market)
        r.add_post("/_sim/ws/drop", self.c_ws_drop)
        r.add_post("/_sim/sessions/expire", self.c_expire_sessions)
        r.add_get("/_sim/stats", self.c_stats)
        r.add_get("/_sim/health", self.c_health)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        app = self.build_app()
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host or self.config.host,
                           self.config.port if port is None else port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self._market_loop()), asyncio.create_task(self._housekeeping_loop())]
        log.info("simulator_started", host=host or self.config.host, port=self.port, symbols=len(self.market.symbols),
                 seed=self.config.seed)
        return self.port

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self.runner is not None:
            await self.runner.cleanup()
        log.info("simulator_stopped")

    async def _on_shutdown(self, _app) -> None:
        for c in list(self.conns):
            await c.ws.close(code=1001, message=b"server shutdown")

    # -- /manager ----------------------------------------------------------------------------------
    async def platform_details(self, request: web.Request) -> web.Response:
        origin = f"{request.scheme}://{request.host}"
        return jresp({"partnerId": "0", "brokerName": "Simulator", "platformUrl": origin, "currency": "USD"})

    async def _json_body(self, request: web.Request):
        text = await request.text()
        if not text.strip():
            raise BadRequest("Request body is empty")
        try:
            return json.loads(text)
        except ValueError:
            raise BadRequest("Malformed JSON body") from None

    async def login(self, request: web.Request) -> web.Response:
        self.stats["requests"] += 1
        try:
            body = await self._json_body(request)
            if not isinstance(body, dict):
                raise BadRequest("Body must be a JSON object")
            email, password = _field(body, P.F_EMAIL), _field(body, P.F_PASSWORD)
            broker = body.get(P.F_BROKER_ID, body.get("partnerId", "0"))
        except BadRequest as e:
            return err(400, str(e))
        uuids = self.exchange.by_email.get((str(email).lower(), str(broker)), [])
        accs = [self.exchange.accounts[u] for u in uuids if self.exchange.accounts[u].password == password]
        if not accs:
            return err(401, "Invalid credentials")
        s = self.sessions.login(accs[0].email, [a.uuid for a in accs], self.faults.config.token_ttl_s, time.time())
        origin = f"{request.scheme}://{request.host}"
        items = []
        for a in accs:
            system = {"demo": True, "name": "SIM", "uuid": a.uuid, "active": True, "systemType": "MTR",
                      "tradingApiDomain": origin}
            offer = {"uuid": f"offer-{a.uuid[:8]}", "partnerId": a.broker_id, "created": "2026-01-01T00:00:00.000Z",
                     "name": "Simulator USD", "description": "simulated hedging account", "initialDeposit": 0,
                     "demo": True, "branch": {"uuid": "branch-sim"}, "system": system, "moneyManager": "",
                     "currency": a.currency, "hidden": False, "leverage": a.leverage}
            items.append({"tradingAccountId": a.trading_account_id, "offer": offer,
                          "tradingApiToken": s.trading_tokens[a.uuid], "branchUuid": "branch-sim",
                          "created": "2026-01-01T00:00:00.000Z", "uuid": a.uuid,
                          "tradingAccountToken": {"token": s.trading_tokens[a.uuid],
                                                  "expiration": int(s.expires_at * 1000)}})
        sel = dict(items[0], group="sim", leverage=accs[0].leverage, isRetail=True, isProView=False)
        resp = jresp({"email": accs[0].email, "token": s.co_auth, "accounts": items, "tradingAccounts": items,
                      "selectedTradingAccount": sel, "selectedAccount": sel,
                      "accountInfo": {"uuid": accs[0].uuid, "email": accs[0].email, "partnerId": accs[0].broker_id}})
        self._set_cookies(resp, s)
        return resp

    def _set_cookies(self, resp: web.Response, s) -> None:
        resp.set_cookie(P.COOKIE_AUTH, s.co_auth, path="/", httponly=True)
        resp.set_cookie(P.COOKIE_REFRESH, s.rt, path="/", httponly=True)

    async def refresh(self, request: web.Request) -> web.Response:
        self.stats["requests"] += 1
        c = self.faults.config
        try:
            s = self.sessions.refresh(request.cookies.get(P.COOKIE_REFRESH), request.cookies.get(P.COOKIE_AUTH),
                                      c.token_ttl_s, c.refresh_limit_per_hour, time.time())
        except AuthError as e:
            headers = {P.HDR_RETRY_AFTER: "900"} if e.status == 429 else None
            return err(e.status, e.message, headers)
        resp = web.Response(status=200, body=b"")  # live: 200 with an EMPTY body [OBS S4]
        self._set_cookies(resp, s)
        return resp

    # -- /mtr-api/{uuid}/* ------------------------------------------------------------------------
    ROUTES = {
        ("GET", P.P_BALANCE): "r_balance",
        ("GET", P.P_INSTRUMENTS): "r_instruments",
        ("GET", P.P_QUOTATIONS): "r_quotations",
        ("GET", P.P_CANDLES): "r_candles",
        ("GET", P.P_OPEN_POSITIONS): "r_open_positions",
        ("GET", P.P_ACTIVE_ORDERS): "r_active_orders",
        ("POST", P.P_CLOSED_POSITIONS): "r_closed_positions",
        ("POST", P.P_LAST_FINANCE): "r_last_finance",
        ("POST", P.P_POSITION_OPEN): "w_open",
        ("POST", P.P_POSITION_EDIT): "w_edit",
        ("POST", P.P_POSITION_CLOSE): "w_close",
        ("POST", P.P_POSITIONS_CLOSE): "w_close_many",
        ("POST", P.P_POSITION_CLOSE_PARTIALLY): "w_close_partially",
        ("POST", P.P_PENDING_CREATE): "w_pending_create",
        ("POST", P.P_PENDING_EDIT): "w_pending_edit",
        ("POST", P.P_PENDING_CANCEL): "w_pending_cancel",
    }

    def _rate_limited(self, uuid: str) -> float | None:
        limit = self.faults.config.rate_limit_per_min
        if not limit:
            return None
        now = time.monotonic()
        dq = self.rate.setdefault(uuid, deque())
        while dq and dq[0] <= now - 60:
            dq.popleft()
        if len(dq) >= limit:
            return max(0.1, 60 - (now - dq[0]))
        dq.append(now)
        return None

    async def trading(self, request: web.Request) -> web.StreamResponse:
        self.stats["requests"] += 1
        uuid = request.match_info["uuid"]
        tail = "/" + request.match_info["tail"]
        route = self.ROUTES.get((request.method, tail))
        if route is None:
            return err(404 if not any(t == tail for _, t in self.ROUTES) else 405, f"No such endpoint {request.method} {tail}")
        acc = self.exchange.accounts.get(uuid)
        if acc is None:
            return err(404, "Unknown system uuid")
        fc = self.faults.config
        try:
            self.sessions.check(uuid, request.headers.get(P.HDR_TRADING_TOKEN), request.cookies.get(P.COOKIE_AUTH),
                                fc.strict_auth, time.time())
        except AuthError as e:
            return err(e.status, e.message)
        is_write = tail in P.WRITE_PATHS
        raw = await request.text() if request.method == "POST" else ""
        ts = now_ms()
        if is_write:
            self.exchange.record(uuid, {"kind": "request", "path": tail, "body": raw[:2000], "ts": ts})
        retry = self._rate_limited(uuid)
        if retry is not None:
            return err(429, "Too many requests", {P.HDR_RETRY_AFTER: str(math.ceil(retry))})
        f = self.faults
        if f.in_scope(is_write):
            lat = f.latency_s()
            if lat:
                await asyncio.sleep(lat)
            if f.roll("p_403"):
                return web.Response(status=403, text="<html><title>Just a moment...</title></html>",
                                    content_type="text/html", headers={"cf-mitigated": "challenge"})
            if f.roll("p_429"):
                return err(429, "Too many requests", {P.HDR_RETRY_AFTER: f"{fc.retry_after_s:g}"})
            if f.roll("p_5xx"):
                return err(503, "Service temporarily unavailable (injected)")
            if f.roll("p_garbage"):
                return web.Response(status=200, text='{"status": "OK", "ord', content_type="application/json")
        try:
            body = None
            if request.method == "POST":
                if not raw.strip():
                    raise BadRequest("Request body is empty")
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise BadRequest("Malformed JSON body") from None
            if is_write and tail in (P.P_POSITION_OPEN, P.P_PENDING_CREATE) and f.roll("p_reject"):
                result = op_rejected(fc.reject_code, "Rejected (injected)")
            else:
                result = getattr(self, route)(acc.uuid, request, body, ts)
        except BadRequest as e:
            return err(400, str(e))
        except Reject as e:
            result = op_rejected(e.code, e.message)
        if is_write:
            if result.get(P.F_STATUS) == P.STATUS_OK and f.roll("p_lost"):
                log.info("sim_fault_lost_response", path=tail, mode=fc.lost_mode)
                self.exchange.record(uuid, {"kind": "fault", "fault": "lost_response", "mode": fc.lost_mode,
                                            "path": tail, "ts": now_ms()})
                if fc.lost_mode == "5xx":
                    return err(502, "Bad gateway (injected after execution)")
                if fc.lost_mode == "timeout":
                    await asyncio.sleep(fc.lost_sleep_s)
                else:  # drop: close the socket without answering
                    if request.transport is not None:
                        request.transport.abort()
        return jresp(result)

    # reads
    def r_balance(self, uuid, request, body, ts):
        return self.exchange.account_summary(self.exchange.accounts[uuid])

    def r_instruments(self, uuid, request, body, ts):
        out = []
        for sym, st in self.market.states.items():
            sp = st.spec
            out.append({
                "symbol": sym, "alias": sym, "description": sp.description or sym, "type": sp.type,
                "baseCurrency": sp.base, "quoteCurrency": sp.quote, "pricePrecision": sp.price_precision,
                "volumePrecision": sp.volume_precision, "volumeMin": str(sp.volume_min),
                "volumeMax": str(sp.volume_max), "volumeStep": str(sp.volume_step),
                "contractSize": str(sp.contract_size), "sizeOfOnePoint": str(Decimal(1).scaleb(-sp.price_precision)),
                "sessionOpen": sym not in self.exchange.closed_symbols,
                "tradingHours": [{"dayNumber": d, "openHours": 0, "openMinutes": 0, "openSeconds": 0,
                                  "closeHours": 23, "closeMinutes": 59, "closeSeconds": 59} for d in range(7)],
                "askMarkup": 0, "bidMarkup": 0, "leverage": 100, "fixedLeverage": False, "multiplier": 1,
                "stopsLevel": 0, "freezeLevel": 0, "swapBuy": 0, "swapSell": 0, "tags": [],
            })
        return out

    def _quote_json(self, sym: str) -> dict:
        st = self.market.states[sym]
        bid, ask = self.market.quote(sym)
        return {"symbol": sym, "alias": sym, "bid": bid, "ask": ask, "high": st.day_high, "low": st.day_low,
                "change": 0, "timestampMs": self._last_tick_ms.get(sym, self.started_ms),
                "timestampSec": self._last_tick_ms.get(sym, self.started_ms) // 1000}

    def r_quotations(self, uuid, request, body, ts):
        raw = request.query.get(P.F_SYMBOLS, "")
        syms = [s for s in (x.strip() for x in raw.split(",")) if s] or self.market.symbols
        return [self._quote_json(s) for s in syms if s in self.market.states]  # unknown symbols are skipped

    def r_candles(self, uuid, request, body, ts):
        q = request.query
        sym = q.get(P.F_SYMBOL)
        if not sym:
            raise BadRequest("Parameter 'symbol' is required")
        if sym not in self.market.states:
            raise BadRequest(f"Unknown symbol {sym!r}")
        interval = q.get(P.F_INTERVAL, "")
        if interval not in P.INTERVAL_SECONDS:
            raise BadRequest("Invalid interval")
        frm = _parse_time_ms(q.get(P.F_FROM), P.F_FROM)
        to = _parse_time_ms(q.get(P.F_TO), P.F_TO) if q.get(P.F_TO) else ts
        if frm > to:
            raise BadRequest("'from' is after 'to'")
        rows = self.market.candles(sym, interval, frm, to)
        return {"symbol": sym, "interval": interval,
                "candles": [{"time": t, "open": o, "high": h, "low": lo, "close": c, "volume": v}
                            for t, o, h, lo, c, v in rows]}

    def r_open_positions(self, uuid, request, body, ts):
        return {"positions": self.exchange.positions_json(uuid)}

    def r_active_orders(self, uuid, request, body, ts):
        return {"orders": self.exchange.orders_json(uuid)}

    def r_closed_positions(self, uuid, request, body, ts):
        if not isinstance(body, dict):
            raise BadRequest("Body must be a JSON object")
        frm = _parse_time_ms(body.get(P.F_FROM), P.F_FROM)
        to = _parse_time_ms(body.get(P.F_TO), P.F_TO)
        symbols = body.get(P.F_SYMBOLS) or None
        if symbols is not None and not isinstance(symbols, list):
            raise BadRequest("Field 'symbols' must be a list")
        return {"operations": self.exchange.closed_json(uuid, frm, to, symbols)}

    def r_last_finance(self, uuid, request, body, ts):
        if not isinstance(body, dict):
            raise BadRequest("Body must be a JSON object")
        types = body.get("types") or ["DEPOSIT"]
        size = body.get("resultSize", 100)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest("Field 'resultSize' must be a non-negative integer")
        from .exchange import _iso

        ops = [dict(o, time=_iso(o["time"]), profit=str(o["profit"]))
               for o in self.exchange.accounts[uuid].finance if o["type"] in types]
        return {"operations": ops[:size]}

    # writes
    @staticmethod
    def _obj(body) -> dict:
        if not isinstance(body, dict):
            raise BadRequest("Body must be a JSON object")
        return body

    def w_open(self, uuid, request, body, ts):
        b = self._obj(body)
        sym = _field(b, P.F_INSTRUMENT)
        oid, _pid = self.exchange.open_position(uuid, sym, _side(b), _decimal(b, P.F_VOLUME),
                                                _price_or_none(b, P.F_SL_PRICE), _price_or_none(b, P.F_TP_PRICE), ts)
        return op_ok(oid)

    def w_edit(self, uuid, request, body, ts):
        b = self._obj(body)
        pid = _field(b, P.F_ID)
        oid = self.exchange.edit_position(uuid, pid, _price_or_none(b, P.F_SL_PRICE), _price_or_none(b, P.F_TP_PRICE), ts)
        return op_ok(oid)

    def w_close(self, uuid, request, body, ts):
        b = self._obj(body)
        pid = _field(b, P.F_POSITION_ID)
        vol = _decimal(b, P.F_VOLUME, required=False)
        return op_ok(self.exchange.close_position(uuid, pid, vol, ts))

    def w_close_many(self, uuid, request, body, ts):
        items = body.get("ids") if isinstance(body, dict) else body  # newer web-app shape {"ids":[...]} [CODE S6]
        if not isinstance(items, list) or not items:
            raise BadRequest("Body must be a non-empty JSON array of positions")
        results, last = [], None
        for it in items:
            pid = it if isinstance(it, str) else (it.get(P.F_POSITION_ID) if isinstance(it, dict) else None)
            if pid is None:
                raise BadRequest("Each item needs 'positionId'")
            try:
                vol = _decimal(it, P.F_VOLUME, required=False) if isinstance(it, dict) else None
                last = self.exchange.close_position(uuid, pid, vol, ts)
                results.append(op_ok(last))
            except Reject as e:
                results.append(dict(op_rejected(e.code, e.message), positionId=pid))
        failed = [r for r in results if r[P.F_STATUS] != P.STATUS_OK]
        if not failed:
            return dict(op_ok(last), results=results)
        status = P.STATUS_REJECTED if len(failed) == len(results) else P.STATUS_PARTIAL_SUCCESS
        return {P.F_STATUS: status, P.F_NATIVE_CODE: failed[0][P.F_NATIVE_CODE],
                P.F_ERROR_MESSAGE: failed[0][P.F_ERROR_MESSAGE], P.F_ORDER_ID: last, "results": results}

    def w_close_partially(self, uuid, request, body, ts):
        b = self._obj(body)
        return op_ok(self.exchange.close_position(uuid, _field(b, P.F_POSITION_ID), _decimal(b, P.F_VOLUME), ts))

    def _otype(self, b: dict) -> str:
        t = _field(b, P.F_TYPE)
        if not isinstance(t, str) or t.upper() not in P.PENDING_TYPES:
            raise BadRequest("Field 'type' must be LIMIT or STOP")
        return t.upper()

    def w_pending_create(self, uuid, request, body, ts):
        b = self._obj(body)
        oid = self.exchange.create_pending(uuid, _field(b, P.F_INSTRUMENT), _side(b), self._otype(b),
                                           _decimal(b, P.F_VOLUME), _decimal(b, P.F_PRICE),
                                           _price_or_none(b, P.F_SL_PRICE), _price_or_none(b, P.F_TP_PRICE), ts)
        return op_ok(oid)

    def w_pending_edit(self, uuid, request, body, ts):
        b = self._obj(body)
        price = _decimal(b, P.F_PRICE_ORDER, required=False)
        if price is None:
            price = _decimal(b, P.F_PRICE, required=False)
        oid = self.exchange.edit_pending(uuid, _field(b, P.F_ID), price, _decimal(b, P.F_VOLUME, required=False),
                                         _price_or_none(b, P.F_SL_PRICE), _price_or_none(b, P.F_TP_PRICE), ts)
        return op_ok(oid)

    def w_pending_cancel(self, uuid, request, body, ts):
        b = self._obj(body)
        return op_ok(self.exchange.cancel_pending(uuid, _field(b, P.F_ID), ts))

    # -- WebSocket ---------------------------------------------------------------------------------
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
        conn = WsConn(ws, uuid, session, self.config.ws_queue_max)
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

    def _ws_send(self, conn: WsConn, data: dict) -> None:
        if not conn.put(json.dumps(data, default=_json_default)):
            self._drop_slow(conn)

    def _drop_slow(self, conn: WsConn) -> None:
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
                self._ws_send(conn, {P.WS_TYPE: P.WS_T_PONG, P.F_TIMESTAMP_MS: now_ms()})
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
            self._ws_send(conn, reply)
            if add and ch == P.WS_CH_ACCOUNT:
                self._push_account(conn)
        except ValueError as e:
            self._ws_send(conn, {P.WS_TYPE: P.WS_T_ERROR, "code": P.WS_ERR_BAD_REQUEST, "message": str(e)})

    def _push_account(self, conn: WsConn) -> None:
        ex = self.exchange
        self._ws_send(conn, {P.WS_TYPE: P.WS_T_POSITIONS, P.WS_DATA: {"positions": ex.positions_json(conn.uuid)}})
        self._ws_send(conn, {P.WS_TYPE: P.WS_T_ORDERS, P.WS_DATA: {"orders": ex.orders_json(conn.uuid)}})
        self._push_balance(conn)

    def _push_balance(self, conn: WsConn) -> None:
        summary = self.exchange.account_summary(self.exchange.accounts[conn.uuid])
        self._ws_send(conn, {P.WS_TYPE: P.WS_T_BALANCE, P.WS_DATA: summary})

    async def ws_closed_snapshot(self, request: web.Request) -> web.StreamResponse:
        """The documented one-shot command (doc §4): one request frame in, one ``{"operations"}`` out."""
        try:
            _s, uuid = self._ws_auth(request)
        except AuthError as e:
            return err(e.status, e.message)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        msg = await ws.receive(timeout=30)
        try:
            body = json.loads(msg.data) if msg.type == WSMsgType.TEXT else None
            if not isinstance(body, dict):
                raise BadRequest("expected a JSON object")
            ops = self.exchange.closed_json(uuid, _parse_time_ms(body.get("from"), "from"),
                                            _parse_time_ms(body.get("to"), "to"), body.get("symbols") or None)
            await ws.send_str(json.dumps({"operations": ops}, default=_json_default))
        except (BadRequest, ValueError) as e:
            await ws.send_str(json.dumps({P.WS_TYPE: P.WS_T_ERROR, "code": P.WS_ERR_BAD_REQUEST, "message": str(e)}))
        await ws.close()
        return ws

    # -- market loop -------------------------------------------------------------------------------
    async def _market_loop(self) -> None:
        period = 1.0 / self.config.tick_rate
        next_t = time.monotonic()
        while True:
            next_t += period
            try:
                self.step(now_ms())
            except Exception:  # never let the loop die
                log.exception("sim_market_step_failed")
            delay = next_t - time.monotonic()
            if delay < -1.0:  # fell far behind: skip ahead rather than burst
                next_t = time.monotonic()
                delay = 0
            await asyncio.sleep(max(0.0, delay))

    def step(self, ts: int) -> list[Tick]:
        ticks = self.market.step(ts)
        for t in ticks:
            self._apply_tick(t)
        self._flush_dirty()
        return ticks

    def _apply_tick(self, t: Tick) -> None:
        self.stats["ticks"] += 1
        self._last_tick_ms[t.symbol] = t.ts_ms
        self.exchange.on_quote(t.symbol, self._d(t.symbol, t.bid), self._d(t.symbol, t.ask), t.ts_ms)
        if self.conns:
            self._broadcast_tick(t)

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
                self._drop_slow(c)
                continue
            if inject:
                if f.roll("p_ws_malformed"):
                    c.put(frame[: max(1, len(frame) // 2)])  # truncated JSON
                prev = c.last_frame.get(key)
                if prev is not None and f.roll("p_ws_out_of_order"):
                    c.put(prev)  # an older seq replayed after a newer one
                c.last_frame[key] = frame

    def _broadcast_tick(self, t: Tick) -> None:
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

    def _flush_dirty(self) -> None:
        ex = self.exchange
        if not ex.dirty:
            return
        with ex.lock:
            dirty, ex.dirty = ex.dirty, set()
        for c in list(self.conns):
            if c.account and c.uuid in dirty:
                self._push_account(c)

    async def _housekeeping_loop(self) -> None:
        """Heartbeats, balance pushes, ws drops (fault), auth-expiry closes."""
        last_hb = time.monotonic()
        while True:
            await asyncio.sleep(0.2)
            mono = time.monotonic()
            wall = time.time()
            drop_every = self.faults.config.ws_drop_every_s
            hb = mono - last_hb >= self.config.heartbeat_s
            if hb:
                last_hb = mono
            for c in list(self.conns):
                if c.session.expires_at <= wall:
                    self.conns.discard(c)
                    asyncio.ensure_future(c.ws.close(code=P.WS_CLOSE_AUTH_EXPIRED, message=b"token expired"))
                    continue
                if drop_every and mono - c.opened >= drop_every:
                    self.conns.discard(c)
                    asyncio.ensure_future(c.ws.close(code=1012, message=b"injected drop"))
                    continue
                if hb:
                    self._ws_send(c, {P.WS_TYPE: P.WS_T_HEARTBEAT, P.F_TIMESTAMP_MS: now_ms()})
                if c.account and int(mono * 5) % 5 == 0:
                    self._push_balance(c)

    # -- control API (/_sim, test and demo only) --------------------------------------------------
    async def c_create_accounts(self, request: web.Request) -> web.Response:
        try:
            body = await self._json_body(request)
        except BadRequest as e:
            return err(400, str(e))
        items = body.get("accounts") if isinstance(body, dict) else body
        if isinstance(body, dict) and items is None:
            items = [body]
        if not isinstance(items, list):
            return err(400, "Body must be a list of accounts or {'accounts': [...]}")
        out = []
        try:
            for i, a in enumerate(items):
                if not isinstance(a, dict):
                    raise ValueError(f"item {i} is not an object")
                # Optional "systemUuid" (added for workers.sim_provision): the account keeps the uuid
                # the database already knows, and creating it again is a no-op (idempotent).
                wanted = a.get("systemUuid") or None
                if wanted is not None and wanted in self.exchange.accounts:
                    acc = self.exchange.accounts[wanted]
                else:
                    acc = self.exchange.create_account(
                        a.get("email"), a.get("password"), str(a.get("broker_id", a.get("brokerId", "0"))),
                        Decimal(str(a.get("balance", "10000"))), int(a.get("leverage", 100)),
                        a.get("currency", "USD"), uuid=None if wanted is None else str(wanted), now_ms=now_ms())
                out.append({"email": acc.email, "brokerId": acc.broker_id, "systemUuid": acc.uuid,
                            "tradingAccountId": acc.trading_account_id})
        except (ValueError, TypeError, InvalidOperation) as e:
            return err(400, f"Bad account: {e}")
        return jresp({"accounts": out}, status=201)

    async def c_ledger(self, request: web.Request) -> web.Response:
        acc = self.exchange.accounts.get(request.match_info["uuid"])
        if acc is None:
            return err(404, "Unknown system uuid")
        with self.exchange.lock:
            entries = list(acc.ledger)
        return jresp({"systemUuid": acc.uuid,
                      "requests": [e for e in entries if e["kind"] == "request"],
                      "executions": [e for e in entries if e["kind"] == "execution"],
                      "faults": [e for e in entries if e["kind"] == "fault"]})

    async def c_get_faults(self, request: web.Request) -> web.Response:
        return jresp(self.faults.config.to_dict())

    async def c_set_faults(self, request: web.Request) -> web.Response:
        try:
            body = await self._json_body(request)
            if not isinstance(body, dict):
                raise BadRequest("Body must be a JSON object of knobs")
            cfg = self.faults.update(body)
        except (BadRequest, ValueError, TypeError) as e:
            return err(400, str(e))
        self.exchange.closed_symbols = set(cfg.closed_symbols)
        return jresp(cfg.to_dict())

    async def c_surge(self, request: web.Request) -> web.Response:
        try:
            b = await self._json_body(request)
            sym = b.get("symbol") if isinstance(b, dict) else None
            if sym not in self.market.states:
                raise BadRequest(f"Unknown symbol {sym!r}")
            side = str(b.get("side", "BUY")).upper()
            if side not in P.SIDES:
                raise BadRequest("side must be BUY or SELL")
            intensity, seconds = float(b.get("intensity", 4)), float(b.get("seconds", 10))
            if intensity <= 0 or seconds <= 0:
                raise BadRequest("intensity and seconds must be > 0")
        except (BadRequest, ValueError, TypeError) as e:
            return err(400, str(e))
        self.market.plant_surge(sym, 1 if side == P.SIDE_BUY else -1, intensity, seconds, now_ms())
        return jresp({"symbol": sym, "side": side, "intensity": intensity, "seconds": seconds})

    async def c_close_position(self, request: web.Request) -> web.Response:
        try:
            oid = self.exchange.close_by_broker(request.match_info["id"], now_ms())
        except Reject as e:
            return err(404, e.message)
        self._flush_dirty()
        return jresp(op_ok(oid))

    async def c_market(self, request: web.Request) -> web.Response:
        """``{"paused": bool, "prices": {"EURUSD": 1.1}}`` — freeze the walk and/or set bids now."""
        try:
            b = await self._json_body(request)
            if not isinstance(b, dict):
                raise BadRequest("Body must be a JSON object")
            prices = b.get("prices") or {}
            if not isinstance(prices, dict) or any(s not in self.market.states for s in prices):
                raise BadRequest("prices must map known symbols to bids")
            vals = {s: float(v) for s, v in prices.items()}
            if any(v <= 0 for v in vals.values()):
                raise BadRequest("prices must be > 0")
        except (BadRequest, ValueError, TypeError) as e:
            return err(400, str(e))
        if "paused" in b:
            self.market.paused = bool(b["paused"])
        ts = now_ms()
        for s, v in vals.items():
            self.market.set_price(s, v)
            self._apply_tick(self.market.tick_now(s, ts))
        self._flush_dirty()
        return jresp({"paused": self.market.paused, "quotes": [self._quote_json(s) for s in vals]})

    async def c_ws_drop(self, request: web.Request) -> web.Response:
        n = len(self.conns)
        for c in list(self.conns):
            self.conns.discard(c)
            await c.ws.close(code=1012, message=b"dropped by control API")
        return jresp({"dropped": n})

    async def c_expire_sessions(self, request: web.Request) -> web.Response:
        return jresp({"expired": self.sessions.expire_all()})

    async def c_stats(self, request: web.Request) -> web.Response:
        return jresp(dict(self.stats, accounts=len(self.exchange.accounts), open_positions=len(self.exchange.positions),
                          pending_orders=len(self.exchange.orders), executions=self.exchange.executions,
                          ws_open=len(self.conns), faults_hit=dict(self.faults.counts), symbols=self.market.symbols,
                          uptime_s=round((now_ms() - self.started_ms) / 1000, 1)))

    async def c_health(self, request: web.Request) -> web.Response:
        return jresp({"ok": True})
