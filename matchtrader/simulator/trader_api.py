"""The simulator's Trader API face: per-account bearer tokens with read/trade scopes, problem-details
errors and an ``Idempotency-Key`` store, on the same port and over the same :class:`Exchange` as the
Platform API (so one account can be traded through either, and the ledger counts both).

Every method + path comes from ``matchtrader.protocol.TA_ROUTES`` (all [INF]); the semantics the
documentation leaves open are the simulator's choices, documented in
/work/shared/docs/match-trader-trader-api.md §9 and here:

* tokens are issued through the control API (``POST /_sim/trader-tokens``), never by a login;
  missing / unknown / revoked → 401 ``unauthorized``; a write without the ``trade`` scope →
  403 ``forbidden``;
* one dispatch point applies, in order: route lookup, auth, the write ledger, the rate limit (per
  token), injected faults (latency, 429, 5xx before executing), the idempotency store, execution,
  then a lost answer (``p_lost``: executed, answer replaced by 502 / a stall / a dropped socket);
* idempotency (per token): a key's FIRST executed outcome (success or business reject) is stored
  with a fingerprint of method + path + canonical body; the same key and body replays it without
  executing; the same key with another body → 400 ``idempotency-key-invalid``
  (``additionalInfo.reason = KEY_REUSED_WITH_DIFFERENT_REQUEST``); a key that is not a UUID → 400
  ``idempotency-key-invalid``; keys are forgotten after ``idempotency_retention_s``. Requests
  refused before execution (401, 403, 429, injected 5xx) store nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import secrets
import time
import uuid as uuid_mod
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from aiohttp import web

from tradeops.logging import get_logger

from .. import protocol as P
from ..client import dumps_exact
from .exchange import Reject, _q
from .wire import BadRequest, decimal_field, now_ms

log = get_logger(__name__)

SCOPE_READ = "read"
SCOPE_TRADE = "trade"
SCOPES = (SCOPE_READ, SCOPE_TRADE)


@dataclass(slots=True)
class TraderToken:
    token: str
    uuid: str
    scopes: frozenset
    revoked: bool = False


@dataclass(slots=True)
class Stored:
    fingerprint: str
    status: int
    body: bytes
    at: float


@dataclass
class TraderTokens:
    """Token table and the per-token idempotency store (pure; time passed in)."""

    by_token: dict[str, TraderToken] = field(default_factory=dict)
    keys: dict[tuple[str, str], Stored] = field(default_factory=dict)

    def issue(self, uuid: str, scopes) -> TraderToken:
        scopes = frozenset(scopes)
        if not scopes or not scopes <= set(SCOPES):
            raise ValueError(f"scopes must be a non-empty subset of {SCOPES}")
        t = TraderToken(token="mtt_" + secrets.token_urlsafe(32), uuid=uuid, scopes=scopes)
        self.by_token[t.token] = t
        return t

    def register(self, token: str, uuid: str, scopes) -> TraderToken:
        """Accept a token chosen elsewhere (an account's token entered in the admin, provisioned
        by ``workers.sim_provision``). Idempotent for the same account; never un-revokes."""
        scopes = frozenset(scopes)
        if not token or not isinstance(token, str) or len(token) > 512:
            raise ValueError("token must be a non-empty string of at most 512 characters")
        if not scopes or not scopes <= set(SCOPES):
            raise ValueError(f"scopes must be a non-empty subset of {SCOPES}")
        t = self.by_token.get(token)
        if t is not None:
            if t.uuid != uuid:
                raise ValueError("this token belongs to another account")
            return t
        t = TraderToken(token=token, uuid=uuid, scopes=scopes)
        self.by_token[token] = t
        return t

    def revoke(self, token: str) -> bool:
        t = self.by_token.get(token)
        if t is None:
            return False
        t.revoked = True
        return True

    def remembered(self, token: str, key: str, retention_s: float, now: float) -> Stored | None:
        s = self.keys.get((token, key))
        if s is not None and now - s.at > retention_s:
            del self.keys[(token, key)]
            return None
        return s

    def remember(self, token: str, key: str, stored: Stored) -> None:
        self.keys[(token, key)] = stored

    def expire(self, retention_s: float, now: float) -> int:
        old = [k for k, s in self.keys.items() if now - s.at > retention_s]
        for k in old:
            del self.keys[k]
        return len(old)


def problem(status: int, type_: str, title: str, detail: str, path: str, info: dict | None = None,
            headers=None) -> web.Response:
    body = {P.TA_F_TYPE: type_, P.TA_F_TITLE: title, P.TA_F_STATUS: status, P.TA_F_DETAIL: detail,
            P.TA_F_PATH: path, P.TA_F_ADDITIONAL_INFO: info}
    return web.Response(status=status, body=json.dumps(body).encode(), headers=headers,
                        content_type=P.TA_PROBLEM_CONTENT_TYPE)


class _Problem(Exception):
    def __init__(self, status: int, type_: str, title: str, detail: str, info: dict | None = None):
        super().__init__(detail)
        self.status, self.type, self.title, self.detail, self.info = status, type_, title, detail, info


def _validation(detail: str, reason: str, fld: str | None = None) -> _Problem:
    info = {P.TA_F_REASON: reason}
    if fld:
        info[P.TA_F_FIELD] = fld
    return _Problem(400, P.TA_ERR_VALIDATION, "Trading validation failed", detail, info)


def _num(x) -> Decimal | None:
    return None if x is None else Decimal(str(x))


class TraderApi:
    """REST handlers of the Trader API over the composition root's exchange, market and faults."""

    def __init__(self, sim):
        self.sim = sim
        self.exchange = sim.exchange
        self.market = sim.market
        self.faults = sim.faults
        self.stats = sim.stats
        self.tokens = TraderTokens()
        self.rate: dict[str, deque] = {}

    def add_routes(self, r: web.UrlDispatcher) -> None:
        # one catch-all under the version prefix: the route table decides (so a path correction in
        # protocol.TA_ROUTES is the only change)
        r.add_route("*", P.TA_VERSION + "/{tail:.*}", self.dispatch)

    # -- routing -------------------------------------------------------------------------------------
    def _match(self, method: str, path: str) -> tuple[str | None, dict]:
        parts = path.strip("/").split("/")
        path_known = False
        for op, (m, template) in P.TA_ROUTES.items():
            tparts = template.strip("/").split("/")
            if len(tparts) != len(parts):
                continue
            ids = {}
            for tp, pp in zip(tparts, parts, strict=True):
                if tp.startswith("{") and tp.endswith("}"):
                    if not pp:
                        break
                    ids[tp[1:-1]] = pp
                elif tp != pp:
                    break
            else:
                path_known = True
                if m == method:
                    return op, ids
        return ("" if path_known else None), {}

    def _rate_limited(self, token: str) -> float | None:
        limit = self.faults.config.rate_limit_per_min
        if not limit:
            return None
        now = time.monotonic()
        dq = self.rate.setdefault(token, deque())
        while dq and dq[0] <= now - 60:
            dq.popleft()
        if len(dq) >= limit:
            return max(0.1, 60 - (now - dq[0]))
        dq.append(now)
        return None

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.stats["requests"] += 1
        self.stats["trader_api_requests"] = self.stats.get("trader_api_requests", 0) + 1
        path = request.path
        op, ids = self._match(request.method, path)
        if op is None:
            return problem(404, P.TA_ERR_NOT_FOUND, "Not found", f"No such endpoint {request.method} {path}", path)
        if op == "":
            return problem(405, P.TA_ERR_NOT_FOUND, "Method not allowed", f"{request.method} {path}", path)
        auth = request.headers.get(P.TA_HDR_AUTH, "")
        raw_token = auth[len(P.TA_BEARER):].strip() if auth.startswith(P.TA_BEARER) else ""
        tok = self.tokens.by_token.get(raw_token)
        if tok is None or tok.revoked or tok.uuid not in self.exchange.accounts:
            return problem(401, P.TA_ERR_UNAUTHORIZED, "Unauthorized", "Missing, unknown or revoked token", path)
        is_write = op in P.TA_WRITES
        needed = SCOPE_TRADE if is_write else SCOPE_READ
        if needed not in tok.scopes:
            return problem(403, P.TA_ERR_FORBIDDEN, "Forbidden", f"The token has no {needed!r} scope", path)
        raw = await request.read()  # cached by aiohttp: the guard may already have read it
        ts = now_ms()
        uuid = tok.uuid
        if is_write:
            self.exchange.record(uuid, {"kind": "request", "api": "trader", "path": path, "op": op,
                                        "body": raw[:2000].decode("utf-8", "replace"),
                                        "idempotencyKey": request.headers.get(P.TA_HDR_IDEMPOTENCY_KEY, ""),
                                        "ts": ts})
        retry = self._rate_limited(tok.token)
        if retry is not None:
            return problem(429, P.TA_ERR_TOO_MANY, "Too many requests", "Rate limit exceeded", path,
                           headers={P.HDR_RETRY_AFTER: str(math.ceil(retry))})
        f, fc = self.faults, self.faults.config
        if f.in_scope(is_write):
            lat = f.latency_s()
            if lat:
                await asyncio.sleep(lat)
            if f.roll("p_429"):
                return problem(429, P.TA_ERR_TOO_MANY, "Too many requests", "Injected", path,
                               headers={P.HDR_RETRY_AFTER: f"{fc.retry_after_s:g}"})
            if f.roll("p_5xx"):
                return problem(503, P.TA_ERR_UNAVAILABLE, "Service unavailable", "Injected, not executed", path)
        # -- idempotency (no await from here to the store: the check and the execution are atomic) --
        key = request.headers.get(P.TA_HDR_IDEMPOTENCY_KEY) if op in P.TA_KEYED_WRITES else None
        fingerprint = ""
        if key is not None:
            try:
                if str(uuid_mod.UUID(key)) != key.lower():
                    raise ValueError(key)
            except ValueError:
                return problem(400, P.TA_ERR_IDEMPOTENCY_KEY, "Invalid idempotency key",
                               "Idempotency-Key must be a UUID", path)
            fingerprint = _fingerprint(request.method, path, raw)
            now = time.time()
            seen = self.tokens.remembered(tok.token, key.lower(), fc.idempotency_retention_s, now)
            if seen is not None:
                if seen.fingerprint != fingerprint:
                    return problem(400, P.TA_ERR_IDEMPOTENCY_KEY, "Invalid idempotency key",
                                   "The key was used with a different request", path,
                                   {P.TA_F_REASON: P.TA_REASON_KEY_REUSED})
                self.exchange.record(uuid, {"kind": "replay", "op": op, "idempotencyKey": key, "ts": ts})
                resp = web.Response(status=seen.status, body=seen.body or None,
                                    content_type="application/json" if seen.body else None)
            else:
                resp = self._execute(op, ids, uuid, raw, path, ts, request.query)
                if resp.status < 500:
                    self.tokens.remember(tok.token, key.lower(), Stored(fingerprint, resp.status, resp.body or b"", now))
        else:
            resp = self._execute(op, ids, uuid, raw, path, ts, request.query)
        if is_write and resp.status in (200, 201, 204) and f.roll("p_lost"):
            log.info("sim_fault_lost_response", api="trader", path=path, mode=fc.lost_mode)
            self.exchange.record(uuid, {"kind": "fault", "fault": "lost_response", "mode": fc.lost_mode,
                                        "path": path, "ts": now_ms()})
            if fc.lost_mode == "5xx":
                return problem(502, P.TA_ERR_UNAVAILABLE, "Bad gateway", "Injected after execution", path)
            if fc.lost_mode == "timeout":
                await asyncio.sleep(fc.lost_sleep_s)
            elif request.transport is not None:
                request.transport.abort()
        if is_write:
            self.sim.ws.flush_dirty()
        return resp

    def _execute(self, op: str, ids: dict, uuid: str, raw: bytes, path: str, ts: int, query) -> web.Response:
        try:
            body = None
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise _validation("Malformed JSON body", "INVALID_REQUEST") from None
            return getattr(self, "op_" + op)(uuid, ids, body, ts, query)
        except _Problem as e:
            return problem(e.status, e.type, e.title, e.detail, path, e.info)
        except BadRequest as e:
            return problem(400, P.TA_ERR_VALIDATION, "Trading validation failed", str(e), path,
                           {P.TA_F_REASON: "INVALID_REQUEST"})
        except Reject as e:
            return problem(400, P.TA_ERR_VALIDATION, "Trading validation failed", e.message, path,
                           {P.TA_F_REASON: e.code})

    # -- reads ---------------------------------------------------------------------------------------
    def op_account(self, uuid, ids, body, ts, q):
        a = self.exchange.accounts[uuid]
        return _json({"login": a.trading_account_id, "currency": a.currency, "leverage": a.leverage,
                      "email": a.email})

    def op_summary(self, uuid, ids, body, ts, q):
        with self.exchange.lock:
            a = self.exchange.accounts[uuid]
            s = self.exchange.account_summary(a)
        return _json({P.TA_F_BALANCE: _num(s["balance"]), P.TA_F_CREDIT: _num(s.get("credit", 0)),
                      P.TA_F_EQUITY: _num(s["equity"]), P.TA_F_MARGIN: _num(s["margin"]),
                      P.TA_F_FREE_FUNDS: _num(s["freeMargin"]), P.TA_F_MARGIN_LEVEL: _num(s.get("marginLevel", 0)),
                      P.TA_F_PROFIT: _num(s.get("profit", 0))})

    def op_symbols(self, uuid, ids, body, ts, q):
        out = []
        for sym, st in self.market.states.items():
            sp = st.spec
            out.append({"symbol": sym, "type": sp.type or "FOREX", P.TA_F_DIGITS: sp.price_precision,
                        P.TA_F_CONTRACT_SIZE: sp.contract_size, "volumeMin": sp.volume_min,
                        "volumeMax": sp.volume_max, "volumeStep": sp.volume_step, "baseCurrency": sp.base,
                        "quoteCurrency": sp.quote, "description": sp.description or sym})
        return _json({P.TA_F_SYMBOLS: out})

    def op_quotes(self, uuid, ids, body, ts, q):
        syms = q.getall(P.TA_F_SYMBOL, []) or self.market.symbols
        out = []
        for s in syms:
            if s not in self.market.states:
                continue
            bid, ask = self.market.quote(s)
            out.append({"symbol": s, "bid": self.sim._d(s, bid), "ask": self.sim._d(s, ask),
                        P.TA_F_TIME: self.sim.last_tick_ms.get(s, self.sim.started_ms)})
        return _json({P.TA_F_QUOTES: out})

    def op_candles(self, uuid, ids, body, ts, q):
        sym = q.get(P.TA_F_SYMBOL)
        if not sym or sym not in self.market.states:
            raise _validation(f"Unknown symbol {sym!r}", "UNKNOWN_SYMBOL", P.TA_F_SYMBOL)
        interval = q.get(P.TA_F_INTERVAL, "")
        if interval not in P.INTERVAL_SECONDS:
            raise _Problem(400, P.TA_ERR_CANDLE_INTERVAL, "Candle interval invalid", f"{interval!r}")
        limit = _int(q.get(P.TA_F_LIMIT), 100, 1, P.TA_LIMIT_CANDLES_MAX, P.TA_F_LIMIT)
        to = _ms(q.get(P.TA_F_TO)) if q.get(P.TA_F_TO) else ts
        frm = _ms(q.get(P.TA_F_FROM)) if q.get(P.TA_F_FROM) else to - limit * P.INTERVAL_SECONDS[interval] * 1000
        rows = self.market.candles(sym, interval, frm, to)[-limit:]
        return _json({"symbol": sym, "interval": interval,
                      P.TA_F_CANDLES: [{P.TA_F_TIME: t, "open": o, "high": h, "low": lo, "close": c, "volume": v}
                                       for t, o, h, lo, c, v in rows]})

    def _position_json(self, pos) -> dict:
        cur = self.exchange._close_price(pos) if pos.symbol in self.exchange.prices else pos.open_price
        return {P.TA_F_ID: pos.id, P.TA_F_SYMBOL: pos.symbol, P.TA_F_SIDE: pos.side, P.TA_F_VOLUME: pos.volume,
                P.TA_F_OPEN_PRICE: pos.open_price, P.TA_F_OPEN_TIME: pos.open_ms, P.TA_F_TP_PRICE: pos.tp,
                P.TA_F_SL_PRICE: pos.sl, P.TA_F_PROFIT: _q(self.exchange._pnl(pos, cur), 2), P.TA_F_SWAP: 0,
                P.TA_F_COMMISSION: pos.commission, P.TA_F_COMMENT: pos.comment}

    def op_positions(self, uuid, ids, body, ts, q):
        with self.exchange.lock:
            rows = [self._position_json(p) for p in self.exchange.accounts[uuid].positions.values()]
        return _json({P.TA_F_POSITIONS: rows})

    def op_pending(self, uuid, ids, body, ts, q):
        with self.exchange.lock:
            rows = [{P.TA_F_ID: o.id, P.TA_F_SYMBOL: o.symbol, P.TA_F_SIDE: o.side, "type": o.type,
                     P.TA_F_ACTIVATION_PRICE: o.price, P.TA_F_VOLUME: o.volume, P.TA_F_TP_PRICE: o.tp,
                     P.TA_F_SL_PRICE: o.sl, "createdTime": o.created_ms}
                    for o in self.exchange.accounts[uuid].orders.values()]
        return _json({P.TA_F_PENDING_ORDERS: rows})

    def op_closed(self, uuid, ids, body, ts, q):
        symbols = q.getall(P.TA_F_SYMBOL, [])
        if not q.get(P.TA_F_FROM) or not q.get(P.TA_F_TO):
            raise _validation("'from' and 'to' are required", "INVALID_REQUEST", P.TA_F_FROM)
        frm, to = _ms(q.get(P.TA_F_FROM)), _ms(q.get(P.TA_F_TO))
        limit = _int(q.get(P.TA_F_LIMIT), 100, 1, P.TA_LIMIT_CLOSED_MAX, P.TA_F_LIMIT)
        with self.exchange.lock:
            rows = [c for c in self.exchange.accounts[uuid].closed
                    if frm <= c["time"] <= to and (not symbols or c["symbol"] in symbols)]
        rows = rows[:limit]  # oldest first (the real order is undocumented [INF])
        return _json({P.TA_F_CLOSED_POSITIONS: [
            {P.TA_F_ID: c["id"], P.TA_F_SYMBOL: c["symbol"], P.TA_F_SIDE: c["side"], P.TA_F_VOLUME: c["volume"],
             P.TA_F_OPEN_PRICE: c["openPrice"], P.TA_F_CLOSE_PRICE: c["closePrice"], P.TA_F_OPEN_TIME: c["openTime"],
             P.TA_F_CLOSE_TIME: c["time"], P.TA_F_PROFIT: c["profit"], "netProfit": c["netProfit"],
             P.TA_F_COMMENT: c.get("comment", "")} for c in rows]})

    def op_ledgers(self, uuid, ids, body, ts, q):
        with self.exchange.lock:
            rows = [{P.TA_F_ID: o["id"], "type": o["type"], P.TA_F_TIME: o["time"], P.TA_F_PROFIT: o["profit"],
                     P.TA_F_COMMENT: o.get("comment", "")} for o in self.exchange.accounts[uuid].finance]
        return _json({"ledgers": rows})

    # -- writes --------------------------------------------------------------------------------------
    @staticmethod
    def _obj(body) -> dict:
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise _validation("Body must be a JSON object", "INVALID_REQUEST")
        return body

    def op_open(self, uuid, ids, body, ts, q):
        b = self._obj(body)
        sym = b.get(P.TA_F_SYMBOL)
        if not isinstance(sym, str) or sym not in self.exchange.specs:
            raise _validation(f"Unknown symbol {sym!r}", "UNKNOWN_SYMBOL", P.TA_F_SYMBOL)
        side = b.get(P.TA_F_SIDE)
        if side not in P.SIDES:
            raise _validation("side must be BUY or SELL", "INVALID_REQUEST", P.TA_F_SIDE)
        comment = b.get(P.TA_F_COMMENT) or ""
        if not isinstance(comment, str) or len(comment) > 255:
            raise _validation("comment must be a string of at most 255 characters", "INVALID_REQUEST", P.TA_F_COMMENT)
        _oid, pid = self.exchange.open_position(
            uuid, sym, side, decimal_field(b, P.TA_F_VOLUME), decimal_field(b, P.TA_F_SL_PRICE, required=False),
            decimal_field(b, P.TA_F_TP_PRICE, required=False), ts, comment=comment)
        return _json({P.TA_F_POSITION_ID: pid}, 201)

    def op_close(self, uuid, ids, body, ts, q):
        b = self._obj(body)
        vol = decimal_field(b, P.TA_F_VOLUME, required=False)
        if vol is not None and vol <= 0:
            raise _validation("volume must be > 0", "INVALID_VOLUME", P.TA_F_VOLUME)
        self.exchange.close_position(uuid, ids["id"], vol, ts)
        return web.Response(status=204)

    def op_edit(self, uuid, ids, body, ts, q):
        b = self._obj(body)
        self.exchange.edit_position(uuid, ids["id"], decimal_field(b, P.TA_F_SL_PRICE, required=False),
                                    decimal_field(b, P.TA_F_TP_PRICE, required=False), ts)
        return web.Response(status=204)

    def op_pending_create(self, uuid, ids, body, ts, q):
        b = self._obj(body)
        t = str(b.get("type", "")).upper()
        if t not in P.PENDING_TYPES:
            raise _validation("type must be LIMIT or STOP", "INVALID_REQUEST", "type")
        side = b.get(P.TA_F_SIDE)
        if side not in P.SIDES:
            raise _validation("side must be BUY or SELL", "INVALID_REQUEST", P.TA_F_SIDE)
        oid = self.exchange.create_pending(
            uuid, b.get(P.TA_F_SYMBOL), side, t, decimal_field(b, P.TA_F_VOLUME),
            decimal_field(b, P.TA_F_ACTIVATION_PRICE), decimal_field(b, P.TA_F_SL_PRICE, required=False),
            decimal_field(b, P.TA_F_TP_PRICE, required=False), ts)
        return _json({P.TA_F_PENDING_ORDER_ID: oid}, 201)

    def op_pending_update(self, uuid, ids, body, ts, q):
        b = self._obj(body)
        self.exchange.edit_pending(uuid, ids["id"], decimal_field(b, P.TA_F_ACTIVATION_PRICE, required=False),
                                   decimal_field(b, P.TA_F_VOLUME, required=False),
                                   decimal_field(b, P.TA_F_SL_PRICE, required=False),
                                   decimal_field(b, P.TA_F_TP_PRICE, required=False), ts)
        return web.Response(status=204)

    def op_pending_cancel(self, uuid, ids, body, ts, q):
        self.exchange.cancel_pending(uuid, ids["id"], ts)
        return web.Response(status=204)


def _fingerprint(method: str, path: str, raw: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")) if raw.strip() else ""
    except ValueError:
        canonical = raw.decode("utf-8", "replace")
    return hashlib.sha256(f"{method} {path} {canonical}".encode()).hexdigest()


def _json(data, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps_exact(data).encode(), content_type="application/json")


def _ms(v) -> int:
    """Integer ``from``/``to``: epoch seconds or ms (value > 10^11 ⇒ ms) [INF doc §4]."""
    try:
        n = int(str(v))
    except ValueError:
        raise _validation(f"not an integer time: {v!r}", "INVALID_REQUEST") from None
    return n if n > 10**11 else n * 1000


def _int(v, default: int, lo: int, hi: int, name: str) -> int:
    if v is None or v == "":
        return default
    try:
        n = int(str(v))
    except ValueError:
        raise _validation(f"{name} must be an integer", "INVALID_REQUEST", name) from None
    if not lo <= n <= hi:
        raise _validation(f"{name} must be within {lo}..{hi}", "INVALID_REQUEST", name)
    return n
