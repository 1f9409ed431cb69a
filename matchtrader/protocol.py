"""Every name of the Match-Trader Platform API wire protocol, in one place.

Client (``matchtrader.client``), transports and simulator all import from here, so a correction
learned from the real API is a one-place change. Tags follow ../docs/match-trader-api.md:
[DOC] official material, [OBS] observed live by independent clients, [CODE] one client only,
[INF] inferred/proposed ([doc §8](../docs/match-trader-api.md)). ``EXT`` marks simulator extensions that the real
API lacks.
"""

from __future__ import annotations

# --- paths ---------------------------------------------------------------------------------------
# /manager/* : account level, no system uuid [OBS S3,S4,S7]
PATH_PLATFORM_DETAILS = "/manager/platform-details"  # [OBS]
PATH_LOGIN = "/manager/mtr-login"  # [OBS] current docs
PATH_LOGIN_ALIAS = "/manager/co-login"  # [DOC S2] PDF 2024, still live [OBS S6,S7]
PATH_REFRESH = "/manager/refresh-token"  # [OBS S4] empty body, cookies

# /mtr-api/{systemUuid}/* : one trading account [OBS]
TRADING_PREFIX = "/mtr-api/{uuid}"
P_BALANCE = "/balance"  # [OBS]
P_INSTRUMENTS = "/effective-instruments"  # [OBS]
P_QUOTATIONS = "/quotations"  # [OBS]
P_CANDLES = "/candles"  # [CODE S3,S7] newer than the 2024 PDF
P_OPEN_POSITIONS = "/open-positions"  # [OBS]
P_ACTIVE_ORDERS = "/active-orders"  # [OBS]
P_CLOSED_POSITIONS = "/closed-positions"  # [OBS] POST
P_LAST_FINANCE = "/last-finance"  # [CODE S5] POST
P_POSITION_OPEN = "/position/open"  # [OBS]
P_POSITION_EDIT = "/position/edit"  # [OBS]
P_POSITION_CLOSE = "/position/close"  # [OBS]
P_POSITIONS_CLOSE = "/positions/close"  # [CODE S5,S6] body is a JSON array
P_POSITION_CLOSE_PARTIALLY = "/position/close-partially"  # [CODE S3,S4]
P_PENDING_CREATE = "/pending-order/create"  # [OBS]
P_PENDING_EDIT = "/pending-order/edit"  # [CODE S4]
P_PENDING_CANCEL = "/pending-order/cancel"  # [OBS]

WRITE_PATHS = frozenset(
    {
        P_POSITION_OPEN,
        P_POSITION_EDIT,
        P_POSITION_CLOSE,
        P_POSITIONS_CLOSE,
        P_POSITION_CLOSE_PARTIALLY,
        P_PENDING_CREATE,
        P_PENDING_EDIT,
        P_PENDING_CANCEL,
    }
)

# WebSocket [INF, [doc §8](../docs/match-trader-api.md): no public stream exists on the real Platform API]
PATH_WS = "/ws"
PATH_WS_CLOSED_SNAPSHOT = "/app/snapshot/closed-positions"  # [CODE S5] one-shot command

# --- headers / cookies ---------------------------------------------------------------------------
HDR_TRADING_TOKEN = "Auth-trading-api"  # [OBS] case-insensitive
HDR_RETRY_AFTER = "Retry-After"  # [CODE S3,S7,S8] 429 semantics
COOKIE_AUTH = "co-auth"  # [OBS] top-level session token
COOKIE_REFRESH = "rt"  # [CODE S9] refresh cookie name

# --- login request/response ----------------------------------------------------------------------
F_EMAIL = "email"
F_PASSWORD = "password"
F_BROKER_ID = "brokerId"  # [OBS]; some web apps use partnerId [CODE]
F_TOKEN = "token"
F_ACCOUNTS = "accounts"  # [DOC S2]
F_TRADING_ACCOUNTS = "tradingAccounts"  # [OBS S4] newer name; accept both
F_SELECTED_TRADING_ACCOUNT = "selectedTradingAccount"
F_SELECTED_ACCOUNT = "selectedAccount"
F_TRADING_ACCOUNT_ID = "tradingAccountId"
F_TRADING_API_TOKEN = "tradingApiToken"
F_OFFER = "offer"
F_SYSTEM = "system"
F_UUID = "uuid"
F_TRADING_API_DOMAIN = "tradingApiDomain"  # [CODE S3]; internal values seen, never trusted [OBS]

# --- common fields -------------------------------------------------------------------------------
F_SYMBOL = "symbol"
F_SYMBOLS = "symbols"
F_ERROR_MESSAGE = "errorMessage"

# instruments [CODE S3,S7]
F_PRICE_PRECISION = "pricePrecision"
F_VOLUME_PRECISION = "volumePrecision"
F_VOLUME_MIN = "volumeMin"
F_VOLUME_MAX = "volumeMax"
F_VOLUME_STEP = "volumeStep"
F_CONTRACT_SIZE = "contractSize"
F_BASE_CURRENCY = "baseCurrency"
F_QUOTE_CURRENCY = "quoteCurrency"
F_STOPS_LEVEL = "stopsLevel"

# quotations [OBS]
F_BID = "bid"
F_ASK = "ask"
F_HIGH = "high"
F_LOW = "low"
F_TIMESTAMP_MS = "timestampMs"

# candles [CODE S3]
F_INTERVAL = "interval"
F_FROM = "from"
F_TO = "to"
F_CANDLES = "candles"
F_TIME = "time"

# positions / orders [OBS]
F_POSITIONS = "positions"
F_ORDERS = "orders"
F_OPERATIONS = "operations"
F_ID = "id"

# writes [OBS] ([doc §3.6](../docs/match-trader-api.md))
F_INSTRUMENT = "instrument"
F_ORDER_SIDE = "orderSide"
F_VOLUME = "volume"
F_SL_PRICE = "slPrice"  # absolute price, 0 = none [OBS]
F_TP_PRICE = "tpPrice"
F_IS_MOBILE = "isMobile"
F_POSITION_ID = "positionId"
F_PRICE = "price"  # pending create [OBS S4]
F_PRICE_ORDER = "priceOrder"  # pending edit [CODE S4]
F_TYPE = "type"

# operation result [OBS]
F_STATUS = "status"
F_NATIVE_CODE = "nativeCode"
F_ORDER_ID = "orderId"

STATUS_OK = "OK"
STATUS_REJECTED = "REJECTED"
STATUS_PARTIAL_SUCCESS = "PARTIAL_SUCCESS"  # [DOC S11] sibling Broker API enum

SIDE_BUY = "BUY"
SIDE_SELL = "SELL"
SIDES = (SIDE_BUY, SIDE_SELL)

ORDER_LIMIT = "LIMIT"
ORDER_STOP = "STOP"
PENDING_TYPES = (ORDER_LIMIT, ORDER_STOP)

# Reject codes: INVENTED [INF, [doc §8.8](../docs/match-trader-api.md)]; no public list of real Match-Trader codes
# exists.
REJECT_MARKET_CLOSED = "MARKET_CLOSED"
REJECT_NOT_ENOUGH_MONEY = "NOT_ENOUGH_MONEY"
REJECT_INVALID_VOLUME = "INVALID_VOLUME"
REJECT_INVALID_STOPS = "INVALID_STOPS"
REJECT_UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
REJECT_POSITION_NOT_FOUND = "POSITION_NOT_FOUND"
REJECT_ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
REJECT_INVALID_REQUEST = "INVALID_REQUEST"  # [INF] simulator: missing/wrong-typed fields
REJECT_CODES = (
    REJECT_MARKET_CLOSED,
    REJECT_NOT_ENOUGH_MONEY,
    REJECT_INVALID_VOLUME,
    REJECT_INVALID_STOPS,
    REJECT_UNKNOWN_INSTRUMENT,
    REJECT_POSITION_NOT_FOUND,
    REJECT_ORDER_NOT_FOUND,
    REJECT_INVALID_REQUEST,
)

CLOSE_REASON_MANUAL = "CLOSE_REASON_MANUAL"  # [INF]
CLOSE_REASON_PARTIAL = "CLOSE_REASON_PARTIAL"  # [CODE S4 fixture]
CLOSE_REASON_SL = "CLOSE_REASON_SL"  # [INF]
CLOSE_REASON_TP = "CLOSE_REASON_TP"  # [INF]
CLOSE_REASON_BROKER = "CLOSE_REASON_BROKER"  # [INF] closed behind the client's back
CLOSE_REASON_STOP_OUT = "CLOSE_REASON_STOP_OUT"  # [INF] margin stop-out by the broker

# --- candle intervals [DOC S10; CODE S3]; MN1 preferred over MN (S7) -----------------------------
INTERVAL_SECONDS = {
    "M1": 60,
    "M5": 300,
    "M15": 900,
    "M30": 1800,
    "H1": 3600,
    "H4": 14400,
    "D1": 86400,
    "W1": 604800,
    "MN1": 2592000,  # nominal 30 days; real month boundaries unknown [INF]
}
INTERVALS = tuple(INTERVAL_SECONDS)
CANDLE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # from/to query format [CODE S3]

# --- limits --------------------------------------------------------------------------------------
RATE_LIMIT_PER_MINUTE = 500  # [DOC S1]
# [INF] WHO the 500/min counts is not documented (per trading account, per login, or per client
# IP). We assume per session/account for the per-account buckets (orders/broker.py) AND cap the
# total per broker host (ACCOUNT_POLL_HOST_MAX_PER_S) in case it is per IP. The one place to change.
RATE_LIMIT_SCOPE = "account"  # [INF] "account" | "login" | "ip"
REFRESH_LIMIT_PER_HOUR = 4  # [CODE S4,S7]
TOKEN_TTL_SECONDS_DEFAULT = 900  # 15 min [CODE S4,S7]; S9 says 3600 -> configurable [INF]

# --- WebSocket frames [INF, [doc §8](../docs/match-trader-api.md) "Streaming"] ----------------------------
WS_OP = "op"
WS_OP_SUBSCRIBE = "subscribe"
WS_OP_UNSUBSCRIBE = "unsubscribe"
WS_OP_PING = "ping"
WS_CHANNEL = "channel"
WS_TYPE = "type"
WS_DATA = "data"
WS_CH_QUOTES = "quotes"
WS_CH_CANDLES = "candles"
WS_CH_ACCOUNT = "account"
WS_CH_DEPTH = "depth"  # EXT: order book levels with sizes
WS_CH_TRADES = "trades"  # EXT: prints with aggressor side
WS_CHANNELS = (WS_CH_QUOTES, WS_CH_CANDLES, WS_CH_ACCOUNT, WS_CH_DEPTH, WS_CH_TRADES)
WS_T_SUBSCRIBED = "subscribed"
WS_T_UNSUBSCRIBED = "unsubscribed"
WS_T_QUOTE = "quote"
WS_T_CANDLE = "candle"
WS_T_POSITIONS = "positions"
WS_T_ORDERS = "orders"
WS_T_BALANCE = "balance"
WS_T_DEPTH = "depth"  # EXT
WS_T_TRADE = "trade"  # EXT
# EXT: one frame per position closed (fully or partly) on the ``account`` channel, pushed before the
# snapshots that follow it: ``data`` is the /closed-positions row (id, closePrice, closeReason,
# profit, netProfit, time...) plus ``seq``, the account's close-event number (a jump = a missed
# event: the client reads open positions + history). The real APIs push nothing: they are polled.
WS_T_POSITION_CLOSED = "positionClosed"
WS_T_PONG = "pong"
WS_T_HEARTBEAT = "heartbeat"  # [INF] server heartbeat, mirrors Broker API v2 (30 s)
WS_T_ERROR = "error"
WS_SEQ = "seq"  # EXT: per-symbol sequence number on every push frame
WS_ERR_UNAUTHORIZED = "UNAUTHORIZED"
WS_ERR_BAD_REQUEST = "BAD_REQUEST"
WS_CLOSE_AUTH_EXPIRED = 4001  # [INF]
WS_HEARTBEAT_SECONDS = 30.0
# depth/trade payload fields (EXT)
F_BIDS = "bids"
F_ASKS = "asks"
F_SIDE = "side"
F_AGGRESSOR = "aggressor"  # "BUY" | "SELL"
F_CLOSED = "closed"


# --- request limits: what the venue refuses before it looks at a request [INF] --------------------
# No public Match-Trader document gives these; they are the simulator's (matchtrader/simulator/
# validation.py) and what a client must stay within. A refusal is a 4xx with {"errorMessage": ...}.
MAX_BODY_BYTES = 256 * 1024  # [INF] broker paths; larger → 413
MAX_JSON_DEPTH = 8  # [INF] the deepest real body is [{...}] (positions/close): 2
MAX_CLOSE_IDS = 200  # [INF] positions per /positions/close request; more → 400, split the close
MAX_DECIMAL_PLACES = 10  # [INF] a price or volume with more fractional digits → 400
MAX_NUMBER = 10**12  # [INF] |price|, |volume| at or above → 400
PRICE_BAND_FACTOR = 10  # [INF] SL/TP/pending prices outside [mid / 10, mid * 10] of the market → 400
REQUEST_HEADER_TIMEOUT_S = 10.0  # [INF] a connection that has not sent its headers → 408, closed
REQUEST_BODY_TIMEOUT_S = 10.0  # [INF] a body not received in full → 408, closed
# Failed logins per account (email + broker) and invalid trading tokens per system uuid: more than
# this many in the window → 429 + Retry-After for that account only (never per address: one desk
# logs in 1,000 accounts from one host). An unknown uuid answers exactly like a wrong token (401),
# so accounts cannot be enumerated. [INF]
AUTH_FAILURES_MAX = 10
AUTH_FAILURES_WINDOW_S = 300.0


def trading_path(uuid: str, path: str) -> str:
    return TRADING_PREFIX.format(uuid=uuid) + path
