"""The account-stream worker: the broker's picture of every enabled account in PostgreSQL within
seconds (``manage.py run_account_stream``, Procfile ``accounts``).

Two paths, one process, no process per account:

* **push** (the simulator, or a broker with a push channel): one asyncio task per account holds a
  WebSocket on the ``account`` channel. The simulator pushes ``positionClosed`` (an EXTENSION, see
  ``matchtrader/protocol.py``: the close price, reason, PnL and commission in the frame, so no read
  follows a close) and snapshots of open positions and balance. After every (re)subscribe the
  open-positions snapshot fills the gap (``orders.state_sync.apply_open_snapshot``), and a jump in
  the close-event ``seq`` triggers the same. Reconnects back off with full jitter (cap 5 s), like
  the feed.
* **poll** (both real Match-Trader APIs push nothing): a thread pool reads ``/open-positions`` per
  account on a cadence inside that account's share of the broker budget (``PollBudget``), at the
  lowest priority of the account's token bucket (``orders.broker``: opens and closes go first), and
  under a total cap per broker host. Smart rather than fast: an account whose known position's SL
  or TP the live quotes show as touched is read at once; accounts with open positions are read
  every ``ACCOUNT_POLL_OPEN_S``, flat ones every ``ACCOUNT_POLL_FLAT_S``.

Everything the worker learns goes through ``orders.state_sync`` (the one home for applying broker
truth), called in a small thread pool because the ORM is synchronous.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlparse

import aiohttp
from django.conf import settings
from django.db import close_old_connections

from matchtrader import protocol as P
from matchtrader.errors import BrokerError, MalformedResponse
from matchtrader.models import ClosedPosition, OpenPosition
from orders.state_sync import touched  # noqa: F401 - re-exported: the poller's touch rule
from tradeops.logging import get_logger

log = get_logger(__name__)


def _db(fn, *args, **kwargs):
    """Run ORM work in a pool thread with a usable connection."""
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


def enabled_accounts() -> list:
    from accounts.models import Account

    return list(Account.objects.filter(enabled=True).order_by("pk"))


# --- the budget ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PollBudget:
    """Per-account polling cadence inside the broker's request budget.

    The broker allows ``P.RATE_LIMIT_PER_MINUTE`` per ``P.RATE_LIMIT_SCOPE`` (an INFERRED scope: the
    docs do not say whether it is per account, login or IP; see ``matchtrader/protocol.py``). Polls
    may use ``poll_share`` of an account's budget, at most ``max_per_min`` (60 = one read a second),
    and all accounts together at most ``host_max_per_s`` per broker host (1,000 accounts x 60/min
    would otherwise be 1,000 requests/s from one address).
    """

    open_every_s: float
    flat_every_s: float
    max_per_min: float
    host_max_per_s: float
    poll_share: float = 0.25

    @classmethod
    def from_settings(cls) -> "PollBudget":
        return cls(open_every_s=settings.ACCOUNT_POLL_OPEN_S, flat_every_s=settings.ACCOUNT_POLL_FLAT_S,
                   max_per_min=settings.ACCOUNT_POLL_MAX_PER_MIN, host_max_per_s=settings.ACCOUNT_POLL_HOST_MAX_PER_S)

    def per_account_per_min(self, accounts_on_host: int) -> float:
        """Requests per minute one account's polls may use: its share of the account budget, capped,
        and its share of the host cap when the scope is the IP."""
        share = min(self.max_per_min, P.RATE_LIMIT_PER_MINUTE * self.poll_share)
        host_share = self.host_max_per_s * 60.0 / max(1, accounts_on_host)
        return min(share, host_share)

    @property
    def min_gap_s(self) -> float:
        """No two reads of one account closer than this, urgent ones included (60/min -> 1 s)."""
        return 60.0 / self.max_per_min

    def interval_s(self, has_open: bool, accounts_on_host: int) -> float:
        wanted = self.open_every_s if has_open else self.flat_every_s
        return max(wanted, 60.0 / self.per_account_per_min(accounts_on_host))


# --- push path ----------------------------------------------------------------------------------------
@dataclass(slots=True)
class AccountConn:
    account_id: int
    name: str
    last_seq: int | None = None
    last_balance_at: float = 0.0
    last_equity_snapshot_at: float = 0.0
    last_balance: tuple | None = None
    balance_in_flight: bool = False
    last_snapshot_at: float = 0.0
    connects: int = 0
    closes_applied: int = 0
    gaps: int = 0


class AccountStream:
    """Push path: one WebSocket per enabled account on one asyncio loop."""

    def __init__(self, *, db_threads: int = 8, refresh_s: float = 5.0, backoff_base: float = 0.5,
                 backoff_cap: float = 5.0, balance_every_s: float | None = None, rng: random.Random | None = None):
        # closes and gap fills (what the lag is measured on) never queue behind balance writes
        self.pool = ThreadPoolExecutor(max_workers=db_threads, thread_name_prefix="acct-db")
        self.slow_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="acct-bal")
        self._seen: dict[int, int] = {}
        self.refresh_s = refresh_s
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.balance_every_s = settings.ACCOUNT_STREAM_BALANCE_EVERY_S if balance_every_s is None else balance_every_s
        self._rng = rng or random.Random()
        self.conns: dict[int, AccountConn] = {}
        self._tasks: dict[int, asyncio.Task] = {}
        self.stats = {"closes_applied": 0, "gaps_filled": 0, "reconnects": 0, "frames": 0, "malformed": 0}
        self.ready = threading.Event()

    async def _db(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self.pool, lambda: _db(fn, *args, **kwargs))

    async def _slow(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self.slow_pool, lambda: _db(fn, *args, **kwargs))

    async def _flush_seen(self) -> None:
        """Every account's "broker state confirmed" time in ONE Redis call per second."""
        from orders import state_sync

        if self._seen:
            seen, self._seen = self._seen, {}
            try:
                await self._slow(state_sync.mark_seen_many, seen)
            except Exception as exc:  # noqa: BLE001 - a metric
                log.info("account_stream_seen_unrecorded", error=type(exc).__name__)

    async def _write_balance(self, conn: AccountConn, data: dict, snapshot: bool) -> None:
        from orders import state_sync

        try:
            await self._slow(state_sync.apply_balance, conn.account_id, balance=Decimal(str(data["balance"])),
                             equity=Decimal(str(data["equity"])), margin=Decimal(str(data.get("margin") or 0)),
                             snapshot=snapshot)
        except Exception as exc:  # noqa: BLE001 - the next balance frame tries again
            log.info("account_stream_balance_unwritten", account=conn.account_id, error=type(exc).__name__)
        finally:
            conn.balance_in_flight = False

    def backoff(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempt - 1)))

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._main(stop))

    async def _main(self, stop: threading.Event) -> None:
        # limit=0: one WebSocket per account (aiohttp's default pool of 100 connections would
        # leave account 101 and beyond waiting forever)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            self._session = session
            try:
                while not stop.is_set():
                    await self._sync_accounts()
                    self.ready.set()
                    for i in range(int(self.refresh_s / 0.1)):
                        if stop.is_set():
                            break
                        if i % 10 == 0:
                            await self._flush_seen()
                        await asyncio.sleep(0.1)
            finally:
                for t in self._tasks.values():
                    t.cancel()
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.slow_pool.shutdown(wait=False, cancel_futures=True)

    async def _sync_accounts(self) -> None:
        try:
            accounts = {a.pk: a for a in await self._db(enabled_accounts)}
        except Exception as exc:  # noqa: BLE001 - the database may be briefly away; keep streaming
            log.warning("account_stream_accounts_unreadable", error=type(exc).__name__)
            return
        for pk in set(self._tasks) - set(accounts):
            self._tasks.pop(pk).cancel()
            self.conns.pop(pk, None)
        for pk, account in accounts.items():
            task = self._tasks.get(pk)
            if task is None or task.done():
                self.conns.setdefault(pk, AccountConn(pk, account.name))
                self._tasks[pk] = asyncio.create_task(self._account_loop(account), name=f"account-{pk}")

    async def _account_loop(self, account) -> None:
        from orders import broker

        conn = self.conns[account.pk]
        attempt = 0
        while True:
            try:
                client = await self._db(broker.client_for, account)
                headers = await self._db(client.ws_auth_headers)
                url = client.ws_url
                async with self._session.ws_connect(url, headers=headers, heartbeat=10.0,
                                                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0)) as ws:
                    conn.connects += 1
                    if conn.connects > 1:
                        self.stats["reconnects"] += 1
                    attempt = 0
                    conn.last_seq = None  # re-based: the first snapshot after subscribing fills the gap
                    conn.last_snapshot_at = 0.0
                    await ws.send_str(json.dumps({P.WS_OP: P.WS_OP_SUBSCRIBE, P.WS_CHANNEL: P.WS_CH_ACCOUNT}))
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            await self._on_frame(conn, client, msg.data)
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                            break
                    code = ws.close_code
                if code == P.WS_CLOSE_AUTH_EXPIRED:
                    await self._db(client.refresh_session)
                log.info("account_stream_disconnected", account=account.pk, code=code)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure means "reconnect later"
                log.info("account_stream_connect_failed", account=account.pk, error=type(exc).__name__,
                         detail=str(exc)[:200])
            attempt += 1
            await asyncio.sleep(self.backoff(attempt))

    async def _on_frame(self, conn: AccountConn, client, raw: str) -> None:
        from orders import state_sync

        self.stats["frames"] += 1
        try:
            msg = json.loads(raw)
            kind = msg.get(P.WS_TYPE) if isinstance(msg, dict) else None
            if kind == P.WS_T_POSITION_CLOSED:
                closed = ClosedPosition.from_json(msg[P.WS_DATA])
                seq = msg.get(P.WS_SEQ)
                gap = conn.last_seq is not None and isinstance(seq, int) and seq != conn.last_seq + 1
                conn.last_seq = seq if isinstance(seq, int) else conn.last_seq
                if await self._db(state_sync.apply_close, conn.account_id, closed):
                    conn.closes_applied += 1
                    self.stats["closes_applied"] += 1
                if gap:  # a close event went missing: the next snapshot is checked against history
                    conn.gaps += 1
                    conn.last_snapshot_at = 0.0
            elif kind == P.WS_T_POSITIONS:
                positions = [OpenPosition.from_json(p) for p in msg[P.WS_DATA]["positions"]]
                self._seen[conn.account_id] = int(time.time() * 1000)
                now = time.monotonic()
                # the first snapshot after (re)subscribing or a gap, then at most every 5 s
                if now - conn.last_snapshot_at >= 5.0:
                    conn.last_snapshot_at = now
                    ids = {p.id for p in positions}
                    filled = await self._db(state_sync.apply_open_snapshot, conn.account_id, ids, client)
                    if filled:
                        self.stats["gaps_filled"] += len(filled)
                        log.info("account_stream_gap_filled", account=conn.account_id, positions=filled)
            elif kind == P.WS_T_BALANCE:
                # written when it changed, at most every balance_every_s, never awaited here (a close
                # frame right behind it must not wait for a balance write)
                now = time.monotonic()
                d = msg[P.WS_DATA]
                value = (str(d["balance"]), str(d["equity"]))
                if (not conn.balance_in_flight and value != conn.last_balance
                        and now - conn.last_balance_at >= self.balance_every_s):
                    snapshot = now - conn.last_equity_snapshot_at >= state_sync.snapshot_every_s()
                    conn.last_balance_at, conn.last_balance, conn.balance_in_flight = now, value, True
                    if snapshot:
                        conn.last_equity_snapshot_at = now
                    asyncio.create_task(self._write_balance(conn, d, snapshot))
        except (ValueError, KeyError, TypeError, MalformedResponse) as exc:
            self.stats["malformed"] += 1
            log.warning("account_stream_malformed_frame", account=conn.account_id, error=str(exc)[:200],
                        frame=raw[:300])


# --- poll path ----------------------------------------------------------------------------------------
@dataclass(slots=True)
class PolledAccount:
    account: object
    next_due: float = 0.0
    has_open: bool = True
    urgent: bool = False
    last_poll_at: float = -1e9
    polls: int = 0
    host: str = ""
    poll_times: list = field(default_factory=list)


class BudgetedPoller:
    """Poll path: reads open positions per account on a budgeted cadence (see ``PollBudget``)."""

    def __init__(self, budget: PollBudget | None = None, *, threads: int = 8, refresh_s: float = 5.0,
                 touch_check_s: float = 0.25):
        self.budget = budget or PollBudget.from_settings()
        self.threads = threads
        self.refresh_s = refresh_s
        self.touch_check_s = touch_check_s
        self.accounts: dict[int, PolledAccount] = {}
        self.stats = {"polls": 0, "skipped_for_trading": 0, "urgent": 0, "closes_applied": 0}
        self._lock = threading.Lock()
        self.ready = threading.Event()

    # the host cap: one shared token bucket per broker host (all poller processes together)
    def _host_bucket(self, host: str):
        from orders.broker import RedisTokenBucket, get_redis

        cache = self.__dict__.setdefault("_host_buckets", {})
        if host not in cache:
            per_min = self.budget.host_max_per_s * 60.0
            cache[host] = RedisTokenBucket(get_redis(), f"poll-host:{host}", rate_per_minute=per_min,
                                           burst=max(1.0, self.budget.host_max_per_s), high_reserve_share=0.0)
        return cache[host]

    def _refresh(self) -> None:
        from orders import broker

        accounts = _db(enabled_accounts)
        with self._lock:
            for pk in set(self.accounts) - {a.pk for a in accounts}:
                self.accounts.pop(pk)
            for a in accounts:
                host = urlparse(broker.base_url_for(a)).netloc
                if a.pk in self.accounts:
                    self.accounts[a.pk].account = a
                else:
                    self.accounts[a.pk] = PolledAccount(a, host=host)

    def _hosts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for st in self.accounts.values():
            out[st.host] = out.get(st.host, 0) + 1
        return out

    def check_touches(self) -> int:
        """Accounts whose known position's SL or TP the live quotes show as touched: read at once."""
        from marketdata.reader import read_quotes
        from orders.broker import get_redis
        from orders.models import Position

        rows = list(Position.objects.filter(status=Position.Status.OPEN).values_list(
            "account_id", "symbol__name", "side", "stop_loss", "take_profit"))
        if not rows:
            return 0
        quotes = read_quotes(get_redis(), sorted({r[1] for r in rows}))
        n = 0
        with self._lock:
            for account_id, symbol, side, sl, tp in rows:
                q = quotes.get(symbol)
                st = self.accounts.get(account_id)
                if not q or st is None or st.urgent:
                    continue
                if touched(side, q.get("bid"), q.get("ask"), sl, tp):
                    st.urgent = True
                    n += 1
        self.stats["urgent"] += n
        return n

    def poll_one(self, st: PolledAccount) -> None:
        from orders import broker, state_sync

        account = st.account
        client = broker.client_for(account)
        limiter = getattr(client, "rate_limiter", None)
        if self._host_bucket(st.host).try_acquire(1, "high") > 0:  # the host cap first: it costs no account token
            st.next_due = time.monotonic() + 0.1
            return
        # trading first: a poll takes a "low" token, which leaves half the account's bucket to orders
        if limiter is not None and hasattr(limiter, "try_acquire"):
            if limiter.try_acquire(1, "low") > 0:
                self.stats["skipped_for_trading"] += 1
                st.next_due = time.monotonic() + 0.5
                return
            limiter.credit()  # the read below is paid for
        try:
            positions = client.open_positions()
        except BrokerError as exc:
            log.info("account_poll_failed", account=account.pk, error=type(exc).__name__)
            st.next_due = time.monotonic() + 1.0
            return
        st.polls += 1
        st.last_poll_at = time.monotonic()
        st.poll_times.append(st.last_poll_at)
        del st.poll_times[:-200]
        self.stats["polls"] += 1
        state_sync.mark_seen(account.pk)
        closed = state_sync.apply_open_snapshot(account.pk, {p.id for p in positions}, client)
        self.stats["closes_applied"] += len(closed)
        st.has_open = bool(positions) or bool(state_sync.open_position_ids(account.pk))
        st.urgent = False
        st.next_due = time.monotonic() + self.budget.interval_s(st.has_open, self._hosts().get(st.host, 1))

    def run(self, stop: threading.Event) -> None:
        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="acct-poll")
        in_flight: set[int] = set()
        in_flight_lock = threading.Lock()
        next_refresh = next_touch = 0.0

        def job(st: PolledAccount):
            try:
                _db(self.poll_one, st)
            except Exception:  # noqa: BLE001 - one account's failure never stops the others
                log.exception("account_poll_crashed", account=st.account.pk)
                st.next_due = time.monotonic() + 5.0
            finally:
                with in_flight_lock:
                    in_flight.discard(st.account.pk)

        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_refresh:
                    try:
                        self._refresh()
                        self.ready.set()
                    except Exception as exc:  # noqa: BLE001
                        log.warning("account_poll_accounts_unreadable", error=type(exc).__name__)
                    next_refresh = now + self.refresh_s
                if now >= next_touch:
                    try:
                        _db(self.check_touches)
                    except Exception as exc:  # noqa: BLE001
                        log.info("account_poll_touch_check_failed", error=type(exc).__name__)
                    next_touch = now + self.touch_check_s
                with self._lock:
                    # an urgent read (SL/TP touched) jumps the queue but never the per-account cap
                    gap = self.budget.min_gap_s
                    due = sorted((st for st in self.accounts.values()
                                  if ((st.urgent and now - st.last_poll_at >= gap) or st.next_due <= now)
                                  and st.account.pk not in in_flight),
                                 key=lambda s: (not s.urgent, s.next_due))
                for st in due:
                    with in_flight_lock:
                        if len(in_flight) >= self.threads * 2:
                            break
                        in_flight.add(st.account.pk)
                    pool.submit(job, st)
                stop.wait(0.05)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
