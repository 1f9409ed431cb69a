"""Per-account broker sessions for the order engine.

* ``client_for(account)`` returns a cached :class:`matchtrader.client.MatchTraderClient` for the
  account (one per process, all sharing ONE pooled ``requests.Session``: no per-order TCP handshake
  and no per-order login).
* Session tokens live in Redis (:class:`RedisTokenStore`), Fernet-encrypted, shared by every worker
  process of every host: the first task to log in for an account saves the tokens, the others
  reuse them. A token older than ``ORDERS_TOKEN_REFRESH_AFTER_S`` is refreshed before it expires,
  by one process at a time (a short Redis lock), and the others pick the new one up.
* Which API: ``account.api`` picks the Platform API client (email/password login, session tokens
  above) or the Trader API client (:class:`matchtrader.trader_client.TraderApiClient`, one bearer
  token per account, no login, no refresh). Both have the same methods and errors, so nothing
  above this module knows which API an account uses.
* Rate limiting: one token bucket per broker credential (a Platform login, or a Trader API token) in Redis (:class:`RedisTokenBucket`, a Lua
  script, so the budget is shared by every process). Normal requests stop at a reserve that only
  ``priority="high"`` (closes, cancels) may use, so an exit is never starved by new entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import redis as redis_lib
from django.conf import settings

from matchtrader.client import MatchTraderClient, make_session
from matchtrader.trader_client import TraderApiClient
from matchtrader.errors import BrokerUnavailable, MalformedResponse, RateLimited
from tradeops import redis_clients
from tradeops.fields import decrypt, encrypt
from tradeops.logging import get_logger

from .config import engine_config
from .policy import backoff_s

log = get_logger(__name__)

TOKEN_KEY = "orders:tokens:{key}"
TOKEN_REFRESH_LOCK = "orders:tokens:refreshing:{key}"
TOKEN_REFRESHES = "orders:tokens:refreshes:{key}"  # sorted set: this session's refresh times
# The broker allows 4 refreshes per session per hour (docs: 15 min tokens, refresh "max 4/hour"):
# past that a proactive renewal logs in again (a new session) instead of spending a refused call.
REFRESHES_PER_HOUR = 4
BUCKET_KEY = "orders:ratelimit:{credential}"
LOW_PRIORITY_HEADROOM = 0.5  # share of the bucket "low" (state polls) leaves to trading


def get_redis() -> redis_lib.Redis:
    return redis_clients.shared("orders")


def credential_id(base_url: str, email: str, broker_id: str, system_uuid: str = "") -> str:
    """A stable, non-secret id of one broker login (hash: emails do not belong in key names)."""
    raw = f"{base_url.rstrip('/')}|{email.lower()}|{broker_id}|{system_uuid}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def token_credential_id(base_url: str, token: str) -> str:
    """The non-secret id of one Trader API token: its rate budget is per token [INF doc §4]."""
    return "ta" + hashlib.sha256(f"{base_url.rstrip('/')}|{token}".encode()).hexdigest()[:22]


# --- tokens -----------------------------------------------------------------------------------------
class RedisTokenStore:
    """``matchtrader`` TokenStore backed by Redis; values Fernet-encrypted, never logged."""

    def __init__(self, redis: redis_lib.Redis, ttl_s: int):
        self.redis = redis
        self.ttl_s = ttl_s

    def _key(self, key: str) -> str:
        return TOKEN_KEY.format(key=hashlib.sha256(key.encode()).hexdigest()[:32])

    def get_record(self, key: str) -> dict | None:
        return self.decode(self.redis.get(self._key(key)))

    @staticmethod
    def decode(raw: bytes | None) -> dict | None:
        if not raw:
            return None
        try:
            return json.loads(decrypt(raw.decode()))
        except Exception:  # undecryptable (rotated key) or corrupt: log in again
            log.warning("token_store_unreadable")
            return None

    def get(self, key: str) -> dict | None:
        rec = self.get_record(key)
        return rec["tokens"] if rec else None

    def set(self, key: str, value: dict) -> None:
        rec = {"tokens": value, "stored_at": time.time()}
        self.redis.set(self._key(key), encrypt(json.dumps(rec)), ex=self.ttl_s)


# --- rate limiting ------------------------------------------------------------------------------------
_BUCKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])   -- tokens per ms
local cost = tonumber(ARGV[3])
local floor = tonumber(ARGV[4])  -- tokens this priority must leave in the bucket
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then tokens = cap; ts = now end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens - cost >= floor then
  tokens = tokens - cost
else
  wait = math.ceil((cost + floor - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate) + 1000)
return wait
"""


class RedisTokenBucket:
    """The ``matchtrader`` RateLimiter interface over one Redis token bucket per credential.

    ``burst + rate_per_minute <= 500`` keeps any 60 s window under the documented 500 requests.
    Normal requests leave ``high_reserve_share × burst`` tokens for high-priority ones.
    """

    def __init__(self, redis: redis_lib.Redis, credential: str, *, rate_per_minute: float, burst: float,
                 high_reserve_share: float, max_wait_s: float = 30.0):
        self.redis = redis
        self.key = BUCKET_KEY.format(credential=credential)
        self.capacity = float(burst)
        self.rate_per_ms = rate_per_minute / 60_000.0
        self.reserve = max(0.0, min(self.capacity - 1, high_reserve_share * self.capacity))
        self.max_wait_s = max_wait_s
        self._script = redis.register_script(_BUCKET_LUA)
        self._prepaid = 0  # acquisitions already taken for this credential (prepare_calls)
        self._prepaid_lock = threading.Lock()

    def _args(self, cost: float, priority: str) -> list:
        # "low" (account-state polls) must leave half the bucket above the high reserve: trading
        # (normal) and exits (high) always find tokens that polls did not take
        if priority == "high":
            floor = 0.0
        elif priority == "low":
            floor = min(self.capacity - 1, self.reserve + LOW_PRIORITY_HEADROOM * self.capacity)
        else:
            floor = self.reserve
        return [self.capacity, self.rate_per_ms, cost, floor]

    def try_acquire(self, cost: float = 1, priority: str = "normal") -> float:
        wait_ms = self._script(keys=[self.key], args=self._args(cost, priority))
        return int(wait_ms) / 1000.0

    def queue_prepay(self, pipe) -> None:
        """Add one normal-priority acquisition to ``pipe`` (see :func:`prepare_calls`)."""
        self._script(keys=[self.key], args=self._args(1, "normal"), client=pipe)

    def credit(self) -> None:
        """The acquisition queued by :meth:`queue_prepay` succeeded: the credential's next normal
        request in this process is already paid for (whichever thread makes it)."""
        with self._prepaid_lock:
            self._prepaid += 1

    def _use_prepaid(self) -> bool:
        with self._prepaid_lock:
            if self._prepaid > 0:
                self._prepaid -= 1
                return True
        return False

    def acquire(self, cost: float = 1, priority: str = "normal") -> None:
        """Block until allowed. Waiting longer than ``max_wait_s`` raises RateLimited (the request
        was NOT sent, so the caller may retry it like a broker 429)."""
        if priority == "normal" and cost == 1 and self._use_prepaid():
            return
        deadline = time.monotonic() + self.max_wait_s
        while True:
            wait = self.try_acquire(cost, priority)
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise RateLimited(wait, "local rate budget exhausted")
            time.sleep(wait)


# --- clients ------------------------------------------------------------------------------------------
_local = threading.local()
_clients: dict[tuple, MatchTraderClient] = {}
_clients_lock = threading.Lock()
_session = None


def _shared_session():
    global _session
    if _session is None:
        _session = make_session(pool_maxsize=64, user_agent=settings.ORDERS_USER_AGENT)
    return _session


def base_url_for(account) -> str:
    """Simulation accounts (and everything while SIMULATION_MODE is on) talk to the simulator,
    which serves both APIs on one port."""
    if settings.SIMULATION_MODE or account.mode == "simulation":
        return settings.SIMULATOR_URL
    return account.platform_url


BrokerClient = MatchTraderClient | TraderApiClient


def client_for(account) -> BrokerClient:
    """The process-wide client of ``account`` (Platform sessions synced from Redis)."""
    client = _cached_client(account)
    _sync_tokens(client)
    return client


def prepare_calls(accounts) -> dict[int, BrokerClient]:
    """:func:`client_for` for a chunk of accounts about to make one broker call each (an order, a
    read), in ONE pipelined Redis round trip: every account's tokens are read and one unit of its
    rate budget is taken (an account whose bucket is empty gets no credit and waits in its own
    call as usual)."""
    clients = {a.pk: _cached_client(a) for a in accounts}
    if not clients:
        return clients
    sessions = [c for c in clients.values() if isinstance(c, MatchTraderClient)]  # Trader API: no session
    pipe = get_redis().pipeline(transaction=False)
    for client in sessions:
        pipe.get(client.token_store._key(client._store_key))
    for client in clients.values():
        client.rate_limiter.queue_prepay(pipe)
    replies = pipe.execute(raise_on_error=False)
    n = len(sessions)
    for i, client in enumerate(sessions):
        raw = replies[i]
        if not isinstance(raw, Exception):
            _sync_tokens(client, record=RedisTokenStore.decode(raw))
        else:
            _sync_tokens(client)
    for i, client in enumerate(clients.values()):
        wait = replies[n + i]
        if not isinstance(wait, Exception) and int(wait) <= 0:
            client.rate_limiter.credit()
    return clients


def _bucket(r, credential: str) -> RedisTokenBucket:
    return RedisTokenBucket(r, credential, rate_per_minute=settings.ORDERS_RATE_LIMIT_PER_MIN,
                            burst=settings.ORDERS_RATE_BURST, high_reserve_share=settings.ORDERS_RATE_HIGH_RESERVE)


def _cached_client(account) -> BrokerClient:
    base = base_url_for(account)
    if getattr(account, "api", "platform") == "trader":
        return _cached_trader_client(account, base)
    key = (account.pk, base, account.email, account.broker_id, account.system_uuid,
           hashlib.sha256((account.password or "").encode()).hexdigest()[:16])
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                r = get_redis()
                client = MatchTraderClient(
                    base, account.email, account.password, account.broker_id,
                    system_uuid=account.system_uuid or None,
                    trading_account_id=account.trading_account_id or None,
                    session=_shared_session(), timeout=tuple(settings.ORDERS_BROKER_TIMEOUT),
                    user_agent=settings.ORDERS_USER_AGENT,
                    rate_limiter=_bucket(r, credential_id(base, account.email, account.broker_id,
                                                          account.system_uuid)),
                    token_store=RedisTokenStore(r, ttl_s=settings.ORDERS_TOKEN_TTL_S),
                )
                _clients[key] = client
    return client


def _cached_trader_client(account, base: str) -> TraderApiClient:
    token = account.trader_api_token or ""
    key = ("trader", account.pk, base, hashlib.sha256(token.encode()).hexdigest()[:16])
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = TraderApiClient(base, token, session=_shared_session(),
                                         timeout=tuple(settings.ORDERS_BROKER_TIMEOUT),
                                         user_agent=settings.ORDERS_USER_AGENT,
                                         rate_limiter=_bucket(get_redis(), token_credential_id(base, token)),
                                         label=account.name)
                _clients[key] = client
    return client


_UNREAD = object()


def _sync_tokens(client: BrokerClient, record=_UNREAD) -> None:
    """Adopt tokens another process stored; refresh ahead of expiry (one process at a time).
    ``record``: the stored record when the caller already read it (:func:`prepare_calls`).
    A Trader API client has no session: nothing to sync."""
    if not isinstance(client, MatchTraderClient):
        return
    store: RedisTokenStore = client.token_store
    rec = store.get_record(client._store_key) if record is _UNREAD else record
    if rec is None:
        return  # first use anywhere: the client logs in lazily and stores the tokens
    current = client._tokens
    if current is None or current.to_dict() != rec["tokens"]:
        client._tokens = None  # re-read from the store on the next call
    age = time.time() - float(rec.get("stored_at", 0))
    if age > settings.ORDERS_TOKEN_REFRESH_AFTER_S:
        hashed = store._key(client._store_key)
        lock_key = TOKEN_REFRESH_LOCK.format(key=hashed)
        if store.redis.set(lock_key, "1", nx=True, ex=30):
            try:
                _renew_session(client, store.redis, TOKEN_REFRESHES.format(key=hashed), age)
            except Exception as exc:  # the next call re-logs in on 401 anyway
                log.warning("broker_token_refresh_failed", error=type(exc).__name__)


def _renew_session(client: MatchTraderClient, redis, refreshes_key: str, age: float) -> None:
    """Refresh the session, or log in again once this session used its hourly refreshes."""
    now = time.time()
    redis.zremrangebyscore(refreshes_key, 0, now - 3600)
    if redis.zcard(refreshes_key) >= REFRESHES_PER_HOUR:
        client.login()
        redis.delete(refreshes_key)  # a new session starts a new refresh budget
        log.info("broker_session_renewed_by_login", age_s=round(age), reason="refresh budget used")
        return
    client.refresh_session()
    redis.zadd(refreshes_key, {f"{now:.6f}": now})
    redis.expire(refreshes_key, 3600)
    log.info("broker_token_refreshed_ahead", age_s=round(age))


def reset_clients() -> None:
    """Forget cached clients (tests; after a worker fork)."""
    global _session
    with _clients_lock:
        _clients.clear()
        _session = None


# --- calls in flight together, and reads repeated --------------------------------------------------------
_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def send_pool() -> ThreadPoolExecutor:
    """The process's pool of broker calls (HTTP only, never the database), created lazily and
    again after a fork: a prefork child must not inherit its parent's threads."""
    global _pool
    pid = os.getpid()
    if _pool is None or _pool[0] != pid:
        with _pool_lock:
            if _pool is None or _pool[0] != pid:
                _pool = (pid, ThreadPoolExecutor(max_workers=max(1, settings.ORDERS_SEND_CONCURRENCY),
                                                 thread_name_prefix="order-send"))
    return _pool[1]


def read_with_retry(fn, *args, attempts: int = 4):
    """Reads are safe to repeat: retry transient failures a few times with backoff."""
    config = engine_config()
    for attempt in range(attempts):
        try:
            return fn(*args)
        except RateLimited as exc:
            if attempt == attempts - 1 or exc.retry_after > config.max_retry_after_s:
                raise
            time.sleep(max(exc.retry_after, backoff_s(attempt + 1, config)))
        except (BrokerUnavailable, MalformedResponse):
            if attempt == attempts - 1:
                raise
            time.sleep(backoff_s(attempt + 1, config))
