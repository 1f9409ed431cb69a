"""The answer shapes the two clients rely on, and a pure diff of a real answer against them.

Used by ``manage.py broker_check`` so a user can verify the inferred protocol details
(``matchtrader.protocol``, every [INF]) against their own broker before going live: each read the
clients make is fetched raw, and every missing field, wrong type or unexpected container is
printed. Extra fields are listed too (informational: the clients ignore them).

Each spec is ``(list_key, required, optional)``: ``list_key`` is the key holding the list of items
(a bare list is accepted too, as the client does; ``None``: the answer is one object); ``required`` maps a field
to its expected kind (``num``: a JSON number or a numeric string, ``str``, ``int``, ``time``: epoch
ms or ISO text), ``optional`` the same for fields read when present.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from . import protocol as P

NUM, STR, INT, TIME = "num", "str", "int", "time"

Spec = tuple[str | None, dict[str, str], dict[str, str]]

PLATFORM: dict[str, Spec] = {
    "instruments": ("instruments", {P.F_SYMBOL: STR, P.F_PRICE_PRECISION: INT, P.F_VOLUME_MIN: NUM, P.F_VOLUME_MAX: NUM,
                         P.F_VOLUME_STEP: NUM, P.F_CONTRACT_SIZE: NUM},
                    {P.F_BASE_CURRENCY: STR, P.F_QUOTE_CURRENCY: STR, P.F_STOPS_LEVEL: NUM}),
    "quotations": ("quotations", {P.F_SYMBOL: STR, P.F_BID: NUM, P.F_ASK: NUM}, {P.F_TIMESTAMP_MS: INT}),
    "candles": (P.F_CANDLES, {P.F_TIME: TIME, "open": NUM, "high": NUM, "low": NUM, "close": NUM},
                {"volume": NUM}),
    "balance": (None, {"balance": NUM, "equity": NUM, "freeMargin": NUM, "margin": NUM, "currency": STR},
                {"credit": NUM, "profit": NUM, "netProfit": NUM, "marginLevel": NUM}),
    "open_positions": (P.F_POSITIONS, {P.F_ID: STR, P.F_SYMBOL: STR, "side": STR, P.F_VOLUME: NUM,
                                       "openPrice": NUM},
                       {"openTime": TIME, "openTimeMillis": INT, "stopLoss": NUM, "takeProfit": NUM,
                        "profit": NUM, "swap": NUM, "commission": NUM}),
}

TRADER: dict[str, Spec] = {
    "account": (None, {}, {P.TA_F_CURRENCY: STR}),
    "instruments": (P.TA_F_SYMBOLS, {P.TA_F_SYMBOL: STR, P.TA_F_DIGITS: INT, "volumeMin": NUM, "volumeMax": NUM,
                                     "volumeStep": NUM, P.TA_F_CONTRACT_SIZE: NUM},
                    {"baseCurrency": STR, "quoteCurrency": STR, "type": STR}),
    "quotations": (P.TA_F_QUOTES, {P.TA_F_SYMBOL: STR, "bid": NUM, "ask": NUM}, {P.TA_F_TIME: TIME}),
    "candles": (P.TA_F_CANDLES, {P.TA_F_TIME: TIME, "open": NUM, "high": NUM, "low": NUM, "close": NUM},
                {"volume": NUM}),
    "balance": (None, {P.TA_F_BALANCE: NUM, P.TA_F_EQUITY: NUM},
                {P.TA_F_FREE_FUNDS: NUM, P.TA_F_MARGIN: NUM, P.TA_F_CREDIT: NUM, P.TA_F_MARGIN_LEVEL: NUM,
                 P.TA_F_PROFIT: NUM}),
    "open_positions": (P.TA_F_POSITIONS, {P.TA_F_ID: STR, P.TA_F_SYMBOL: STR, P.TA_F_SIDE: STR, P.TA_F_VOLUME: NUM,
                                          P.TA_F_OPEN_PRICE: NUM},
                       {P.TA_F_OPEN_TIME: TIME, P.TA_F_SL_PRICE: NUM, P.TA_F_TP_PRICE: NUM, P.TA_F_PROFIT: NUM,
                        P.TA_F_COMMENT: STR}),
}


def _kind_ok(value, kind: str) -> bool:
    if kind == STR:
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    if kind == INT:
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.isdigit())
    if kind == TIME:
        return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)
    if kind == NUM:
        if isinstance(value, bool):
            return False
        try:
            return Decimal(str(value)).is_finite()
        except InvalidOperation:
            return False
    raise ValueError(kind)


def diff(payload, spec: Spec, *, max_items: int = 50) -> list[str]:
    """What in ``payload`` differs from ``spec`` (empty: the answer has the shape relied on)."""
    list_key, required, optional = spec
    out: list[str] = []
    if list_key is None:
        rows = [payload]
        if not isinstance(payload, dict):
            return [f"expected an object, got {type(payload).__name__}"]
    elif isinstance(payload, list):  # bare list: accepted by the clients (models.items)
        rows = payload
    else:
        if not isinstance(payload, dict) or not isinstance(payload.get(list_key), list):
            keys = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
            return [f"expected {{'{list_key}': [...]}}, got {keys}"]
        rows = payload[list_key]
    extra: set[str] = set()
    for i, row in enumerate(rows[:max_items]):
        if not isinstance(row, dict):
            out.append(f"item {i}: not an object")
            continue
        for name, kind in required.items():
            if row.get(name) is None:
                out.append(f"item {i}: missing required field {name!r}")
            elif not _kind_ok(row[name], kind):
                out.append(f"item {i}: field {name!r} = {row[name]!r} is not {kind}")
        for name, kind in optional.items():
            if row.get(name) is not None and not _kind_ok(row[name], kind):
                out.append(f"item {i}: optional field {name!r} = {row[name]!r} is not {kind}")
        extra |= set(row) - set(required) - set(optional)
    if extra:
        out.append("info: fields the client does not read: " + ", ".join(sorted(extra)[:30]))
    return out
