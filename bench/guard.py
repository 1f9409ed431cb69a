"""Benchmark of the prop breach guard: one guard pass over N accounts holding positions, judged on the
state the account stream keeps (``kept``) vs read from the broker (``broker``, the old way and the
fallback when that state is stale).

    .venv/bin/python bench/guard.py [--accounts 100] [--latency-ms 20] [--rounds 5]
                                    [--redis-url redis://127.0.0.1:6379/7] [--db tradeops_bench_guard]

In one run it creates (or reuses) a throw-away database and its own Redis db, starts the exchange
simulator in this process with ``--latency-ms`` on every broker request (a real broker is tens of
ms away), opens one EURUSD position per account (recorded as the engine would), writes the feed's
quote, and then alternates, ``--rounds`` times, a pass in each mode (the baseline in the same run):

* ``broker``: the stream's "confirmed" marks removed, so every account is stale and read (balance
  + open positions) — what the guard did for every account before;
* ``kept``: every account confirmed just now (as the stream does every second).

It prints, per mode, the median wall time of a pass and the broker requests it made, and the
ratio kept / broker. The beat runs a pass every 2 s: a pass slower than that falls behind.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--accounts", type=int, default=100)
    p.add_argument("--latency-ms", type=float, default=20.0, help="added to every simulator request")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/7", help="a Redis db nobody else uses")
    p.add_argument("--db", default="tradeops_bench_guard", help="throw-away database (created, emptied)")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    return p.parse_args()


def setup_environment(args) -> None:
    from _setup import setup_django

    setup_django(pg=args.pg, db=args.db, redis_url=args.redis_url, env={"SIMULATION_MODE": "true"})


def main() -> None:
    args = parse_args()
    setup_environment(args)
    from django.utils import timezone

    from accounts.models import Account
    from marketdata import redis_keys
    from marketdata.models import Symbol
    from matchtrader.simulator.testing import running_simulator
    from orders import broker, state_sync
    from orders.models import Position
    from orders.recording import record_open
    from prop import guard

    Position.objects.all().delete()
    Account.objects.all().delete()
    r = broker.get_redis()
    r.delete(state_sync.STATE_SEEN_KEY)
    symbol, _ = Symbol.objects.update_or_create(name="EURUSD", defaults=dict(
        digits=5, tick_size=Decimal("0.00001"), lot_step=Decimal("0.01"), min_volume=Decimal("0.01"),
        max_volume=Decimal("100"), contract_size=Decimal("100000"), enabled=True, base_currency="EUR",
        quote_currency="USD"))
    from django.conf import settings

    with running_simulator(seed=3, surges_per_hour=0.0, history_minutes=1) as sim:
        settings.SIMULATOR_URL = sim.url  # simulation accounts reach the simulator here
        broker.reset_clients()
        sim.control.market(paused=True, prices={"EURUSD": 1.10000})
        made = sim.control.create_accounts([{"email": f"g{i}@bench.test", "password": "pw-123", "balance": "10000"}
                                            for i in range(args.accounts)])
        now = timezone.now()
        ids = []
        for i, c in enumerate(made):
            acct = Account.objects.create(name=f"guard-bench-{i}", platform_url=sim.url, broker_id="0",
                                          email=f"g{i}@bench.test", password="pw-123", system_uuid=c["systemUuid"],
                                          trading_account_id=c["tradingAccountId"], balance=Decimal("10000"),
                                          equity=Decimal("10000"), balance_updated_at=now)
            client = broker.client_for(acct)
            client.open_position("EURUSD", "BUY", Decimal("0.10"))
            (bp,) = client.open_positions()
            record_open(None, acct.pk, symbol.pk, bp)
            ids.append(acct.pk)
        sim.control.set_faults(latency_ms=args.latency_ms)

        def quote():
            now_ms = int(time.time() * 1000)
            r.hset(redis_keys.quote("EURUSD"), mapping={"bid": "1.09990", "ask": "1.09998", "ts_ms": now_ms,
                                                         "recv_ms": now_ms})

        def one_pass(mode: str) -> tuple[float, int]:
            quote()
            if mode == "kept":
                Account.objects.filter(pk__in=ids).update(balance_updated_at=timezone.now())
                state_sync.mark_seen_many({pk: int(time.time() * 1000) for pk in ids})
            else:
                r.delete(state_sync.STATE_SEEN_KEY)
            before = sim.sim.stats["requests"]
            t0 = time.perf_counter()
            for pk in ids:
                guard.check_account(pk)
            return time.perf_counter() - t0, sim.sim.stats["requests"] - before

        one_pass("broker")  # warm-up: day-start snapshots, sessions, clients
        one_pass("kept")
        results: dict[str, list] = {"broker": [], "kept": []}
        for _ in range(args.rounds):
            for mode in ("broker", "kept"):
                results[mode].append(one_pass(mode))
        load = os.getloadavg()
        print(f"accounts={args.accounts} latency_ms={args.latency_ms} rounds={args.rounds} "
              f"load={load[0]:.2f},{load[1]:.2f},{load[2]:.2f}")
        med = {}
        for mode, rows in results.items():
            med[mode] = statistics.median(t for t, _ in rows)
            reqs = statistics.median(n for _, n in rows)
            print(f"  {mode:6s} pass median {med[mode] * 1000:8.1f} ms  broker requests/pass {reqs:.0f}"
                  f"  ({reqs / args.accounts:.1f}/account)")
        print(f"  ratio kept/broker (wall time): {med['kept'] / med['broker']:.3f}")


if __name__ == "__main__":
    main()
