"""Match-Trader **Trader API** client (REST, one bearer token = one trading account).

The same interface as the Platform API client (:class:`matchtrader.client.MatchTraderClient`):
the order engine, the polling feed transport and reconciliation call ``instruments``,
``quotations``, ``candles``, ``balance``, ``open_positions``, ``closed_positions``,
``open_position``, ``close_position`` ... and get the same typed values and the same errors
(:mod:`matchtrader.errors`), so nothing above the broker boundary knows which API an account uses.

What differs, and why it is safe:

* **Idempotency-Key.** ``open_position(..., intent=KEY)`` / ``close_position(..., intent=KEY)``
  send ``Idempotency-Key: uuid5(KEY)``: the order row's idempotency key (stable across retries,
  redeliveries and worker restarts) always gives the same header, and the body of one intent is
  byte-identical on every attempt (the engine sends the row's stored values; ``dumps_exact``
  writes Decimals digit for digit). One close *request* is one intent (each close order row has its
  own key), never one per position. The read-back stays as confirmation and as the fallback where a
  broker ignores keys.
* **Order tag.** ``comment`` carries :func:`order_tag` of the intent; positions read back carry
  it as ``OpenPosition.comment`` when the broker echoes it (unknown for the real API [INF]), and
  :func:`orders.matching.find_match` prefers it.
* **Errors by problem type** (``error://trader-api/...``), never by ``title``/``detail``:

  ===========================================  ==============================================
  answer                                       raised
  ===========================================  ==============================================
  400 ``trading-validation-failed``            ``OrderRejected(additionalInfo.reason or type,
                                               detail)`` -- a recorded reject with the detail
  400 on a close, any type                     read open + closed positions, then decide:
                                               gone → ``OrderRejected(POSITION_NOT_FOUND)``
                                               (the engine records the close from history),
                                               still open → ``OrderRejected`` as above
  400 ``idempotency-key-invalid``              ``IdempotencyKeyInvalid`` (logged as an error:
                                               a defect, our keys are always UUIDs)
  other 400, 404, 405                          ``InvalidRequest``
  401 (any type)                               ``TokenRevoked`` -- never retried, never a
                                               re-login: the account halts (cause ``token``)
  403 (any type)                               ``ScopeForbidden`` -- on a write, the token is
                                               read-only: the account becomes monitor-only
  429                                          ``RateLimited(Retry-After)``
  5xx, read timeout, reset after send          READ → ``BrokerUnavailable``; WRITE →
                                               ``OutcomeUnknown`` (retried with the same key)
  ===========================================  ==============================================

The token is held in memory only, never in ``repr``, logs or exceptions.
"""

from __future__ import annotations

import sys
import time
import uuid as uuid_mod
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import requests

from tradeops.logging import get_logger

from . import protocol as P
from .client import (
    CALL_OBSERVERS,
    OnMalformed,
    _json,
    _otype,
    _parse_each,
    _retry_after,
    _side,
    dumps_exact,
    make_session,
    transport_error,
)
from .errors import (
    BrokerUnavailable,
    IdempotencyKeyInvalid,
    InvalidRequest,
    MalformedResponse,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    ScopeForbidden,
    TokenRevoked,
)
from .models import (
    ActiveOrder,
    Balance,
    Candle,
    ClosedPosition,
    Instrument,
    OpenPosition,
    OperationResult,
    Quote,
    dec,
    ms_to_dt,
    opt_dec,
)
from .ratelimit import RateLimiter, TokenBucket

log = get_logger(__name__)

# uuid5 namespace of tradeops' Idempotency-Keys (fixed forever: changing it would change every key)
KEY_NAMESPACE = uuid_mod.UUID("5b0c1f3e-8f7a-4c57-9d0e-13b7a0de7a11")


def idempotency_key(intent: str) -> str:
    """The ``Idempotency-Key`` of an order intent: deterministic, a canonical lowercase UUID."""
    return str(uuid_mod.uuid5(KEY_NAMESPACE, str(intent)))


def order_tag(intent: str) -> str:
    """The short tag written in ``comment`` and matched on positions read back."""
    return P.ta_comment_tag(idempotency_key(intent))


def _ms(dt: datetime | str | int) -> int:
    if isinstance(dt, int):
        return dt
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    return int(dt.timestamp() * 1000)


def _num_or_null(p: Decimal | None) -> Decimal | None:
    return None if p is None or Decimal(p) == 0 else Decimal(p)  # "no SL/TP" is null [DOC T6]


class TraderApiClient:
    api = "trader"

    def __init__(self, base_url: str, token: str, *, session: requests.Session | None = None,
                 timeout: tuple[float, float] | float = (3.05, 10), user_agent: str = "tradeops/1.0",
                 rate_limiter: RateLimiter | None = None, label: str = ""):
        if not token:
            raise ValueError("a Trader API token is required")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.session = session or make_session(user_agent=user_agent)
        self.timeout = timeout
        self.user_agent = user_agent
        self.rate_limiter = rate_limiter if rate_limiter is not None else TokenBucket()
        self.label = label  # a non-secret name for logs (the account's name)

    def __repr__(self) -> str:  # never show the token
        return f"TraderApiClient({self.base_url!r}, account={self.label!r})"

    # -- transport -----------------------------------------------------------------------------------
    def _send(self, op: str, *, body: Any = None, params=None, key: str | None = None,
              priority: str = "normal", **ids: str) -> requests.Response:
        method, path = P.ta_route(op, **ids)
        write = op in P.TA_WRITES
        self.rate_limiter.acquire(1, priority)
        headers = {"Accept": "application/json", "User-Agent": self.user_agent,
                   P.TA_HDR_AUTH: P.TA_BEARER + self._token}
        if key is not None:
            headers[P.TA_HDR_IDEMPOTENCY_KEY] = key
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = dumps_exact(body).encode()
        started, outcome = time.perf_counter(), None
        try:
            resp = self.session.request(method, self.base_url + path, data=data, params=params, headers=headers,
                                        timeout=self.timeout, allow_redirects=False)
            outcome = str(resp.status_code)
        except requests.RequestException as e:
            raise transport_error(e, path, write=write) from e
        finally:
            # the same observers as the Platform API client (metrics), labelled by the path
            # template so ids never become label values
            for observe in CALL_OBSERVERS:
                observe(P.TA_ROUTES[op][1], outcome or type(sys.exc_info()[1]).__name__,
                        time.perf_counter() - started)
        if resp.status_code >= 400:
            self._raise(resp, op=op, path=path, write=write)
        return resp

    def _raise(self, resp: requests.Response, *, op: str, path: str, write: bool) -> None:
        code = resp.status_code
        prob = _problem(resp)
        ptype = prob.get(P.TA_F_TYPE) or ""
        detail = str(prob.get(P.TA_F_DETAIL) or "")[:500]
        info = prob.get(P.TA_F_ADDITIONAL_INFO) if isinstance(prob.get(P.TA_F_ADDITIONAL_INFO), dict) else {}
        if code == 429:
            raise RateLimited(_retry_after(resp))
        if code >= 500:
            if write:
                raise OutcomeUnknown(f"HTTP {code} after sending {path}", path=path, status=code)
            raise BrokerUnavailable(f"HTTP {code} on {path}", status=code)
        if code == 401:
            raise TokenRevoked("token revoked or expired")
        if code == 403:
            raise ScopeForbidden(f"HTTP 403 on {op} ({ptype or 'no type'})", write=write)
        if code == 400 and ptype == P.TA_ERR_IDEMPOTENCY_KEY:
            log.error("trader_api_idempotency_key_refused", account=self.label, op=op, detail=detail,
                      reason=str(info.get(P.TA_F_REASON) or ""))
            raise IdempotencyKeyInvalid(400, f"{ptype}: {detail}")
        if code == 400 and ptype == P.TA_ERR_VALIDATION and write:
            raise OrderRejected(str(info.get(P.TA_F_REASON) or "TRADING_VALIDATION_FAILED"), detail)
        raise InvalidRequest(code, f"{ptype or 'no type'}: {detail}")

    def _get(self, op: str, params=None) -> Any:
        resp = self._send(op, params=params)
        data = _json(resp, write=False, path=op)
        if not isinstance(data, dict):
            raise MalformedResponse(f"{op}: answer is not an object")
        return data

    # -- reads ---------------------------------------------------------------------------------------
    def account(self) -> dict:
        return self._get(P.TA_ACCOUNT)

    def instruments(self) -> list[Instrument]:
        out = []
        for d in _list(self._get(P.TA_SYMBOLS), P.TA_F_SYMBOLS):
            digits = d.get(P.TA_F_DIGITS, d.get("pricePrecision"))
            out.append(Instrument(
                symbol=str(_req(d, P.TA_F_SYMBOL)), price_precision=int(dec(digits, name=P.TA_F_DIGITS)),
                volume_min=dec(_req(d, "volumeMin"), name="volumeMin"),
                volume_max=dec(_req(d, "volumeMax"), name="volumeMax"),
                volume_step=dec(_req(d, "volumeStep"), name="volumeStep"),
                contract_size=dec(_req(d, P.TA_F_CONTRACT_SIZE), name=P.TA_F_CONTRACT_SIZE),
                base_currency=str(d.get("baseCurrency") or ""), quote_currency=str(d.get("quoteCurrency") or ""),
                description=str(d.get("description") or ""), type=str(d.get("type") or "")))
        return out

    def quotations(self, symbols: Iterable[str], on_malformed: OnMalformed | None = None) -> list[Quote]:
        """As the Platform client: with ``on_malformed`` a bad entry is reported and skipped."""
        data = self._get(P.TA_QUOTES, params=[(P.TA_F_SYMBOL, s) for s in symbols])
        return _parse_each(_quote, _list(data, P.TA_F_QUOTES), on_malformed)

    def candles(self, symbol: str, interval: str, from_: datetime | str, to: datetime | str | None = None,
                on_malformed: OnMalformed | None = None) -> list[Candle]:
        if interval not in P.INTERVAL_SECONDS:
            raise ValueError(f"interval must be one of {P.INTERVALS}")
        params = {P.TA_F_SYMBOL: symbol, P.TA_F_INTERVAL: interval, P.TA_F_FROM: _ms(from_),
                  P.TA_F_LIMIT: P.TA_LIMIT_CANDLES_MAX}
        if to is not None:
            params[P.TA_F_TO] = _ms(to)
        data = self._get(P.TA_CANDLES, params=params)
        return _parse_each(_candle, _list(data, P.TA_F_CANDLES), on_malformed)

    def balance(self) -> Balance:
        d = self._get(P.TA_SUMMARY)
        equity = dec(_req(d, P.TA_F_EQUITY), name=P.TA_F_EQUITY)
        profit = dec(d.get(P.TA_F_PROFIT), Decimal(0))
        return Balance(balance=dec(_req(d, P.TA_F_BALANCE), name=P.TA_F_BALANCE), equity=equity,
                       free_margin=dec(d.get(P.TA_F_FREE_FUNDS), Decimal(0)), margin=dec(d.get(P.TA_F_MARGIN), Decimal(0)),
                       currency=str(d.get(P.TA_F_CURRENCY) or ""), credit=dec(d.get(P.TA_F_CREDIT), Decimal(0)),
                       profit=profit, net_profit=profit, margin_level=dec(d.get(P.TA_F_MARGIN_LEVEL), Decimal(0)))

    def open_positions(self) -> list[OpenPosition]:
        out = []
        for d in _list(self._get(P.TA_POSITIONS), P.TA_F_POSITIONS):
            t = d.get(P.TA_F_OPEN_TIME)
            out.append(OpenPosition(
                id=str(_req(d, P.TA_F_ID)), symbol=str(_req(d, P.TA_F_SYMBOL)), side=str(_req(d, P.TA_F_SIDE)).upper(),
                volume=dec(_req(d, P.TA_F_VOLUME), name=P.TA_F_VOLUME),
                open_price=dec(_req(d, P.TA_F_OPEN_PRICE), name=P.TA_F_OPEN_PRICE), current_price=None,
                stop_loss=opt_dec(d.get(P.TA_F_SL_PRICE)), take_profit=opt_dec(d.get(P.TA_F_TP_PRICE)),
                profit=dec(d.get(P.TA_F_PROFIT), Decimal(0)), net_profit=dec(d.get(P.TA_F_PROFIT), Decimal(0)),
                swap=dec(d.get(P.TA_F_SWAP), Decimal(0)), commission=dec(d.get(P.TA_F_COMMISSION), Decimal(0)),
                open_time=_time(t), comment=str(d.get(P.TA_F_COMMENT) or "")))
        return out

    def active_orders(self) -> list[ActiveOrder]:
        return [ActiveOrder(id=str(_req(d, P.TA_F_ID)), symbol=str(_req(d, P.TA_F_SYMBOL)),
                            side=str(_req(d, P.TA_F_SIDE)).upper(), type=str(_req(d, "type")).upper(),
                            volume=dec(_req(d, P.TA_F_VOLUME), name=P.TA_F_VOLUME),
                            activation_price=dec(_req(d, P.TA_F_ACTIVATION_PRICE), name=P.TA_F_ACTIVATION_PRICE),
                            stop_loss=opt_dec(d.get(P.TA_F_SL_PRICE)), take_profit=opt_dec(d.get(P.TA_F_TP_PRICE)),
                            creation_time=_time(d.get("createdTime")))
                for d in _list(self._get(P.TA_PENDING), P.TA_F_PENDING_ORDERS)]

    def closed_positions(self, from_: datetime | str, to: datetime | str, symbols: list[str] | None = None
                         ) -> list[ClosedPosition]:
        """Every position closed in [from_, to]. The API caps one answer at 500 rows with no cursor
        [DOC T11]: a full page is split in halves by time until every part is below the cap (a
        history that cannot be split any further is reported as truncated, never silently cut)."""
        lo, hi = _ms(from_), _ms(to)
        out: list[ClosedPosition] = []
        stack = [(lo, hi)]  # the halves never overlap (integer ms): no row is read twice
        while stack:
            a, b = stack.pop()
            params: list = [(P.TA_F_FROM, a), (P.TA_F_TO, b), (P.TA_F_LIMIT, P.TA_LIMIT_CLOSED_MAX)]
            params += [(P.TA_F_SYMBOL, s) for s in symbols or ()]
            rows = _list(self._get(P.TA_CLOSED, params=params), P.TA_F_CLOSED_POSITIONS)
            if len(rows) >= P.TA_LIMIT_CLOSED_MAX:
                if b - a <= 1:
                    raise MalformedResponse(f"closed positions: more than {P.TA_LIMIT_CLOSED_MAX} in one ms")
                mid = (a + b) // 2
                stack += [(a, mid), (mid + 1, b)]
                continue
            for d in rows:
                c = ClosedPosition(
                    id=str(_req(d, P.TA_F_ID)), symbol=str(_req(d, P.TA_F_SYMBOL)),
                    side=str(_req(d, P.TA_F_SIDE)).upper(), volume=dec(_req(d, P.TA_F_VOLUME), name=P.TA_F_VOLUME),
                    open_price=dec(d.get(P.TA_F_OPEN_PRICE), Decimal(0)),
                    close_price=dec(d.get(P.TA_F_CLOSE_PRICE), Decimal(0)),
                    profit=dec(d.get(P.TA_F_PROFIT), Decimal(0)), net_profit=dec(d.get("netProfit", d.get(P.TA_F_PROFIT)), Decimal(0)),
                    open_time=_time(d.get(P.TA_F_OPEN_TIME)), close_time=_time(d.get(P.TA_F_CLOSE_TIME)),
                    comment=str(d.get(P.TA_F_COMMENT) or ""))
                out.append(c)
        return sorted(out, key=lambda c: (c.close_time or datetime.min.replace(tzinfo=UTC), c.id))

    # -- writes --------------------------------------------------------------------------------------
    def open_position(self, symbol: str, side: str, volume: Decimal, sl: Decimal | None = None,
                      tp: Decimal | None = None, *, intent: str | None = None) -> OperationResult:
        """Market order. ``intent``: the order's idempotency key (→ Idempotency-Key and the comment
        tag). Returns ``order_id`` = ``position_id`` = the new position's id [DOC T6]."""
        body = {P.TA_F_SYMBOL: symbol, P.TA_F_SIDE: _side(side), P.TA_F_VOLUME: Decimal(volume),
                P.TA_F_SL_PRICE: _num_or_null(sl), P.TA_F_TP_PRICE: _num_or_null(tp)}
        if intent:
            body[P.TA_F_COMMENT] = order_tag(intent)
        resp = self._send(P.TA_OPEN, body=body, key=idempotency_key(intent) if intent else None)
        data = _json(resp, write=True, path=P.TA_OPEN)
        pid = data.get(P.TA_F_POSITION_ID) if isinstance(data, dict) else None
        if not pid:
            raise OutcomeUnknown("open position: answer without positionId", path=P.TA_OPEN)
        return OperationResult(P.STATUS_OK, None, "", str(pid), position_id=str(pid))

    def close_position(self, position_id: str, symbol: str = "", side: str = "", volume: Decimal | None = None,
                       *, intent: str | None = None, full: bool = True) -> OperationResult:
        """Close in full (``full``: no volume sent) or ``volume`` lots (``full=False``). Any 400 →
        read the positions back, then decide (the API documents no "position not found" type)."""
        body = None if full or volume is None else {P.TA_F_VOLUME: Decimal(volume)}
        key = idempotency_key(intent) if intent else None
        try:
            self._send(P.TA_CLOSE, body=body, key=key, priority="high", id=str(position_id))
        except (OrderRejected, InvalidRequest) as exc:
            if isinstance(exc, IdempotencyKeyInvalid):
                raise
            if self._still_open(position_id):
                raise
            raise OrderRejected(P.REJECT_POSITION_NOT_FOUND, f"position {position_id} is no longer open: {exc}") from exc
        return OperationResult(P.STATUS_OK, None, "", None, position_id=str(position_id))

    def close_partially(self, position_id: str, symbol: str, side: str, volume: Decimal, *,
                        intent: str | None = None) -> OperationResult:
        return self.close_position(position_id, symbol, side, volume, intent=intent, full=False)

    def _still_open(self, position_id: str) -> bool:
        try:
            return any(p.id == str(position_id) for p in self.open_positions())
        except (BrokerUnavailable, RateLimited, MalformedResponse):
            return True  # cannot tell: keep the broker's reject

    def edit_position(self, position_id: str, symbol: str, side: str, volume: Decimal, sl: Decimal | None,
                      tp: Decimal | None) -> OperationResult:
        self._send(P.TA_EDIT, body={P.TA_F_SL_PRICE: _num_or_null(sl), P.TA_F_TP_PRICE: _num_or_null(tp)},
                   priority="high", id=str(position_id))
        return OperationResult(P.STATUS_OK, None, "", None, position_id=str(position_id))

    def create_pending(self, symbol: str, side: str, type: str, volume: Decimal, price: Decimal,
                       sl: Decimal | None = None, tp: Decimal | None = None, *, intent: str | None = None
                       ) -> OperationResult:
        body = {P.TA_F_SYMBOL: symbol, P.TA_F_SIDE: _side(side), "type": _otype(type), P.TA_F_VOLUME: Decimal(volume),
                P.TA_F_ACTIVATION_PRICE: Decimal(price), P.TA_F_SL_PRICE: _num_or_null(sl),
                P.TA_F_TP_PRICE: _num_or_null(tp)}
        if intent:
            body[P.TA_F_COMMENT] = order_tag(intent)
        resp = self._send(P.TA_PENDING_CREATE, body=body, key=idempotency_key(intent) if intent else None)
        data = _json(resp, write=True, path=P.TA_PENDING_CREATE)
        oid = data.get(P.TA_F_PENDING_ORDER_ID) if isinstance(data, dict) else None
        if not oid:
            raise OutcomeUnknown("create pending: answer without pendingOrderId", path=P.TA_PENDING_CREATE)
        return OperationResult(P.STATUS_OK, None, "", str(oid))

    def edit_pending(self, order_id: str, symbol: str, side: str, type: str, volume: Decimal, price: Decimal,
                     sl: Decimal | None = None, tp: Decimal | None = None) -> OperationResult:
        self._send(P.TA_PENDING_UPDATE, body={P.TA_F_ACTIVATION_PRICE: Decimal(price), P.TA_F_VOLUME: Decimal(volume),
                                              P.TA_F_SL_PRICE: _num_or_null(sl), P.TA_F_TP_PRICE: _num_or_null(tp)},
                   id=str(order_id))
        return OperationResult(P.STATUS_OK, None, "", str(order_id))

    def cancel_pending(self, order_id: str, symbol: str = "", side: str = "", type: str = "") -> OperationResult:
        self._send(P.TA_PENDING_CANCEL, priority="high", id=str(order_id))
        return OperationResult(P.STATUS_OK, None, "", str(order_id))


# --- helpers --------------------------------------------------------------------------------------
def _quote(d: dict) -> Quote:
    """A Trader API quote row, renamed to the Platform shape and parsed by the same model (one set
    of checks: finite, positive prices)."""
    if not isinstance(d, dict):
        raise MalformedResponse("quote is not an object")
    return Quote.from_json({P.F_SYMBOL: d.get(P.TA_F_SYMBOL), P.F_BID: d.get("bid"), P.F_ASK: d.get("ask"),
                            P.F_TIMESTAMP_MS: d.get(P.TA_F_TIME)})


def _candle(d: dict) -> Candle:
    if not isinstance(d, dict):
        raise MalformedResponse("candle is not an object")
    return Candle.from_json(d)  # same field names as the Platform API's candles [INF]


def _problem(resp: requests.Response) -> dict:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _req(d: dict, key: str):
    if not isinstance(d, dict) or d.get(key) is None:
        raise MalformedResponse(f"missing field {key!r}")
    return d[key]


def _list(data: dict, key: str) -> list:
    rows = data.get(key)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise MalformedResponse(f"{key!r} is not a list of objects")
    return rows


def _time(v) -> datetime | None:
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        n = int(v)
        return ms_to_dt(n if n > 10**11 else n * 1000)
    try:
        return datetime.fromisoformat(str(v).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise MalformedResponse(f"not a time: {v!r}") from exc


__all__ = ["TraderApiClient", "idempotency_key", "order_tag"]
