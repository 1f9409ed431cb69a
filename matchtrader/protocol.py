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

F_ERROR_CODE = "errorCode"  # [CODE, third-party SDK notes] sent beside status OK by a live cancel
F_CLOSED_STATUS = "status"  # closed-positions answer: "FULL" = the history was cut [CODE SDK notes]
STATUS_FULL = "FULL"

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


# =================================================================================================
# Match-Trader TRADER API (per-account REST, bearer token) -- /work/shared/docs/match-trader-trader-api.md
# Tags as above, with [DOC Tn] the official Trader API page n of that document. EVERY method + path
# below is [INF]: the official pages show them only in their request panel, which was not read
# (doc "coverage limit"). Quotes and the open-positions list are documented only as MCP tools
# (doc §5.4, §5.6), so their REST paths are guesses too. A correction is a one-line change here;
# client and simulator both read this table.
# =================================================================================================
TA_BASE_URL = "https://trader-api.match-trader.com"  # [DOC T1] one host for every broker
TA_VERSION = "/v1"  # [INF] "every path carries the version" [DOC T1]; segment unknown

TA_ACCOUNT = "account"
TA_SUMMARY = "summary"
TA_SYMBOLS = "symbols"
TA_QUOTES = "quotes"
TA_CANDLES = "candles"
TA_POSITIONS = "positions"
TA_OPEN = "open"
TA_CLOSE = "close"
TA_EDIT = "edit"
TA_PENDING = "pending"
TA_PENDING_CREATE = "pending_create"
TA_PENDING_UPDATE = "pending_update"
TA_PENDING_CANCEL = "pending_cancel"
TA_CLOSED = "closed"
TA_LEDGERS = "ledgers"

# op -> (method, path template). ``{id}`` is the position / pending order id (a string [DOC T7]).
TA_ROUTES: dict[str, tuple[str, str]] = {
    TA_ACCOUNT: ("GET", TA_VERSION + "/account"),  # [INF] MCP get_account only [DOC T2]
    TA_SUMMARY: ("GET", TA_VERSION + "/account/summary"),  # [INF] page T3
    TA_SYMBOLS: ("GET", TA_VERSION + "/symbols"),  # [INF] page T4
    TA_QUOTES: ("GET", TA_VERSION + "/quotes"),  # [INF] MCP get_quotes only [DOC T2]: verified vs simulator only
    TA_CANDLES: ("GET", TA_VERSION + "/candles"),  # [INF] page T5
    TA_POSITIONS: ("GET", TA_VERSION + "/positions"),  # [INF] MCP get_portfolio_state only: simulator only
    TA_OPEN: ("POST", TA_VERSION + "/positions"),  # [INF] page T6
    TA_CLOSE: ("POST", TA_VERSION + "/positions/{id}/close"),  # [INF] page T7 (a DELETE is possible)
    TA_EDIT: ("PATCH", TA_VERSION + "/positions/{id}"),  # [INF] no page found (doc §5.9)
    TA_PENDING: ("GET", TA_VERSION + "/pending-orders"),  # [INF] MCP only
    TA_PENDING_CREATE: ("POST", TA_VERSION + "/pending-orders"),  # [INF] page T8
    TA_PENDING_UPDATE: ("PATCH", TA_VERSION + "/pending-orders/{id}"),  # [INF] page T9
    TA_PENDING_CANCEL: ("DELETE", TA_VERSION + "/pending-orders/{id}"),  # [INF] page T10
    TA_CLOSED: ("GET", TA_VERSION + "/closed-positions"),  # [INF] page T11
    TA_LEDGERS: ("GET", TA_VERSION + "/ledgers"),  # [INF] page T12
}
# The writes that accept an Idempotency-Key [DOC T6, T7, T8]; update/cancel pending list none [DOC T9, T10].
TA_KEYED_WRITES = frozenset({TA_OPEN, TA_CLOSE, TA_PENDING_CREATE})
TA_WRITES = frozenset({TA_OPEN, TA_CLOSE, TA_EDIT, TA_PENDING_CREATE, TA_PENDING_UPDATE, TA_PENDING_CANCEL})

# headers
TA_HDR_AUTH = "Authorization"  # "Bearer <token>" [DOC T3-T12]
TA_BEARER = "Bearer "
TA_HDR_IDEMPOTENCY_KEY = "Idempotency-Key"  # optional UUID [DOC T6, T7, T8]
TA_PROBLEM_CONTENT_TYPE = "application/problem+json"  # [INF] not stated; the client accepts any JSON

# problem details fields [DOC T6-T12]
TA_F_PATH = "path"
TA_F_STATUS = "status"
TA_F_TYPE = "type"
TA_F_TITLE = "title"
TA_F_DETAIL = "detail"
TA_F_ADDITIONAL_INFO = "additionalInfo"
TA_F_REASON = "reason"  # key inside additionalInfo [INF] (simulator's reason codes below)
TA_F_FIELD = "field"  # key inside additionalInfo [INF]

# problem types: branch on these, never on title/detail [DOC]
TA_TYPE_PREFIX = "error://trader-api/"
TA_ERR_VALIDATION = TA_TYPE_PREFIX + "trading-validation-failed"  # 400 [DOC T5-T9]
TA_ERR_IDEMPOTENCY_KEY = TA_TYPE_PREFIX + "idempotency-key-invalid"  # 400 [DOC T6-T8]
TA_ERR_CANDLE_INTERVAL = TA_TYPE_PREFIX + "candle-interval-invalid"  # 400 [DOC T5]
TA_ERR_SYMBOL_TYPE = TA_TYPE_PREFIX + "symbol-type-invalid"  # 400 [DOC T4]
TA_ERR_LEDGER_TYPE = TA_TYPE_PREFIX + "ledger-type-invalid"  # 400 [DOC T12]
TA_ERR_UNAUTHORIZED = TA_TYPE_PREFIX + "unauthorized"  # 401 [DOC T3, T7, T9-T11]
TA_ERR_FORBIDDEN = TA_TYPE_PREFIX + "forbidden"  # 403 [DOC T10, T11]; a read-only token on a write [INF]
TA_ERR_NOT_FOUND = TA_TYPE_PREFIX + "not-found"  # 404 INVENTED by the simulator [INF]: never relied on
TA_ERR_TOO_MANY = TA_TYPE_PREFIX + "too-many-requests"  # 429 INVENTED [INF]: the client goes by status
TA_ERR_UNAVAILABLE = TA_TYPE_PREFIX + "service-unavailable"  # 5xx INVENTED [INF]: the client goes by status
# additionalInfo.reason for a key reused with another body: INVENTED [INF doc §9]
TA_REASON_KEY_REUSED = "KEY_REUSED_WITH_DIFFERENT_REQUEST"

# request / response fields [DOC T3-T12]
TA_F_SYMBOL = "symbol"
TA_F_SIDE = "side"
TA_F_VOLUME = "volume"
TA_F_TP_PRICE = "tpPrice"  # null = none [DOC T6]
TA_F_SL_PRICE = "slPrice"
TA_F_COMMENT = "comment"  # free text stored with the position [DOC T6]; echoed in lists [INF]
TA_F_POSITION_ID = "positionId"  # 201 body of open [DOC T6]
TA_F_PENDING_ORDER_ID = "pendingOrderId"  # 201 body of create pending [DOC T8]
TA_F_ACTIVATION_PRICE = "activationPrice"
TA_F_LIMIT = "limit"
TA_F_FROM = "from"  # integer; unit unstated: the client sends epoch ms [INF], the simulator takes both
TA_F_TO = "to"
TA_F_INTERVAL = "interval"
TA_F_SYMBOLS = "symbols"  # list key of Get Symbols [DOC T4]
TA_F_QUOTES = "quotes"  # [INF]
TA_F_CANDLES = "candles"  # [DOC T5]
TA_F_POSITIONS = "positions"  # [INF]
TA_F_PENDING_ORDERS = "pendingOrders"  # [INF]
TA_F_CLOSED_POSITIONS = "closedPositions"  # [DOC T11]
# account summary [DOC T3]
TA_F_BALANCE = "balance"
TA_F_CREDIT = "credit"
TA_F_EQUITY = "equity"
TA_F_MARGIN = "margin"
TA_F_FREE_FUNDS = "freeFunds"
TA_F_MARGIN_LEVEL = "marginLevel"
TA_F_PROFIT = "profit"
TA_F_CURRENCY = "currency"  # in the profile (GET account) [INF]
# item fields of lists: NOT documented (doc §5.3-5.6, "child attributes" unread) -- all [INF],
# modelled on the Platform API's names
TA_F_ID = "id"
TA_F_OPEN_PRICE = "openPrice"
TA_F_CLOSE_PRICE = "closePrice"
TA_F_OPEN_TIME = "openTime"  # epoch ms [INF]
TA_F_CLOSE_TIME = "closeTime"  # epoch ms [INF]
TA_F_TIME = "time"  # candle / quote time, epoch ms [INF]
TA_F_SWAP = "swap"
TA_F_COMMISSION = "commission"
TA_F_DIGITS = "digits"
TA_F_CONTRACT_SIZE = "contractSize"

TA_LIMIT_CLOSED_MAX = 500  # [DOC T11]
TA_LIMIT_CANDLES_MAX = 750  # [DOC T5]
# No Trader API rate limit is published: budget per token at the Platform API's 500/min [INF].
TA_RATE_LIMIT_PER_MINUTE = RATE_LIMIT_PER_MINUTE
# The short order tag tradeops writes in ``comment`` and matches positions read back on [INF: the
# echo of comment in the open-positions list is unknown, so the tag is a confirmation, never required].
TA_COMMENT_TAG_PREFIX = "to:"
TA_COMMENT_TAG_LEN = 12  # hex chars of the intent key


def ta_route(op: str, **ids: str) -> tuple[str, str]:
    method, template = TA_ROUTES[op]
    return method, template.format(**ids) if ids else template


def ta_comment_tag(intent_key: str) -> str:
    """The short tag of an order intent carried in ``comment`` (a prefix of its key's hex)."""
    return TA_COMMENT_TAG_PREFIX + str(intent_key).replace("-", "").lower()[:TA_COMMENT_TAG_LEN]
