"""What every part of the simulator's HTTP face shares: JSON responses, the broker's operation
result shape, and the request-body parsers that turn bad input into a 400 with a clear message.

Pure helpers over aiohttp's ``web.Response``; no state.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from decimal import Decimal, InvalidOperation

from aiohttp import web

from .. import protocol as P

def now_ms() -> int:
    return time.time_ns() // 1_000_000


def json_default(o):
    if isinstance(o, Decimal):
        return str(o)
    raise TypeError(type(o).__name__)


def jresp(data, status: int = 200, headers=None) -> web.Response:
    return web.Response(text=json.dumps(data, default=json_default), status=status,
                        content_type="application/json", headers=headers)


def err(status: int, message: str, headers=None) -> web.Response:
    return jresp({P.F_ERROR_MESSAGE: message}, status, headers)


def op_ok(order_id: str | None) -> dict:
    return {P.F_STATUS: P.STATUS_OK, P.F_NATIVE_CODE: None, P.F_ERROR_MESSAGE: "", P.F_ORDER_ID: order_id}


def op_rejected(code: str, message: str) -> dict:
    return {P.F_STATUS: P.STATUS_REJECTED, P.F_NATIVE_CODE: code, P.F_ERROR_MESSAGE: message, P.F_ORDER_ID: None}


class BadRequest(Exception):
    pass



async def json_body(request: web.Request):
    text = await request.text()
    if not text.strip():
        raise BadRequest("Request body is empty")
    try:
        return json.loads(text)
    except ValueError:
        raise BadRequest("Malformed JSON body") from None


# --- request body helpers -------------------------------------------------------------------------
def field(body: dict, key: str, required: bool = True):
    if key not in body or body[key] is None:
        if required:
            raise BadRequest(f"Field '{key}' is required")
        return None
    return body[key]


def decimal_field(body: dict, key: str, required: bool = True) -> Decimal | None:
    v = field(body, key, required)
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


def price_or_none(body: dict, key: str) -> Decimal | None:
    d = decimal_field(body, key, required=False)
    return None if d is None or d == 0 else d  # 0 means "none" [OBS]


def side_field(body: dict, key: str = P.F_ORDER_SIDE) -> str:
    v = field(body, key)
    if not isinstance(v, str) or v.upper() not in P.SIDES:
        raise BadRequest(f"Field '{key}' must be BUY or SELL")
    return v.upper()


def parse_time_ms(v, name: str) -> int:
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
