"""The simulator's front door: what every request passes before a handler sees it.

An aiohttp middleware (:func:`make_guard`) and a runner (:class:`GuardedAppRunner`) that make the
simulator refuse what a real venue refuses, in the documented error shape ``{"errorMessage": ...}``
and never with a 500 (limits in ``matchtrader/protocol.py``, marked inferred):

- **size**: a broker-path body over ``MAX_BODY_BYTES`` → 413 (aiohttp's own answer is plain text);
- **slow clients**: a connection that has not sent its request headers within
  ``REQUEST_HEADER_TIMEOUT_S`` gets a 408 and is closed (aiohttp times out only idle keep-alive
  connections, never one stuck inside its first request); a body not received within
  ``REQUEST_BODY_TIMEOUT_S`` → 408, connection closed;
- **authentication first**: on ``/mtr-api/{uuid}/…`` an unknown uuid and a wrong token get the
  same 401 before anything else is looked at (no account enumeration, no validation oracle);
- **rate limits on failures**, per account, never per address: failed logins per (email, broker)
  and invalid tokens per uuid (``AUTH_FAILURES_MAX`` in ``AUTH_FAILURES_WINDOW_S``) → 429 with
  ``Retry-After`` for that account only;
- **validation** (``validation.py``): strict decoding, bounded JSON, finite and sane numbers,
  prices near the market, bounded close lists.

Handlers keep their own checks (they re-parse a body the guard accepted); the exchange model is
untouched, so the backtest that shares it pays nothing for this.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import OrderedDict, deque
from decimal import Decimal

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from tradeops.logging import get_logger

from .. import protocol as P
from .validation import CHECKS, Invalid, MarketView, check_login, decode_json

log = get_logger(__name__)
TRADING_PREFIX = "/mtr-api/"
LOGIN_PATHS = frozenset({P.PATH_LOGIN, P.PATH_LOGIN_ALIAS})
INVALID_TOKEN = "Invalid trading api token"
CONTROL_MAX_BODY_BYTES = 8 * 1024 * 1024  # /_sim/accounts provisions thousands of accounts at once  # the one answer for an unknown uuid or a wrong token


def error(status: int, message: str, headers=None) -> web.Response:
    return web.Response(text=json.dumps({P.F_ERROR_MESSAGE: message}), status=status,
                        content_type="application/json", headers=headers)


class FailureLimiter:
    """Failures per key in a sliding window; a key over the limit is refused until its oldest
    failure leaves the window. Bounded: at most ``max_keys`` keys (least recently failed dropped)."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000):
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._fails: OrderedDict[tuple, deque] = OrderedDict()

    def retry_after(self, key: tuple, now: float) -> float | None:
        dq = self._fails.get(key)
        if not dq:
            return None
        while dq and dq[0] <= now - self.window_s:
            dq.popleft()
        if len(dq) >= self.limit:
            return max(1.0, dq[0] + self.window_s - now)
        return None

    def fail(self, key: tuple, now: float) -> None:
        dq = self._fails.pop(key, None) or deque()
        dq.append(now)
        while len(dq) > self.limit:
            dq.popleft()
        self._fails[key] = dq
        while len(self._fails) > self.max_keys:
            self._fails.popitem(last=False)

    def reset(self, key: tuple) -> None:
        self._fails.pop(key, None)


def _market_view(sim) -> MarketView:
    ex = sim.exchange

    def mid(symbol: str) -> Decimal | None:
        quote = ex.prices.get(symbol)
        return None if quote is None else (quote[0] + quote[1]) / 2

    def position_symbol(uuid: str, pid: str) -> str | None:
        acc = ex.accounts.get(uuid)
        pos = acc.positions.get(pid) if acc is not None else None
        return pos.symbol if pos is not None else None

    def order_symbol(uuid: str, oid: str) -> str | None:
        acc = ex.accounts.get(uuid)
        order = acc.orders.get(oid) if acc is not None else None
        return order.symbol if order is not None else None

    return MarketView(mid=mid, position_symbol=position_symbol, order_symbol=order_symbol)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body (cached by aiohttp for the handler), within ``limit`` bytes and the body
    deadline; 413 / 408 otherwise."""
    if request.content_length is not None and request.content_length > limit:
        raise Invalid(f"Request body larger than {limit} bytes", status=413)
    try:
        async with asyncio.timeout(P.REQUEST_BODY_TIMEOUT_S):
            raw = await request.read()
    except TimeoutError:
        raise Invalid("Request body not received in time", status=408) from None
    except web.HTTPRequestEntityTooLarge:
        raise Invalid(f"Request body larger than {limit} bytes", status=413) from None
    if len(raw) > limit:
        raise Invalid(f"Request body larger than {limit} bytes", status=413)
    return raw


def make_guard(sim):
    """The middleware for one :class:`~matchtrader.simulator.server.Simulator`."""
    view = _market_view(sim)
    logins = FailureLimiter(P.AUTH_FAILURES_MAX, P.AUTH_FAILURES_WINDOW_S)
    tokens = FailureLimiter(P.AUTH_FAILURES_MAX, P.AUTH_FAILURES_WINDOW_S)
    sim.guard_limiters = {"logins": logins, "tokens": tokens}  # the control API's stats can show them

    def refuse(request: web.Request, exc: Invalid, **context) -> web.Response:
        log.info("sim_request_refused", path=request.path[:200], status=exc.status, reason=exc.message[:200],
                 peer=request.remote, **context)
        response = error(exc.status, exc.message)
        if exc.status in (408, 413):
            # The body was not read: answer, then close (aiohttp discards what still arrives for at
            # most its lingering time, so the client reads the answer instead of a reset).
            response.force_close()
        return response

    async def guarded_login(request, handler):
        try:
            body = decode_json(await _read_body(request, P.MAX_BODY_BYTES), request.charset)
            key = ("login",) + check_login(body)
        except Invalid as exc:
            return refuse(request, exc)
        now = time.monotonic()
        retry = logins.retry_after(key, now)
        if retry is not None:
            log.info("sim_login_throttled", peer=request.remote)
            return error(429, "Too many failed logins, try later", {P.HDR_RETRY_AFTER: str(math.ceil(retry))})
        response = await handler(request)
        if response.status == 401:
            logins.fail(key, now)
        elif response.status == 200:
            logins.reset(key)
        return response

    async def guarded_trading(request, handler):
        path = request.path
        uuid, _, tail = path[len(TRADING_PREFIX):].partition("/")
        check = CHECKS.get((request.method, "/" + tail))
        if check is None:
            return await handler(request)  # the handler's 404/405 for a path that does not exist
        key = ("token", uuid[:64])
        now = time.monotonic()
        retry = tokens.retry_after(key, now)
        if retry is not None:
            return error(429, "Too many failed authentications, try later",
                         {P.HDR_RETRY_AFTER: str(math.ceil(retry))})
        found = sim.sessions.by_trading.get(request.headers.get(P.HDR_TRADING_TOKEN) or "")
        if uuid not in sim.exchange.accounts or found is None or found[1] != uuid:
            tokens.fail(key, now)
            return error(401, INVALID_TOKEN)
        try:
            if len(request.query_string) > 2048:
                raise Invalid("Query string too long")
            body = None
            if request.method == "POST":
                body = decode_json(await _read_body(request, P.MAX_BODY_BYTES), request.charset)
            check(uuid, body, request.query, view)
        except Invalid as exc:
            return refuse(request, exc, uuid=uuid[:64])
        return await handler(request)

    @web.middleware
    async def guard(request: web.Request, handler):
        path = request.path
        try:
            if path.startswith(TRADING_PREFIX):
                return await guarded_trading(request, handler)
            if path in LOGIN_PATHS and request.method == "POST":
                return await guarded_login(request, handler)
            if request.method == "POST":  # the refresh (body ignored) and the control API
                try:
                    control = path.startswith("/_sim/")
                    raw = await _read_body(request, CONTROL_MAX_BODY_BYTES if control else P.MAX_BODY_BYTES)
                    if control and raw.strip():
                        decode_json(raw, request.charset)
                except Invalid as exc:
                    return refuse(request, exc)
            return await handler(request)
        except web.HTTPException as exc:  # aiohttp's own 4xx (e.g. 405) in the documented shape
            if exc.status >= 400 and exc.content_type != "application/json":
                return error(exc.status, exc.reason or "Request refused", {
                    k: v for k, v in exc.headers.items() if k in ("Allow", P.HDR_RETRY_AFTER)})
            raise

    return guard


# --- slow clients: a deadline for the request headers ---------------------------------------------
_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s")


class _DeadlineHandler(RequestHandler):
    """aiohttp's connection handler, plus: no complete request headers within
    ``REQUEST_HEADER_TIMEOUT_S`` of connecting → 408 in the documented shape, connection closed.
    (aiohttp's keep-alive timer only closes connections *between* requests.)"""

    __slots__ = ("_header_deadline",)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_deadline = self._loop.call_later(P.REQUEST_HEADER_TIMEOUT_S, self._headers_overdue)

    def _headers_overdue(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self._request_count > 0:
            return
        body = json.dumps({P.F_ERROR_MESSAGE: "Request headers not received in time"}).encode()
        try:
            transport.write(_TIMEOUT_408 % (len(body), body))
        finally:
            self.force_close()
            transport.close()

    def connection_lost(self, exc) -> None:
        handle = getattr(self, "_header_deadline", None)
        if handle is not None:
            handle.cancel()
        super().connection_lost(exc)


class _DeadlineServer(Server):
    def __call__(self) -> RequestHandler:
        return _DeadlineHandler(self, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections get the header deadline of :class:`_DeadlineHandler`."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _DeadlineServer  # same object and state, one method more
        return server
