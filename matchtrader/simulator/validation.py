"""What the simulator's HTTP layer refuses before a request reaches the exchange.

The exchange model (``exchange.py``) is shared with the backtest and trusts its callers: it checks
the business rules a venue answers with ``REJECTED`` (volume off the lot step, stops on the wrong
side, not enough money). Everything a hostile or broken client can send that is not a business
question is refused here, in the HTTP layer, with a 4xx and ``{"errorMessage": ...}``:

- bodies: strict UTF-8 (a declared charset other than UTF-8 → 415), JSON without ``NaN`` /
  ``Infinity``, nested at most ``MAX_JSON_DEPTH`` (Python's parser would recurse ~1,000 deep and
  then fail with a RecursionError, not a ValueError);
- numbers: finite, below ``MAX_NUMBER``, at most ``MAX_DECIMAL_PLACES`` fractional digits (a
  volume of ``1E-1000027`` has a remainder of zero modulo any step in Decimal's context: it would
  "close" nothing);
- prices: positive, and SL/TP/pending prices within ``PRICE_BAND_FACTOR`` of the market's mid;
- times: ASCII epoch milliseconds (``str.isdigit`` accepts ``"²"``) or ISO-8601, finite, in range;
- ``/positions/close``: at most ``MAX_CLOSE_IDS`` items;
- typed fields: ids are strings or integers, lists are lists of strings, sizes are integers.

Each ``check_*`` function takes the parsed body (or query) and a :class:`MarketView` and raises
:class:`Invalid`; it never changes anything. ``guard.py`` runs them from an aiohttp middleware.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from .. import protocol as P

MAX_ID_LEN = 64
MAX_SYMBOL_LEN = 32
MAX_LIST_ITEMS = 100
MAX_RESULT_SIZE = 10_000
MAX_QUERY_LEN = 2048
MAX_TIME_MS = 32_503_680_000_000  # year 3000: later is not a time, it is an attack on int()
_EPOCH_MS = re.compile(r"[0-9]{1,15}")
_ISO = re.compile(r"[0-9T:.+\-Z ]{4,40}")


class Invalid(Exception):
    """A request refused before it reaches the exchange: ``status`` and a message for the client."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class MarketView:
    """Read-only lookups into the simulator for the band and volume checks."""

    mid: Callable[[str], Decimal | None]  # symbol -> mid price, None when unknown/unpriced
    position_symbol: Callable[[str, str], str | None]  # (uuid, position id) -> symbol
    order_symbol: Callable[[str, str], str | None]  # (uuid, order id) -> symbol


# --- bodies -------------------------------------------------------------------------------------
def _reject_constant(name: str):
    raise Invalid(f"JSON constant {name} is not allowed: numbers must be finite")


def decode_json(raw: bytes, charset: str | None):
    """Strict body decoding: UTF-8 only, standard JSON only, bounded depth."""
    if charset and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise Invalid(f"Unsupported charset {charset[:40]!r}: bodies are UTF-8 JSON", status=415)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("Body is not valid UTF-8") from None
    if not text.strip():
        raise Invalid("Request body is empty")
    try:
        value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except Invalid:
        raise
    except (ValueError, RecursionError):
        raise Invalid("Malformed JSON body") from None
    _check_depth(value)
    return value


def _check_depth(value) -> None:
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            children = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        if depth > P.MAX_JSON_DEPTH:
            raise Invalid(f"JSON nested deeper than {P.MAX_JSON_DEPTH} levels")
        stack.extend((c, depth + 1) for c in children)


# --- field types --------------------------------------------------------------------------------
def _obj(body) -> dict:
    if not isinstance(body, dict):
        raise Invalid("Body must be a JSON object")
    return body


def number(value, name: str, *, required: bool = True) -> Decimal | None:
    """A JSON number or numeric string, finite, bounded, with at most MAX_DECIMAL_PLACES decimals."""
    if value is None:
        if required:
            raise Invalid(f"Field '{name}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str, float)):
        raise Invalid(f"Field '{name}' must be a number")
    if isinstance(value, str) and (len(value) > 40 or not value.isascii()):
        raise Invalid(f"Field '{name}' must be a number")
    try:
        d = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
    except (InvalidOperation, ValueError):
        raise Invalid(f"Field '{name}' must be a number") from None
    if not d.is_finite():
        raise Invalid(f"Field '{name}' must be a finite number")
    if d != 0:
        # No context arithmetic here: Decimal("1E+999999999").normalize() would overflow.
        sign, digits, exponent = d.as_tuple()
        significant = len(digits) - (len(digits) - len("".join(map(str, digits)).rstrip("0")))
        decimals = -(exponent + (len(digits) - significant))
        if d.adjusted() >= len(str(P.MAX_NUMBER)) - 1 or decimals > P.MAX_DECIMAL_PLACES:
            raise Invalid(f"Field '{name}' is out of range (|x| < {P.MAX_NUMBER:.0e}, "
                          f"at most {P.MAX_DECIMAL_PLACES} decimals)")
    return d


def ident(value, name: str, *, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise Invalid(f"Field '{name}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or len(str(value)) > MAX_ID_LEN:
        raise Invalid(f"Field '{name}' must be an id (a string or an integer)")
    return str(value)


def symbol(value, name: str = P.F_INSTRUMENT) -> str:
    if not isinstance(value, str):
        if value is None:
            raise Invalid(f"Field '{name}' is required")
        return str(value)[:MAX_SYMBOL_LEN]  # the exchange answers UNKNOWN_INSTRUMENT (a business reject)
    if len(value) > MAX_SYMBOL_LEN:
        raise Invalid(f"Field '{name}' is too long")
    return value


def string_list(value, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS or \
            not all(isinstance(s, str) and len(s) <= MAX_SYMBOL_LEN for s in value):
        raise Invalid(f"Field '{name}' must be a list of at most {MAX_LIST_ITEMS} short strings")


def time_ms(value, name: str, *, required: bool = True) -> int | None:
    """Epoch milliseconds (a number or ASCII digits) or an ISO-8601 time; finite and in range."""
    if value is None or value == "":
        if required:
            raise Invalid(f"Parameter '{name}' is required")
        return None
    if isinstance(value, bool):
        raise Invalid(f"Parameter '{name}' must be an ISO-8601 time or epoch ms")
    if isinstance(value, (int, Decimal, float)):
        d = number(value, name)
        ms = int(d)
    elif isinstance(value, str) and _EPOCH_MS.fullmatch(value):
        ms = int(value)
    elif isinstance(value, str) and _ISO.fullmatch(value):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(f"Parameter '{name}' must be an ISO-8601 time or epoch ms") from None
        ms = int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)
    else:
        raise Invalid(f"Parameter '{name}' must be an ISO-8601 time or epoch ms")
    if not 0 <= ms <= MAX_TIME_MS:
        raise Invalid(f"Parameter '{name}' is out of range")
    return ms


def price(value, name: str, sym: str | None, view: MarketView, *, required: bool, zero_is_none: bool) -> None:
    d = number(value, name, required=required)
    if d is None or (zero_is_none and d == 0):
        return
    if d <= 0:
        raise Invalid(f"Field '{name}' must be a positive price")
    mid = view.mid(sym) if sym else None
    if mid is not None and mid > 0 and not (mid / P.PRICE_BAND_FACTOR <= d <= mid * P.PRICE_BAND_FACTOR):
        raise Invalid(f"Field '{name}' {d} is too far from the market ({sym} at {mid:.6g}; "
                      f"allowed within a factor {P.PRICE_BAND_FACTOR})")


def volume(value, name: str = P.F_VOLUME, *, required: bool = True) -> None:
    d = number(value, name, required=required)
    if d is not None and d <= 0:
        return  # a business reject (INVALID_VOLUME) the exchange gives in its documented shape


# --- per path -----------------------------------------------------------------------------------
def _stops(b: dict, sym: str | None, view: MarketView) -> None:
    for key in (P.F_SL_PRICE, P.F_TP_PRICE):
        price(b.get(key), key, sym, view, required=False, zero_is_none=True)


def check_open(uuid, body, query, view):
    b = _obj(body)
    sym = symbol(b.get(P.F_INSTRUMENT))
    volume(b.get(P.F_VOLUME))
    _stops(b, sym, view)


def check_edit(uuid, body, query, view):
    b = _obj(body)
    pid = ident(b.get(P.F_ID), P.F_ID)
    _stops(b, view.position_symbol(uuid, pid), view)


def check_close(uuid, body, query, view):
    b = _obj(body)
    ident(b.get(P.F_POSITION_ID), P.F_POSITION_ID)
    volume(b.get(P.F_VOLUME), required=False)


def check_close_partially(uuid, body, query, view):
    b = _obj(body)
    ident(b.get(P.F_POSITION_ID), P.F_POSITION_ID)
    volume(b.get(P.F_VOLUME))


def check_close_many(uuid, body, query, view):
    items = body.get("ids") if isinstance(body, dict) else body  # {"ids": [...]} or a bare array
    if not isinstance(items, list) or not items:
        raise Invalid("Body must be a non-empty JSON array of positions")
    if len(items) > P.MAX_CLOSE_IDS:
        raise Invalid(f"At most {P.MAX_CLOSE_IDS} positions per close request, got {len(items)}")
    for it in items:
        if isinstance(it, dict):
            ident(it.get(P.F_POSITION_ID), P.F_POSITION_ID)
            volume(it.get(P.F_VOLUME), required=False)
        else:
            ident(it, P.F_POSITION_ID)


def check_pending_create(uuid, body, query, view):
    b = _obj(body)
    sym = symbol(b.get(P.F_INSTRUMENT))
    volume(b.get(P.F_VOLUME))
    price(b.get(P.F_PRICE), P.F_PRICE, sym, view, required=True, zero_is_none=False)
    _stops(b, sym, view)


def check_pending_edit(uuid, body, query, view):
    b = _obj(body)
    oid = ident(b.get(P.F_ID), P.F_ID)
    sym = view.order_symbol(uuid, oid)
    for key in (P.F_PRICE_ORDER, P.F_PRICE):
        price(b.get(key), key, sym, view, required=False, zero_is_none=False)
    volume(b.get(P.F_VOLUME), required=False)
    _stops(b, sym, view)


def check_pending_cancel(uuid, body, query, view):
    ident(_obj(body).get(P.F_ID), P.F_ID)


def check_closed_positions(uuid, body, query, view):
    b = _obj(body)
    time_ms(b.get(P.F_FROM), P.F_FROM)
    time_ms(b.get(P.F_TO), P.F_TO)
    string_list(b.get(P.F_SYMBOLS) or None, P.F_SYMBOLS)


def check_last_finance(uuid, body, query, view):
    b = _obj(body)
    string_list(b.get("types") or None, "types")
    size = b.get("resultSize", 100)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_RESULT_SIZE:
        raise Invalid(f"Field 'resultSize' must be an integer from 0 to {MAX_RESULT_SIZE}")


def check_candles(uuid, body, query: Mapping[str, str], view):
    time_ms(query.get(P.F_FROM), P.F_FROM)
    time_ms(query.get(P.F_TO), P.F_TO, required=False)


def check_query_only(uuid, body, query, view):
    return None


CHECKS: dict[tuple[str, str], Callable] = {
    ("GET", P.P_BALANCE): check_query_only,
    ("GET", P.P_INSTRUMENTS): check_query_only,
    ("GET", P.P_QUOTATIONS): check_query_only,
    ("GET", P.P_CANDLES): check_candles,
    ("GET", P.P_OPEN_POSITIONS): check_query_only,
    ("GET", P.P_ACTIVE_ORDERS): check_query_only,
    ("POST", P.P_CLOSED_POSITIONS): check_closed_positions,
    ("POST", P.P_LAST_FINANCE): check_last_finance,
    ("POST", P.P_POSITION_OPEN): check_open,
    ("POST", P.P_POSITION_EDIT): check_edit,
    ("POST", P.P_POSITION_CLOSE): check_close,
    ("POST", P.P_POSITIONS_CLOSE): check_close_many,
    ("POST", P.P_POSITION_CLOSE_PARTIALLY): check_close_partially,
    ("POST", P.P_PENDING_CREATE): check_pending_create,
    ("POST", P.P_PENDING_EDIT): check_pending_edit,
    ("POST", P.P_PENDING_CANCEL): check_pending_cancel,
}


def check_login(body) -> tuple[str, str]:
    """The login body: an object with string email and password. -> the account key (email, broker)."""
    b = _obj(body)
    email, password = b.get(P.F_EMAIL), b.get(P.F_PASSWORD)
    if not isinstance(email, str) or not isinstance(password, str):
        raise Invalid("Fields 'email' and 'password' are required strings")
    if len(email) > 254 or len(password) > 1024:
        raise Invalid("Field 'email' or 'password' is too long")
    broker = b.get(P.F_BROKER_ID, b.get("partnerId", "0"))
    if isinstance(broker, bool) or not isinstance(broker, (str, int)) or len(str(broker)) > MAX_ID_LEN:
        raise Invalid("Field 'brokerId' must be a string")
    return email.lower(), str(broker)
