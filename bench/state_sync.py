"""Benchmark of account-state sync: broker close (TP/SL at the simulator) → Position closed in PostgreSQL.

    .venv/bin/python bench/state_sync.py [--accounts 1000] [--redis-url redis://127.0.0.1:6379/7]
                                         [--db tradeops_bench_state] [--paths push,poll]

In one run it
1. creates (or reuses) a throw-away database and its own Redis db, starts the exchange simulator in
   this process and the real feed worker in a thread (quotes into Redis, which the poller's SL/TP
   touch detection reads);
2. creates the accounts and opens ONE position per account at the simulator (half BUY, half SELL,
   SL/TP at random distances of 3-30 pips), recorded in the database as the order engine would;
3. for each path (``push``: ``AccountStream`` on the simulator's ``positionClosed`` extension;
   ``poll``: ``BudgetedPoller`` under the shipped budget), walks EURUSD up half a pip every 200 ms
   so every position is hit by its TP (BUY) or SL (SELL) at a different moment, and reads the
   broker-close → database lag of every close (``orders.state_sync`` records it);
4. prints the lag (median, p95, max) per path, the requests used per account per minute and the
   share of the budget that is (polls: per account vs ``ACCOUNT_POLL_MAX_PER_MIN``, per host vs
   ``ACCOUNT_POLL_HOST_MAX_PER_S``).

Targets: push p95 ≤ 1 s; polling p95 ≤ 5 s at ≤ 60 requests per account per minute. The
simulator shares this process (and its GIL) with the worker: the figures are an upper bound.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = 1.10000
PIP = Decimal("0.0001")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--paths", default="push,poll", help="comma-separated: push, poll")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/7", help="a Redis db nobody else uses")
    p.add_argument("--db", default="tradeops_bench_state", help="throw-away database (created, emptied)")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    p.add_argument("--step-s", type=float, default=0.2, help="seconds between half-pip price steps")
    args = p.parse_args()
    if args.accounts < 2:
        p.error("--accounts must be >= 2")
    bad = set(args.paths.split(",")) - {"push", "poll"}
    if bad:
        p.error(f"unknown path(s): {', '.join(sorted(bad))}")
    return args


def setup_environment(args) -> None:
    from _setup import setup_django

    setup_django(pg=args.pg, db=args.db, redis_url=args.redis_url, env={"SIMULATION_MODE": "true"})


def reset_state(redis_url: str) -> None:
    import redis

    from accounts.models import Account, AuditLog, EquitySnapshot
    from orders.models import Order, Position, Trade
    from signals.models import Signal

    for model in (Trade, Order, Position, Signal, EquitySnapshot, AuditLog, Account):
        model.objects.all().delete()
    redis.Redis.from_url(redis_url).flushdb()


def create_accounts(sim, n: int) -> list:
    from django.utils import timezone

    from accounts.models import Account
    from orders.broker import client_for

    emails = [f"state-{i}-{time.time_ns()}@sim.test" for i in range(n)]
    created = sim.control.create_accounts([{"email": e, "password": "pw", "balance": "10000"} for e in emails])
    now = timezone.now()
    rows = [Account(name=f"state-{e}", platform_url=sim.url, email=e, password="pw", system_uuid=c["systemUuid"],
                    trading_account_id=c["tradingAccountId"], balance=Decimal("10000"), equity=Decimal("10000"),
                    balance_updated_at=now)
            for e, c in zip(emails, created, strict=True)]
    Account.objects.bulk_create(rows, batch_size=500)
    accounts = list(Account.objects.filter(name__in=[r.name for r in rows]).order_by("pk"))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda a: client_for(a).system_uuid, accounts))
    return accounts


def open_positions(accounts, symbol, rng: random.Random) -> None:
    """One position per account at the broker and in the database (what the order engine records)."""
    from django.db import close_old_connections
    from django.utils import timezone

    from orders.broker import client_for
    from orders.models import Position

    bid = Decimal(str(BASE))
    ask = bid + Decimal("0.00008")

    def one(i_account):
        i, account = i_account
        side = "BUY" if i % 2 == 0 else "SELL"
        entry = ask if side == "BUY" else bid
        sl_pips, tp_pips = rng.randint(3, 30), rng.randint(3, 30)
        # as the walk goes UP: BUY positions reach their TP, SELL positions their SL
        sl = entry - sl_pips * PIP if side == "BUY" else entry + sl_pips * PIP
        tp = entry + tp_pips * PIP if side == "BUY" else entry - tp_pips * PIP
        client = client_for(account)
        client.open_position("EURUSD", side, Decimal("0.01"), sl=sl, tp=tp)
        (bp,) = client.open_positions()
        close_old_connections()
        return Position(account=account, symbol=symbol, broker_position_id=bp.id, side=side, volume=bp.volume,
                        open_price=bp.open_price, opened_at=bp.open_time or timezone.now(), stop_loss=sl,
                        take_profit=tp)

    with ThreadPoolExecutor(16) as pool:
        rows = list(pool.map(one, enumerate(accounts)))
    Position.objects.bulk_create(rows, batch_size=500)


def walk_until_closed(sim, n_positions: int, step_s: float, timeout_s: float = 180.0) -> float:
    from orders.models import Position

    price = Decimal(str(BASE))
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if price < Decimal(str(BASE)) + 32 * PIP:
            price += PIP / 2
            sim.control.market(prices={"EURUSD": float(price)})
        if not Position.objects.filter(status=Position.Status.OPEN).exists():
            break
        time.sleep(step_s)
    return time.monotonic() - started


def percentile(values, q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def run_path(path: str, args, sim, accounts, symbol) -> dict:
    from django.conf import settings

    from orders import state_sync
    from orders.broker import get_redis
    from orders.models import Position
    from workers.account_stream import AccountStream, BudgetedPoller, PollBudget

    rng = random.Random(7)
    sim.control.market(paused=True, prices={"EURUSD": BASE})
    Position.objects.all().delete()
    get_redis().delete(state_sync.STATE_LAG_KEY)
    open_positions(accounts, symbol, rng)
    n = len(accounts)
    worker = AccountStream(db_threads=8) if path == "push" else BudgetedPoller(PollBudget.from_settings(), threads=16)
    stop = threading.Event()
    th = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    requests_before = sim.control.stats()["requests"]
    th.start()
    worker.ready.wait(60)
    if path == "push":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(1 for c in worker.conns.values() if c.connects) < n:
            time.sleep(0.2)
    else:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(1 for s in list(worker.accounts.values()) if s.polls) < n:
            time.sleep(0.2)
    t0 = time.monotonic()
    polls0 = worker.stats.get("polls", 0)
    requests_walk0 = sim.control.stats()["requests"]
    elapsed = walk_until_closed(sim, n, args.step_s)
    polls = worker.stats.get("polls", 0) - polls0
    requests_walk = sim.control.stats()["requests"] - requests_walk0
    stop.set()
    th.join(30)
    lags = state_sync.recent_lags_ms(limit=n + 10)
    still_open = Position.objects.filter(status=Position.Status.OPEN).count()
    minutes = (time.monotonic() - t0) / 60
    out = {"path": path, "accounts": n, "closed": len(lags), "still_open": still_open, "walk_s": elapsed,
           "lag_median_s": statistics.median(lags) / 1000 if lags else float("nan"),
           "lag_p95_s": percentile(lags, 0.95) / 1000 if lags else float("nan"),
           "lag_max_s": max(lags) / 1000 if lags else float("nan"),
           "requests_per_account_per_min": requests_walk / n / minutes if minutes else 0.0,
           "setup_requests": requests_walk0 - requests_before}
    if path == "poll":
        out["polls_per_account_per_min"] = polls / n / minutes
        out["budget_per_account_per_min"] = settings.ACCOUNT_POLL_MAX_PER_MIN
        out["host_cap_per_s"] = settings.ACCOUNT_POLL_HOST_MAX_PER_S
        out["host_rate_per_s"] = polls / (minutes * 60)
    return out


def report(r: dict) -> None:
    sys.stdout.reconfigure(line_buffering=True)
    print(f"\n== {r['path']}: {r['accounts']} accounts, {r['closed']} closes measured, {r['still_open']} left open, "
          f"walk {r['walk_s']:.1f} s")
    print(f"   broker close -> database: median {r['lag_median_s']:.3f} s, p95 {r['lag_p95_s']:.3f} s, "
          f"max {r['lag_max_s']:.3f} s")
    target = 1.0 if r["path"] == "push" else 5.0
    print(f"   p95 / target ({target:.0f} s): {r['lag_p95_s'] / target:.2f}")
    print(f"   requests to the broker per account per minute during the walk: {r['requests_per_account_per_min']:.1f}")
    if r["path"] == "poll":
        per_acct = r["polls_per_account_per_min"]
        print(f"   polls per account per minute: {per_acct:.1f} = {per_acct / r['budget_per_account_per_min']:.2f} "
              f"of the per-account budget ({r['budget_per_account_per_min']:.0f}/min), "
              f"{per_acct / 500:.3f} of the broker's 500/min")
        print(f"   polls per second on the host: {r['host_rate_per_s']:.1f} = "
              f"{r['host_rate_per_s'] / r['host_cap_per_s']:.2f} of the host cap ({r['host_cap_per_s']:.0f}/s)")


def main():
    args = parse_args()
    setup_environment(args)
    from django.conf import settings

    from marketdata.models import Symbol
    from matchtrader.simulator.testing import running_simulator
    from workers.feed import FeedConfig, FeedWorker
    from workers.management.commands.run_feed import ensure_sim_feed_account

    reset_state(args.redis_url)
    with running_simulator(seed=11, tick_rate=5.0, history_minutes=5, surges_per_hour=0.0) as sim:
        settings.SIMULATOR_URL = sim.url
        sim.control.market(paused=True, prices={"EURUSD": BASE})
        symbol, _ = Symbol.objects.update_or_create(
            name="EURUSD", defaults=dict(enabled=True, tick_size=Decimal("0.00001"),
                                         lot_step=Decimal("0.01"), min_volume=Decimal("0.01"),
                                         max_volume=Decimal("100"), contract_size=Decimal("100000"),
                                         base_currency="EUR", quote_currency="USD"))
        cfg = FeedConfig.from_settings(base_url=sim.url, warmup_minutes=0)
        ensure_sim_feed_account(cfg)
        feed = FeedWorker(cfg, symbol_source=lambda: {"EURUSD"}, warmup=False)
        print(f"creating {args.accounts} accounts ...", flush=True)
        accounts = create_accounts(sim, args.accounts)
        with feed.running(ready_timeout=30):
            for path in args.paths.split(","):
                report(run_path(path, args, sim, accounts, symbol))


if __name__ == "__main__":
    main()
