"""The broker's REST face: ``/manager`` login and refresh, and ``/mtr-api/{uuid}/*`` reads and writes.

One dispatch point (:meth:`RestApi.trading`) applies what the real platform does to every call, in
order: endpoint lookup, auth, the write ledger, the rate limit, then the injected faults; the route
handlers are plain functions of (account, request, body, time) over the :class:`Exchange`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from decimal import Decimal

from aiohttp import web

from tradeops.logging import get_logger

from .. import protocol as P
from .auth import AuthError
from .exchange import Reject, _iso
from .wire import (
    BadRequest, decimal_field, err, field, jresp, json_body, now_ms, op_ok, op_rejected, parse_time_ms, price_or_none,
    side_field,
)

log = get_logger(__name__)


class RestApi:
    """REST handlers over the composition root's market, exchange, sessions and faults."""

    def __init__(self, sim):
        self.sim = sim
        self.market = sim.market
        self.exchange = sim.exchange
        self.faults = sim.faults
        self.sessions = sim.sessions
        self.stats = sim.stats
        self.rate: dict[str, deque] = {}

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_get(P.PATH_PLATFORM_DETAILS, self.platform_details)
        r.add_post(P.PATH_LOGIN, self.login)
        r.add_post(P.PATH_LOGIN_ALIAS, self.login)
        r.add_post(P.PATH_REFRESH, self.refresh)
        r.add_route("*", "/mtr-api/{uuid}/{tail:.*}", self.trading)

    # -- /manager ----------------------------------------------------------------------------------
    async def platform_details(self, request: web.Request) -> web.Response:
        origin = f"{request.scheme}://{request.host}"
        return jresp({"partnerId": "0", "brokerName": "Simulator", "platformUrl": origin, "currency": "USD"})

    async def login(self, request: web.Request) -> web.Response:
        self.stats["requests"] += 1
        try:
            body = await json_body(request)
            if not isinstance(body, dict):
                raise BadRequest("Body must be a JSON object")
            email, password = field(body, P.F_EMAIL), field(body, P.F_PASSWORD)
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
        if fc.persistent_403:  # a block, not a challenge: every request, whatever the scope
            f.counts["persistent_403"] = f.counts.get("persistent_403", 0) + 1
            return web.Response(status=403, text="<html><title>Access denied</title></html>",
                                content_type="text/html", headers={"cf-mitigated": "block"})
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
        if is_write and result.get(P.F_STATUS) == P.STATUS_OK and f.roll("p_ok_with_error_code"):
            # executed, answered OK together with errorCode (seen live on a cancel, issue 13)
            result = dict(result, **{P.F_ERROR_CODE: "UNKNOWN_ERROR"})
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

    def quote_json(self, sym: str) -> dict:
        st = self.market.states[sym]
        bid, ask = self.market.quote(sym)
        return {"symbol": sym, "alias": sym, "bid": bid, "ask": ask, "high": st.day_high, "low": st.day_low,
                "change": 0, "timestampMs": self.sim.last_tick_ms.get(sym, self.sim.started_ms),
                "timestampSec": self.sim.last_tick_ms.get(sym, self.sim.started_ms) // 1000}

    def r_quotations(self, uuid, request, body, ts):
        raw = request.query.get(P.F_SYMBOLS, "")
        syms = [s for s in (x.strip() for x in raw.split(",")) if s] or self.market.symbols
        return [self.quote_json(s) for s in syms if s in self.market.states]  # unknown symbols are skipped

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
        frm = parse_time_ms(q.get(P.F_FROM), P.F_FROM)
        to = parse_time_ms(q.get(P.F_TO), P.F_TO) if q.get(P.F_TO) else ts
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
        frm = parse_time_ms(body.get(P.F_FROM), P.F_FROM)
        to = parse_time_ms(body.get(P.F_TO), P.F_TO)
        symbols = body.get(P.F_SYMBOLS) or None
        if symbols is not None and not isinstance(symbols, list):
            raise BadRequest("Field 'symbols' must be a list")
        rows = self.exchange.closed_json(uuid, frm, to, symbols)
        limit = self.faults.config.closed_history_limit
        if limit and len(rows) > limit:  # a cut history says so with status FULL [CODE SDK notes]
            return {"operations": rows[:limit], P.F_CLOSED_STATUS: P.STATUS_FULL}
        return {"operations": rows}

    def r_last_finance(self, uuid, request, body, ts):
        if not isinstance(body, dict):
            raise BadRequest("Body must be a JSON object")
        types = body.get("types") or ["DEPOSIT"]
        size = body.get("resultSize", 100)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest("Field 'resultSize' must be a non-negative integer")
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
        sym = field(b, P.F_INSTRUMENT)
        oid, _pid = self.exchange.open_position(uuid, sym, side_field(b), decimal_field(b, P.F_VOLUME),
                                                price_or_none(b, P.F_SL_PRICE), price_or_none(b, P.F_TP_PRICE), ts)
        return op_ok(oid)

    def w_edit(self, uuid, request, body, ts):
        b = self._obj(body)
        pid = field(b, P.F_ID)
        oid = self.exchange.edit_position(uuid, pid, price_or_none(b, P.F_SL_PRICE), price_or_none(b, P.F_TP_PRICE), ts)
        return op_ok(oid)

    def w_close(self, uuid, request, body, ts):
        b = self._obj(body)
        pid = field(b, P.F_POSITION_ID)
        vol = decimal_field(b, P.F_VOLUME, required=False)
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
                vol = decimal_field(it, P.F_VOLUME, required=False) if isinstance(it, dict) else None
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
        return op_ok(self.exchange.close_position(uuid, field(b, P.F_POSITION_ID), decimal_field(b, P.F_VOLUME), ts))

    def _otype(self, b: dict) -> str:
        t = field(b, P.F_TYPE)
        if not isinstance(t, str) or t.upper() not in P.PENDING_TYPES:
            raise BadRequest("Field 'type' must be LIMIT or STOP")
        return t.upper()

    def w_pending_create(self, uuid, request, body, ts):
        b = self._obj(body)
        oid = self.exchange.create_pending(uuid, field(b, P.F_INSTRUMENT), side_field(b), self._otype(b),
                                           decimal_field(b, P.F_VOLUME), decimal_field(b, P.F_PRICE),
                                           price_or_none(b, P.F_SL_PRICE), price_or_none(b, P.F_TP_PRICE), ts)
        return op_ok(oid)

    def w_pending_edit(self, uuid, request, body, ts):
        b = self._obj(body)
        price = decimal_field(b, P.F_PRICE_ORDER, required=False)
        if price is None:
            price = decimal_field(b, P.F_PRICE, required=False)
        oid = self.exchange.edit_pending(uuid, field(b, P.F_ID), price, decimal_field(b, P.F_VOLUME, required=False),
                                         price_or_none(b, P.F_SL_PRICE), price_or_none(b, P.F_TP_PRICE), ts)
        return op_ok(oid)

    def w_pending_cancel(self, uuid, request, body, ts):
        b = self._obj(body)
        return op_ok(self.exchange.cancel_pending(uuid, field(b, P.F_ID), ts))
