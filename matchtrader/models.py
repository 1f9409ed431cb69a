"""Typed values at the broker boundary. Money, volumes and prices are ``Decimal``.

Real brokers send numbers either as JSON numbers or as strings (``"balance":"1000.01"``,
[doc §3](../docs/match-trader-api.md)), so every numeric field goes through :func:`dec`, which accepts both and never round-trips through
binary float formatting (a JSON float is converted via ``str``, i.e. its shortest repr).
Missing optional fields get neutral defaults; a missing required field raises ``MalformedResponse``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from . import protocol as P
from .errors import MalformedResponse

ZERO = Decimal("0")


def dec(value: Any, default: Decimal | None = None, *, name: str = "") -> Decimal:
    """Decimal from a JSON number or numeric string. ``None``/``""`` → ``default`` (or raise)."""
    if value is None or value == "":
        if default is not None:
            return default
        raise MalformedResponse(f"missing numeric field {name!r}")
    if isinstance(value, bool):
        raise MalformedResponse(f"field {name!r} is a boolean, not a number")
    try:
        if isinstance(value, Decimal):
            result = value
        elif isinstance(value, float):
            result = Decimal(float.__repr__(value))
        else:
            result = Decimal(value if isinstance(value, str) else int(value))
    except (InvalidOperation, ValueError, TypeError, OverflowError) as exc:
        raise MalformedResponse(f"field {name!r} is not a number: {value!r}") from exc
    if not result.is_finite():  # JSON NaN/Infinity, "nan", "-Infinity": no broker number is one
        raise MalformedResponse(f"field {name!r} is not a finite number: {value!r}")
    return result


def price(value: Any, *, name: str) -> Decimal:
    """A required market price: finite and > 0 (a zero or negative quote is a broken frame)."""
    d = dec(value, name=name)
    if d <= 0:
        raise MalformedResponse(f"field {name!r} is not a positive price: {value!r}")
    return d


def size(value: Any, default: Decimal | None = None, *, name: str) -> Decimal:
    """A traded or resting size: finite and >= 0."""
    d = dec(value, default, name=name)
    if d < 0:
        raise MalformedResponse(f"field {name!r} is a negative size: {value!r}")
    return d


def opt_dec(value: Any) -> Decimal | None:
    """Decimal or None; ``0`` means "none" for SL/TP prices ([doc §3.6](../docs/match-trader-api.md))."""
    if value is None or value == "":
        return None
    d = dec(value)
    return None if d == 0 else d


def _int(value: Any, default: int = 0) -> int:
    if value is None or value == "":
        return default
    try:
        return int(Decimal(str(value)))
    except (InvalidOperation, ValueError) as exc:
        raise MalformedResponse(f"not an integer: {value!r}") from exc


def _req(d: dict, key: str) -> Any:
    if not isinstance(d, dict):
        raise MalformedResponse(f"expected an object, got {type(d).__name__}")
    if key not in d or d[key] is None:
        raise MalformedResponse(f"missing field {key!r}")
    return d[key]


def ms_to_dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def parse_time(value: Any) -> datetime | None:
    """ISO string or epoch ms → aware UTC datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()):
        return ms_to_dt(int(value))
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedResponse(f"bad timestamp {value!r}") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    price_precision: int
    volume_min: Decimal
    volume_max: Decimal
    volume_step: Decimal
    contract_size: Decimal
    base_currency: str = ""
    quote_currency: str = ""
    description: str = ""
    type: str = ""
    volume_precision: int = 2
    stops_level: Decimal = ZERO
    leverage: Decimal | None = None

    @classmethod
    def from_json(cls, d: dict) -> Instrument:
        return cls(
            symbol=str(_req(d, P.F_SYMBOL)),
            price_precision=_int(d.get(P.F_PRICE_PRECISION), 5),
            volume_min=dec(d.get(P.F_VOLUME_MIN), Decimal("0.01"), name=P.F_VOLUME_MIN),
            volume_max=dec(d.get(P.F_VOLUME_MAX), Decimal("100"), name=P.F_VOLUME_MAX),
            volume_step=dec(d.get(P.F_VOLUME_STEP), Decimal("0.01"), name=P.F_VOLUME_STEP),
            contract_size=dec(d.get(P.F_CONTRACT_SIZE), Decimal("1"), name=P.F_CONTRACT_SIZE),
            base_currency=str(d.get(P.F_BASE_CURRENCY) or ""),
            quote_currency=str(d.get(P.F_QUOTE_CURRENCY) or ""),
            description=str(d.get("description") or ""),
            type=str(d.get("type") or ""),
            volume_precision=_int(d.get(P.F_VOLUME_PRECISION), 2),
            stops_level=dec(d.get(P.F_STOPS_LEVEL), ZERO),
            leverage=opt_dec(d.get("leverage")),
        )


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    bid: Decimal
    ask: Decimal
    timestamp_ms: int
    high: Decimal | None = None
    low: Decimal | None = None

    @classmethod
    def from_json(cls, d: dict) -> Quote:
        return cls(
            symbol=str(_req(d, P.F_SYMBOL)),
            bid=price(_req(d, P.F_BID), name=P.F_BID),
            ask=price(_req(d, P.F_ASK), name=P.F_ASK),
            timestamp_ms=_int(d.get(P.F_TIMESTAMP_MS)),
            high=opt_dec(d.get(P.F_HIGH)),
            low=opt_dec(d.get(P.F_LOW)),
        )


@dataclass(frozen=True, slots=True)
class Candle:
    time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    @classmethod
    def from_json(cls, d: dict) -> Candle:
        return cls(
            time_ms=_int(_req(d, P.F_TIME)),
            open=price(_req(d, "open"), name="open"),
            high=price(_req(d, "high"), name="high"),
            low=price(_req(d, "low"), name="low"),
            close=price(_req(d, "close"), name="close"),
            volume=size(d.get("volume"), ZERO, name="volume"),
        )


@dataclass(frozen=True, slots=True)
class Balance:
    balance: Decimal
    equity: Decimal
    free_margin: Decimal
    margin: Decimal
    currency: str
    credit: Decimal = ZERO
    profit: Decimal = ZERO
    net_profit: Decimal = ZERO
    margin_level: Decimal = ZERO

    @classmethod
    def from_json(cls, d: dict) -> Balance:
        return cls(
            balance=dec(_req(d, "balance"), name="balance"),
            equity=dec(d.get("equity"), ZERO),
            free_margin=dec(d.get("freeMargin"), ZERO),
            margin=dec(d.get("margin"), ZERO),
            currency=str(d.get("currency") or ""),
            credit=dec(d.get("credit"), ZERO),
            profit=dec(d.get("profit"), ZERO),
            net_profit=dec(d.get("netProfit"), ZERO),
            margin_level=dec(d.get("marginLevel"), ZERO),
        )


@dataclass(frozen=True, slots=True)
class OpenPosition:
    id: str
    symbol: str
    side: str
    volume: Decimal
    open_price: Decimal
    current_price: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    profit: Decimal
    net_profit: Decimal
    swap: Decimal
    commission: Decimal
    open_time: datetime | None
    comment: str = ""  # Trader API only (the order tag, when the broker echoes it [INF])

    @classmethod
    def from_json(cls, d: dict) -> OpenPosition:
        ms = d.get("openTimeMillis")
        return cls(
            id=str(_req(d, P.F_ID)),
            symbol=str(_req(d, P.F_SYMBOL)),
            side=str(_req(d, "side")).upper(),
            volume=dec(_req(d, P.F_VOLUME), name=P.F_VOLUME),
            open_price=dec(_req(d, "openPrice"), name="openPrice"),
            current_price=opt_dec(d.get("currentPrice")),
            stop_loss=opt_dec(d.get("stopLoss")),
            take_profit=opt_dec(d.get("takeProfit")),
            profit=dec(d.get("profit"), ZERO),
            net_profit=dec(d.get("netProfit"), ZERO),
            swap=dec(d.get("swap"), ZERO),
            commission=dec(d.get("commission"), ZERO),
            open_time=ms_to_dt(_int(ms)) if ms not in (None, "") else parse_time(d.get("openTime")),
        )


@dataclass(frozen=True, slots=True)
class ActiveOrder:
    id: str
    symbol: str
    side: str
    type: str
    volume: Decimal
    activation_price: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    creation_time: datetime | None

    @classmethod
    def from_json(cls, d: dict) -> ActiveOrder:
        return cls(
            id=str(_req(d, P.F_ID)),
            symbol=str(_req(d, P.F_SYMBOL)),
            side=str(_req(d, "side")).upper(),
            type=str(_req(d, P.F_TYPE)).upper(),
            volume=dec(_req(d, P.F_VOLUME), name=P.F_VOLUME),
            activation_price=dec(_req(d, "activationPrice"), name="activationPrice"),
            stop_loss=opt_dec(d.get("stopLoss")),
            take_profit=opt_dec(d.get("takeProfit")),
            creation_time=parse_time(d.get("creationTime")),
        )


@dataclass(frozen=True, slots=True)
class ClosedPosition:
    id: str
    symbol: str
    side: str
    volume: Decimal
    open_price: Decimal
    close_price: Decimal
    profit: Decimal
    net_profit: Decimal
    open_time: datetime | None
    close_time: datetime | None
    close_reason: str = ""
    closing_order_id: str = ""
    uid: str = ""
    comment: str = ""  # Trader API only [INF]

    @classmethod
    def from_json(cls, d: dict) -> ClosedPosition:
        return cls(
            id=str(_req(d, P.F_ID)),
            symbol=str(_req(d, P.F_SYMBOL)),
            side=str(_req(d, "side")).upper(),
            volume=dec(_req(d, P.F_VOLUME), name=P.F_VOLUME),
            open_price=dec(d.get("openPrice"), ZERO),
            close_price=dec(d.get("closePrice"), ZERO),
            profit=dec(d.get("profit"), ZERO),
            net_profit=dec(d.get("netProfit"), ZERO),
            open_time=parse_time(d.get("openTime")),
            close_time=parse_time(d.get("time")),
            close_reason=str(d.get("closeReason") or ""),
            closing_order_id=str(d.get("closingOrderID") or ""),
            uid=str(d.get("uid") or ""),
        )


@dataclass(frozen=True, slots=True)
class OperationResult:
    status: str
    native_code: str | None
    error_message: str
    order_id: str | None
    position_id: str | None = None  # known at once on the Trader API (201 {positionId}) [DOC T6]
    error_code: str | None = None  # Platform API: errorCode sent beside status OK (outcome to confirm)

    @property
    def ok(self) -> bool:
        return self.status in (P.STATUS_OK, P.STATUS_PARTIAL_SUCCESS)

    @classmethod
    def from_json(cls, d: Any) -> OperationResult:
        # pending-order/cancel and /edit may answer 200/204 with an empty body [OBS S4] → OK.
        if d is None or d == "" or d == {}:
            return cls(P.STATUS_OK, None, "", None)
        if not isinstance(d, dict):
            raise MalformedResponse(f"operation result is not an object: {type(d).__name__}")
        status = str(d.get(P.F_STATUS) or "").upper()
        if not status:
            raise MalformedResponse("operation result without status")
        native = d.get(P.F_NATIVE_CODE)
        oid = d.get(P.F_ORDER_ID)
        code = d.get(P.F_ERROR_CODE)
        return cls(status, None if native in (None, "") else str(native), str(d.get(P.F_ERROR_MESSAGE) or ""),
                   None if oid in (None, "") else str(oid), error_code=None if code in (None, "") else str(code))


@dataclass(frozen=True, slots=True)
class TradingAccount:
    trading_account_id: str
    trading_api_token: str
    system_uuid: str
    offer_name: str = ""
    currency: str = ""
    trading_api_domain: str = ""


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str
    email: str
    accounts: list[TradingAccount] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict) -> LoginResult:
        if not isinstance(d, dict):
            raise MalformedResponse("login response is not an object")
        raw = d.get(P.F_TRADING_ACCOUNTS)
        if raw is None:
            raw = d.get(P.F_ACCOUNTS)
        if not isinstance(raw, list):
            raise MalformedResponse("login response has neither tradingAccounts nor accounts")
        accounts = []
        for a in raw:
            offer = a.get(P.F_OFFER) or {}
            system = offer.get(P.F_SYSTEM) or {}
            accounts.append(
                TradingAccount(
                    trading_account_id=str(_req(a, P.F_TRADING_ACCOUNT_ID)),
                    trading_api_token=str(_req(a, P.F_TRADING_API_TOKEN)),
                    system_uuid=str(_req(system, P.F_UUID)),
                    offer_name=str(offer.get("name") or ""),
                    currency=str(offer.get("currency") or ""),
                    trading_api_domain=str(system.get(P.F_TRADING_API_DOMAIN) or ""),
                )
            )
        return cls(token=str(_req(d, P.F_TOKEN)), email=str(d.get(P.F_EMAIL) or ""), accounts=accounts)


def items(payload: Any, key: str) -> list:
    """A list either bare or wrapped as ``{key: [...]}`` (both seen, [doc §3.2 and §3.5](../docs/match-trader-api.md))."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get(key), list):
        return payload[key]
    raise MalformedResponse(f"expected a list or {{{key!r}: [...]}}")
