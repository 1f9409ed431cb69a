"""Match-Trader Platform API client (REST) for one trading account.

Thread-safe enough to be shared by the threads of one worker (token refresh is serialised), and
light enough to hold 1,000 instances (pass one shared ``requests.Session`` to pool connections).

Error mapping (see ``matchtrader.errors``):
- connect timeout / connection refused (nothing sent)        → BrokerUnavailable
- read timeout, reset after send, 5xx: READ → BrokerUnavailable; WRITE → OutcomeUnknown
- 401 → refresh (or re-login); a READ is then sent once more. A WRITE is NOT: nothing documents
  that a 401 means "not executed", so it is OutcomeUnknown and the engine reads back (as for any
  lost answer) before anything is sent again.
- 429 → RateLimited(retry_after)
- 403 → BrokerUnavailable (a Cloudflare challenge passes); ``PERSISTENT_403_AFTER`` 403s in a row
  with no other answer between → ConfigurationError (a Cloudflare or User-Agent block that only a
  person can lift; it must not look like a broker outage forever)
- 400/404/405 → InvalidRequest; HTTP 200 with status != OK → OrderRejected(code, message)
- HTTP 200 with status OK AND an ``errorCode`` (a live cancel answered ``UNKNOWN_ERROR`` so) →
  logged, then OutcomeUnknown: the outcome is confirmed by reading back, never assumed
- 200 with an unparseable body: READ → MalformedResponse; WRITE → OutcomeUnknown (we cannot
  tell whether it executed).
- closed positions answered ``status: FULL`` (the history was cut) → the range is split in halves
  and read again, until no part is full; a part that cannot be split is an error, never a silent
  short history.

Account choice: with ``system_uuid`` or ``trading_account_id`` given, the login must contain that
account (else AuthenticationError). Without either, a login holding exactly ONE account uses it
(a re-login that finds another single account logs ``mt_login_account_changed``); a login holding
several is refused as ambiguous: the client never picks "the first" account, so a fallback login
during a refresh cannot switch accounts either. The order engine always passes the account's
``system_uuid``.

Cookies are sent explicitly per request (never from a shared cookie jar), so many clients can share
one pooled session without mixing accounts' ``co-auth`` cookies.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from tradeops.logging import get_logger
from tradeops.money import to_decimal

from . import protocol as P
from .errors import (
    AuthenticationError,
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    InvalidRequest,
    MalformedResponse,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
)
from .models import (
    ActiveOrder,
    Balance,
    Candle,
    ClosedPosition,
    Instrument,
    LoginResult,
    OpenPosition,
    OperationResult,
    Quote,
    TradingAccount,
    items,
)
from .ratelimit import RateLimiter, TokenBucket

log = get_logger(__name__)

# Observers of every HTTP call, called as ``observer(path, outcome, seconds)`` (outcome: the HTTP
# status, or the exception's class name). The broker boundary imports no metrics library: the
# application installs its recorder here (``tradeops.metrics`` does on import).
CALL_OBSERVERS: list = []

PERSISTENT_403_AFTER = 3  # 403 answers in a row (no other answer between) that make a block persistent


# --- exact JSON numbers from Decimal --------------------------------------------------------------
def dec_str(d: Decimal) -> str:
    """Plain (non-exponent) text of a finite Decimal: Decimal('1E+1') → '10'."""
    if not isinstance(d, Decimal):
        d = Decimal(str(d))
    if not d.is_finite():
        raise ValueError(f"not a finite number: {d}")
    return format(d, "f")


def dumps_exact(obj: Any) -> str:
    """JSON with every Decimal written as a JSON number, digit for digit (no float round trip)."""
    marks: dict[str, str] = {}

    def default(o):
        if isinstance(o, Decimal):
            key = f"\x00D{len(marks)}\x00"
            marks[key] = dec_str(o)
            return key
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    text = json.dumps(obj, default=default, separators=(",", ":"))
    for key, num in marks.items():
        text = text.replace(json.dumps(key), num, 1)
    return text


# --- token store ----------------------------------------------------------------------------------
class TokenStore(Protocol):
    def get(self, key: str) -> dict | None: ...

    def set(self, key: str, value: dict) -> None: ...


class InMemoryTokenStore:
    def __init__(self):
        self._d: dict[str, dict] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        with self._lock:
            v = self._d.get(key)
            return dict(v) if v else None

    def set(self, key: str, value: dict) -> None:
        with self._lock:
            self._d[key] = dict(value)


@dataclass
class _Tokens:
    co_auth: str
    rt: str
    trading_api_token: str
    system_uuid: str
    trading_account_id: str

    def to_dict(self) -> dict:
        return self.__dict__.copy()


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie, request):
        return False


def make_session(pool_maxsize: int = 64, user_agent: str = "tradeops/1.0") -> requests.Session:
    """A pooled session that never stores cookies (they are sent explicitly per account)."""
    s = requests.Session()
    adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_maxsize, max_retries=0)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.cookies.set_policy(_NoCookies())
    s.headers["User-Agent"] = user_agent
    if not urllib.request.getproxies():
        # No proxy configured: skip requests' per-call environment scan (proxies, netrc, CA bundle
        # variables), which walks os.environ twice per request -- about 15 % of an order's CPU.
        # The CA bundle variables are read once here instead.
        s.trust_env = False
        s.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return s


def _iso(dt: datetime | str | None) -> str | None:
    if dt is None or isinstance(dt, str):
        return dt
    if dt.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    return dt.astimezone(UTC).strftime(P.CANDLE_TIME_FORMAT)


OnMalformed = Callable[[Any, MalformedResponse], None]


def _parse_each(parse, rows: list, on_malformed: OnMalformed | None) -> list:
    if on_malformed is None:
        return [parse(d) for d in rows]
    out = []
    for d in rows:
        try:
            out.append(parse(d))
        except MalformedResponse as exc:
            on_malformed(d, exc)
    return out


def _num(value) -> Decimal:
    """A number for a request body: a ``Decimal`` as it is, a float (numpy's too) through its
    shortest repr, never ``Decimal(float)``'s binary expansion (0.1 -> 0.1000000000000000055...).
    NaN/infinity raise ``ValueError`` before anything is sent."""
    return to_decimal(value)


def _as_dt(v: datetime | str) -> datetime:
    if isinstance(v, str):
        v = datetime.fromisoformat(v.replace("Z", "+00:00"))
    if v.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    return v


def _opt_price(p: Decimal | None) -> Decimal:
    return Decimal(0) if p is None else _num(p)  # 0 = none [OBS]


class MatchTraderClient:
    def __init__(self, base_url: str, email: str, password: str, broker_id: str, *, system_uuid: str | None = None,
                 trading_account_id: str | None = None, session: requests.Session | None = None,
                 timeout: tuple[float, float] | float = (3.05, 10), user_agent: str = "tradeops/1.0",
                 rate_limiter: RateLimiter | None = None, token_store: TokenStore | None = None):
        self.base_url = base_url.rstrip("/")
        self.email = email
        self._password = password
        self.broker_id = str(broker_id)
        self.want_uuid = system_uuid
        self.want_account_id = trading_account_id
        self.session = session or make_session(user_agent=user_agent)
        self.timeout = timeout
        self.user_agent = user_agent
        self.rate_limiter = rate_limiter if rate_limiter is not None else TokenBucket()
        self.token_store = token_store or InMemoryTokenStore()
        self._tokens: _Tokens | None = None
        self._auth_lock = threading.Lock()
        self.login_result: LoginResult | None = None
        self._forbidden_in_a_row = 0
        self._pinned_uuid: str | None = None

    def __repr__(self) -> str:  # never show secrets
        return f"MatchTraderClient({self.base_url!r}, {self.email!r}, broker={self.broker_id!r})"

    @property
    def _store_key(self) -> str:
        return f"mt:{self.base_url}|{self.email.lower()}|{self.broker_id}|{self.want_uuid or self.want_account_id or ''}"

    @property
    def system_uuid(self) -> str:
        return self._ensure_tokens().system_uuid

    @property
    def trading_account_id(self) -> str:
        return self._ensure_tokens().trading_account_id

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url[4:] + P.PATH_WS if self.base_url.startswith("http") else self.base_url + P.PATH_WS

    # -- auth ----------------------------------------------------------------------------------------
    def _ensure_tokens(self) -> _Tokens:
        t = self._tokens
        if t is not None:
            return t
        with self._auth_lock:
            if self._tokens is None:
                stored = self.token_store.get(self._store_key)
                if stored:
                    self._tokens = _Tokens(**stored)
                else:
                    self._login_locked()
            return self._tokens

    def login(self) -> LoginResult:
        with self._auth_lock:
            return self._login_locked()

    def _login_locked(self) -> LoginResult:
        body = {P.F_EMAIL: self.email, P.F_PASSWORD: self._password, P.F_BROKER_ID: self.broker_id}
        resp = None
        for path in (P.PATH_LOGIN, P.PATH_LOGIN_ALIAS):
            resp = self._send("POST", path, body, write=False, auth=False)
            if resp.status_code not in (404, 405):
                break
        if resp.status_code in (400, 401):
            raise AuthenticationError(f"login refused: HTTP {resp.status_code} {_message(resp)}")
        self._raise_for_transport_status(resp, write=False, path=P.PATH_LOGIN)
        result = LoginResult.from_json(_json(resp, write=False))
        acct = self._choose(result.accounts)
        co_auth = resp.cookies.get(P.COOKIE_AUTH) or result.token
        self._tokens = _Tokens(co_auth=co_auth, rt=resp.cookies.get(P.COOKIE_REFRESH) or "",
                               trading_api_token=acct.trading_api_token, system_uuid=acct.system_uuid,
                               trading_account_id=acct.trading_account_id)
        self.token_store.set(self._store_key, self._tokens.to_dict())
        self.login_result = result
        log.info("mt_login", email=self.email, system_uuid=acct.system_uuid, accounts=len(result.accounts))
        return result

    def _choose(self, accounts: list[TradingAccount]) -> TradingAccount:
        if not accounts:
            raise AuthenticationError("login returned no trading accounts")
        for a in accounts:
            if (self.want_uuid and a.system_uuid == self.want_uuid) or (
                self.want_account_id and a.trading_account_id == str(self.want_account_id)
            ):
                return a
        if self.want_uuid or self.want_account_id:
            raise AuthenticationError("the requested trading account is not in the login response")
        if len(accounts) > 1:
            raise AuthenticationError(f"the login holds {len(accounts)} trading accounts: configure which one "
                                      "(system uuid or trading account id); the client never picks one")
        if self._pinned_uuid and accounts[0].system_uuid != self._pinned_uuid:
            # the login's only account was replaced (a broker migration, a restarted simulator):
            # still unambiguous, but never silent
            log.warning("mt_login_account_changed", email=self.email, was=self._pinned_uuid,
                        now=accounts[0].system_uuid)
        self._pinned_uuid = accounts[0].system_uuid
        return accounts[0]

    def refresh_session(self, stale: _Tokens | None = None) -> None:
        """Refresh the session cookies; fall back to a full login when refresh is refused (401/429)."""
        with self._auth_lock:
            if stale is not None and self._tokens is not None and self._tokens is not stale:
                return  # another thread already refreshed
            if self._tokens is None:
                self._login_locked()
                return
            t = self._tokens
            try:
                resp = self._send("POST", P.PATH_REFRESH, None, write=False, auth=False,
                                  cookies={P.COOKIE_AUTH: t.co_auth, P.COOKIE_REFRESH: t.rt})
            except BrokerUnavailable:
                resp = None
            new_auth = resp.cookies.get(P.COOKIE_AUTH) if resp is not None and resp.status_code == 200 else None
            if resp is not None and resp.status_code == 200 and not new_auth and resp.content:
                try:
                    new_auth = (resp.json() or {}).get(P.F_TOKEN)  # some clients see a JSON token [CODE S7]
                except ValueError:
                    new_auth = None
            if new_auth:
                self._tokens = _Tokens(co_auth=new_auth, rt=resp.cookies.get(P.COOKIE_REFRESH) or t.rt,
                                       trading_api_token=t.trading_api_token, system_uuid=t.system_uuid,
                                       trading_account_id=t.trading_account_id)
                self.token_store.set(self._store_key, self._tokens.to_dict())
                log.info("mt_token_refreshed", email=self.email)
                return
            log.info("mt_refresh_failed_relogin", email=self.email,
                     status=None if resp is None else resp.status_code)
            self._login_locked()

    def ws_auth_headers(self) -> dict[str, str]:
        """Handshake headers for the WebSocket ([doc §2.3](../docs/match-trader-api.md))."""
        t = self._ensure_tokens()
        return {P.HDR_TRADING_TOKEN: t.trading_api_token, "Cookie": f"{P.COOKIE_AUTH}={t.co_auth}"}

    # -- transport -----------------------------------------------------------------------------------
    def _send(self, method: str, path: str, body: Any, *, write: bool, auth: bool, params=None, cookies=None,
              tokens: _Tokens | None = None, priority: str = "normal") -> requests.Response:
        self.rate_limiter.acquire(1, priority)
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = dumps_exact(body).encode()
        if auth and tokens is not None:
            headers[P.HDR_TRADING_TOKEN] = tokens.trading_api_token
            cookies = {P.COOKIE_AUTH: tokens.co_auth}
        if cookies:
            # one Cookie header rather than requests' per-call cookie jar (built, merged with the
            # session's and policy-checked on every request: ~10 % of an order's client CPU)
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items() if v)
        url = self.base_url + path
        started, outcome = time.perf_counter(), None
        try:
            resp = self.session.request(method, url, data=data, params=params, headers=headers,
                                        timeout=self.timeout, allow_redirects=False)
            outcome = str(resp.status_code)
            return resp
        except requests.RequestException as e:
            raise transport_error(e, path, write=write) from e
        finally:
            for observe in CALL_OBSERVERS:
                observe(path, outcome or type(sys.exc_info()[1]).__name__, time.perf_counter() - started)

    def _raise_for_transport_status(self, resp: requests.Response, *, write: bool, path: str) -> None:
        code = resp.status_code
        if code != 403:
            self._forbidden_in_a_row = 0
        if code < 400:
            return
        if code == 429:
            raise RateLimited(_retry_after(resp))
        if code >= 500:
            if write:
                raise OutcomeUnknown(f"HTTP {code} after sending {path}", path=path, status=code)
            raise BrokerUnavailable(f"HTTP {code} on {path}", status=code)
        if code == 403:
            self._forbidden_in_a_row += 1
            if self._forbidden_in_a_row >= PERSISTENT_403_AFTER:
                log.error("mt_forbidden_persistent", email=self.email, path=path, in_a_row=self._forbidden_in_a_row,
                          cf_mitigated=resp.headers.get("cf-mitigated", ""))
                raise ConfigurationError(f"HTTP 403 on {path}, {self._forbidden_in_a_row} times in a row: the broker "
                                         "blocks this client (Cloudflare / User-Agent / IP); fix the configuration")
            raise BrokerUnavailable(f"HTTP 403 on {path} (challenge: {resp.headers.get('cf-mitigated', '')})",
                                    status=403)
        if code == 401:
            raise AuthenticationError(f"HTTP 401 on {path}: {_message(resp)}")
        raise InvalidRequest(code, _message(resp))

    def _call(self, method: str, path: str, body: Any = None, *, params=None, write: bool = False,
              priority: str = "normal") -> Any:
        for attempt in range(2):
            tokens = self._ensure_tokens()
            full = P.trading_path(tokens.system_uuid, path)
            resp = self._send(method, full, body, write=write, auth=True, params=params, tokens=tokens,
                              priority=priority)
            if resp.status_code == 401 and attempt == 0:
                self.refresh_session(stale=tokens)
                if write:
                    # nothing documents that a 401 on a write means "not executed": read back first
                    raise OutcomeUnknown(f"HTTP 401 on {path}; session renewed, outcome to confirm", path=path,
                                         status=401)
                continue
            self._raise_for_transport_status(resp, write=write, path=path)
            return _json(resp, write=write, path=path)
        raise AuthenticationError("still unauthorised after refresh")  # pragma: no cover

    def _write(self, path: str, body: Any, priority: str = "normal") -> OperationResult:
        payload = self._call("POST", path, body, write=True, priority=priority)
        try:
            result = OperationResult.from_json(payload)
        except MalformedResponse as e:
            raise OutcomeUnknown(f"unreadable answer to {path}: {e}", path=path) from e
        if not result.ok:
            raise OrderRejected(result.native_code, result.error_message, result.status)
        if result.error_code:
            log.warning("mt_ok_with_error_code", path=path, error_code=result.error_code, status=result.status,
                        order_id=result.order_id)
            raise OutcomeUnknown(f"{path}: status {result.status} with errorCode {result.error_code}; "
                                 "outcome to confirm by reading back", path=path)
        return result

    # -- public API: account-level -------------------------------------------------------------------
    def platform_details(self) -> dict:
        resp = self._send("GET", P.PATH_PLATFORM_DETAILS, None, write=False, auth=False)
        self._raise_for_transport_status(resp, write=False, path=P.PATH_PLATFORM_DETAILS)
        data = _json(resp, write=False)
        if not isinstance(data, dict):
            raise MalformedResponse("platform details is not an object")
        return data

    # -- reads ---------------------------------------------------------------------------------------
    def instruments(self) -> list[Instrument]:
        return [Instrument.from_json(d) for d in items(self._call("GET", P.P_INSTRUMENTS), "instruments")]

    def quotations(self, symbols: Iterable[str], on_malformed: OnMalformed | None = None) -> list[Quote]:
        """Quotes of ``symbols``. With ``on_malformed``, one bad entry (NaN, negative, missing
        field) is reported to it and skipped so the others still arrive; without, it raises."""
        syms = ",".join(symbols)
        data = self._call("GET", P.P_QUOTATIONS, params={P.F_SYMBOLS: syms})
        return _parse_each(Quote.from_json, items(data, "quotations"), on_malformed)

    def candles(self, symbol: str, interval: str, from_: datetime | str, to: datetime | str | None = None,
                on_malformed: OnMalformed | None = None) -> list[Candle]:
        if interval not in P.INTERVAL_SECONDS:
            raise ValueError(f"interval must be one of {P.INTERVALS}")
        params = {P.F_SYMBOL: symbol, P.F_INTERVAL: interval, P.F_FROM: _iso(from_)}
        if to is not None:
            params[P.F_TO] = _iso(to)
        data = self._call("GET", P.P_CANDLES, params=params)
        rows = items(data, P.F_CANDLES)
        return _parse_each(Candle.from_json, rows, on_malformed)

    def balance(self) -> Balance:
        data = self._call("GET", P.P_BALANCE)
        if not isinstance(data, dict):
            raise MalformedResponse("balance is not an object")
        return Balance.from_json(data)

    def open_positions(self) -> list[OpenPosition]:
        return [OpenPosition.from_json(d) for d in items(self._call("GET", P.P_OPEN_POSITIONS), P.F_POSITIONS)]

    def active_orders(self) -> list[ActiveOrder]:
        return [ActiveOrder.from_json(d) for d in items(self._call("GET", P.P_ACTIVE_ORDERS), P.F_ORDERS)]

    def closed_positions(self, from_: datetime | str, to: datetime | str, symbols: list[str] | None = None
                         ) -> list[ClosedPosition]:
        lo, hi = _as_dt(from_), _as_dt(to)
        out: dict[tuple, ClosedPosition] = {}
        stack = [(lo, hi)]
        while stack:
            a, b = stack.pop()
            body: dict = {P.F_FROM: _iso(a), P.F_TO: _iso(b)}
            if symbols:
                body[P.F_SYMBOLS] = list(symbols)
            data = self._call("POST", P.P_CLOSED_POSITIONS, body)  # a POST, but a read: safe to retry
            if isinstance(data, dict) and str(data.get(P.F_CLOSED_STATUS) or "").upper() == P.STATUS_FULL:
                if b - a <= timedelta(seconds=1):
                    raise MalformedResponse(f"closed positions {_iso(a)}..{_iso(b)} still truncated (status FULL)")
                log.info("mt_closed_history_truncated_paging", start=_iso(a), end=_iso(b))
                mid = a + (b - a) / 2
                stack += [(a, mid), (mid, b)]
                continue
            for row in items(data, P.F_OPERATIONS):
                c = ClosedPosition.from_json(row)
                # halves share their boundary second: a row read twice has the same closing order
                out[(c.id, c.closing_order_id, c.close_time, c.volume)] = c
        return sorted(out.values(), key=lambda c: (c.close_time or datetime.min.replace(tzinfo=UTC), c.id))

    # -- writes --------------------------------------------------------------------------------------
    def open_position(self, symbol: str, side: str, volume: Decimal, sl: Decimal | None = None,
                      tp: Decimal | None = None, *, intent: str | None = None) -> OperationResult:
        """Market order. The returned ``order_id`` is an ORDER id; read the position id back from
        :meth:`open_positions` ([doc §3.6](../docs/match-trader-api.md)). ``intent`` (the order's
        idempotency key) is accepted for the interface shared with the Trader API client; the
        Platform API has no client order id, so exactly-once rests on the read-back here."""
        body = {P.F_INSTRUMENT: symbol, P.F_ORDER_SIDE: _side(side), P.F_VOLUME: _num(volume),
                P.F_SL_PRICE: _opt_price(sl), P.F_TP_PRICE: _opt_price(tp), P.F_IS_MOBILE: False}
        return self._write(P.P_POSITION_OPEN, body)

    def edit_position(self, position_id: str, symbol: str, side: str, volume: Decimal, sl: Decimal | None,
                      tp: Decimal | None) -> OperationResult:
        body = {P.F_ID: position_id, P.F_INSTRUMENT: symbol, P.F_ORDER_SIDE: _side(side), P.F_VOLUME: _num(volume),
                P.F_SL_PRICE: _opt_price(sl), P.F_TP_PRICE: _opt_price(tp), P.F_IS_MOBILE: False}
        return self._write(P.P_POSITION_EDIT, body, priority="high")

    def close_position(self, position_id: str, symbol: str, side: str, volume: Decimal, *,
                       intent: str | None = None) -> OperationResult:
        """``side`` is the POSITION's side ([doc §3.6](../docs/match-trader-api.md))."""
        body = {P.F_POSITION_ID: position_id, P.F_INSTRUMENT: symbol, P.F_ORDER_SIDE: _side(side),
                P.F_VOLUME: _num(volume)}
        return self._write(P.P_POSITION_CLOSE, body, priority="high")

    def close_positions(self, positions: Iterable[OpenPosition | dict]) -> OperationResult:
        """Close many in one request. Accepts OpenPosition objects or dicts with
        positionId/instrument/orderSide/volume. PARTIAL_SUCCESS is returned (not raised)."""
        body = []
        for p in positions:
            if isinstance(p, OpenPosition):
                body.append({P.F_POSITION_ID: p.id, P.F_INSTRUMENT: p.symbol, P.F_ORDER_SIDE: p.side,
                             P.F_VOLUME: p.volume})
            else:
                body.append(dict(p))
        if not body:
            raise ValueError("no positions to close")
        return self._write(P.P_POSITIONS_CLOSE, body, priority="high")

    def close_partially(self, position_id: str, symbol: str, side: str, volume: Decimal, *,
                        intent: str | None = None) -> OperationResult:
        body = {P.F_POSITION_ID: position_id, P.F_VOLUME: _num(volume), P.F_INSTRUMENT: symbol,
                P.F_ORDER_SIDE: _side(side), P.F_IS_MOBILE: False}
        return self._write(P.P_POSITION_CLOSE_PARTIALLY, body, priority="high")

    def create_pending(self, symbol: str, side: str, type: str, volume: Decimal, price: Decimal,
                       sl: Decimal | None = None, tp: Decimal | None = None, *, intent: str | None = None
                       ) -> OperationResult:
        body = {P.F_INSTRUMENT: symbol, P.F_ORDER_SIDE: _side(side), P.F_VOLUME: _num(volume),
                P.F_SL_PRICE: _opt_price(sl), P.F_TP_PRICE: _opt_price(tp), P.F_IS_MOBILE: False,
                P.F_PRICE: _num(price), P.F_TYPE: _otype(type)}
        return self._write(P.P_PENDING_CREATE, body)

    def edit_pending(self, order_id: str, symbol: str, side: str, type: str, volume: Decimal, price: Decimal,
                     sl: Decimal | None = None, tp: Decimal | None = None) -> OperationResult:
        body = {P.F_ID: order_id, P.F_INSTRUMENT: symbol, P.F_ORDER_SIDE: _side(side), P.F_VOLUME: _num(volume),
                P.F_TYPE: _otype(type), P.F_PRICE_ORDER: _num(price), P.F_SL_PRICE: _opt_price(sl),
                P.F_TP_PRICE: _opt_price(tp), P.F_IS_MOBILE: False}
        return self._write(P.P_PENDING_EDIT, body)

    def cancel_pending(self, order_id: str, symbol: str, side: str, type: str) -> OperationResult:
        body = {P.F_ID: order_id, P.F_INSTRUMENT: symbol, P.F_ORDER_SIDE: _side(side), P.F_TYPE: _otype(type),
                P.F_IS_MOBILE: False}
        return self._write(P.P_PENDING_CANCEL, body, priority="high")


# --- helpers --------------------------------------------------------------------------------------
def _side(side: str) -> str:
    s = str(side).upper()
    if s not in P.SIDES:
        raise ValueError("side must be BUY or SELL")
    return s


def _otype(t: str) -> str:
    s = str(t).upper()
    if s not in P.PENDING_TYPES:
        raise ValueError("type must be LIMIT or STOP")
    return s


def transport_error(exc: requests.RequestException, path: str, *, write: bool) -> BrokerError:
    """What a failed HTTP exchange means, for both APIs' clients: a request that surely never left
    (connect timeout, refused) is ``BrokerUnavailable``; a write that may have reached the broker
    (read timeout, a connection dropped after sending) is ``OutcomeUnknown`` -- read back before
    anything is sent again; a read is always safe to repeat."""
    if isinstance(exc, requests.ConnectTimeout):
        return BrokerUnavailable(f"connect timeout: {path}")
    if isinstance(exc, requests.ReadTimeout):
        if write:
            return OutcomeUnknown(f"read timeout after sending {path}", path=path)
        return BrokerUnavailable(f"read timeout: {path}")
    if isinstance(exc, requests.ConnectionError):
        if _not_sent(exc) or not write:
            return BrokerUnavailable(f"connection failed: {path}: {type(exc).__name__}")
        return OutcomeUnknown(f"connection dropped after sending {path}", path=path)
    if write:
        return OutcomeUnknown(f"{type(exc).__name__} on {path}", path=path)
    return BrokerUnavailable(f"{type(exc).__name__} on {path}")


def _not_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection failed before the request went out (refused, DNS, connect timeout)."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def _retry_after(resp: requests.Response) -> float:
    raw = resp.headers.get(P.HDR_RETRY_AFTER, "")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 1.0


def _message(resp: requests.Response) -> str:
    try:
        data = resp.json()
        if isinstance(data, dict):
            return str(data.get(P.F_ERROR_MESSAGE) or data.get("message") or data)
    except ValueError:
        pass
    return resp.text[:200]


def _json(resp: requests.Response, *, write: bool, path: str = "") -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError as e:
        if write:
            raise OutcomeUnknown(f"unparseable answer to {path}", path=path) from e
        raise MalformedResponse(f"unparseable JSON from {path}: {resp.text[:80]!r}") from e
