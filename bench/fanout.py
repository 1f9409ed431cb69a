"""Benchmark of the order fan-out: one signal → one order on every account, through a real worker.

    .venv/bin/python bench/fanout.py [--accounts 100,1000] [--pool prefork] [--concurrency 4]
                                     [--redis-url redis://127.0.0.1:6379/6] [--db tradeops_bench_orders]
                                     [--api platform|trader|mixed]

``--api``: which Match-Trader API the accounts are reached through -- the Platform API (default),
the Trader API (a bearer token per account, an Idempotency-Key per order), or a mixed fleet (every
other account on the Trader API) in the same fan-out.

The default worker is the Procfile's: prefork, 4 processes, prefetch 1.

In one run it
1. creates (or reuses) a throw-away PostgreSQL database and migrates it, uses its own Redis db,
   starts the exchange simulator in this process (127.0.0.1, ephemeral port) and ONE real
   ``celery worker`` subprocess consuming the "orders" and "default" queues;
2. creates the accounts (simulator + database) and logs every account in once (tokens land in
   Redis, as in production after the first order: no per-order login);
3. measures the worker's rate for no-op tasks (``tradeops.ping``, results stored like orders);
4. for each account count: dispatches one signal and times signal → every order terminal in the
   database, and → every order executed in the simulator (its execution counter); the CPU the
   worker, this process (simulator) and PostgreSQL used meanwhile; then waits until every fill is
   linked to its position (the follow-up work), so each measurement starts from a quiet worker.

Prints the figures and the ratio to the no-op rate. Targets: 1,000 accounts ≤ 2 s, and an order
rate ≥ 0.5 × the no-op rate.
"""

from __future__ import annotations

import argparse
import os
import signal as signals
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--accounts", default="100,1000", help="comma-separated account counts (default 100,1000)")
    p.add_argument("--pool", default="prefork", choices=["threads", "prefork", "solo", "gevent"])
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--noop", type=int, default=1000, help="no-op tasks for the reference rate")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/6", help="a Redis db nobody else uses")
    p.add_argument("--db", default="tradeops_bench_orders", help="throw-away database (created, emptied)")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    p.add_argument("--keep-worker-log", action="store_true")
    p.add_argument("--api", default="platform", choices=["platform", "trader", "mixed"],
                   help="the accounts' broker API (mixed: every other account on the Trader API)")
    p.add_argument("--latency-ms", type=float, default=50.0,
                   help="last run: the simulator answers every order this much later (0: skip the run)")
    p.add_argument("--no-concurrent-signals", dest="concurrent_signals", action="store_false",
                   help="skip the last run: two signals on two symbols at once on the largest count")
    return p.parse_args()


def setup_environment(args) -> None:
    from _setup import setup_django

    setup_django(pg=args.pg, db=args.db, redis_url=args.redis_url, env={"SIMULATION_MODE": "true", "ORDERS_RECONCILE_ON_WORKER_READY": "false"})


def check_redis_db_is_ours(redis_url: str) -> None:
    """Another worker on the same Redis db would consume our messages and skew every figure."""
    import redis

    r = redis.Redis.from_url(redis_url)
    db = r.connection_pool.connection_kwargs.get("db", 0)
    others = [c for c in r.client_list() if int(c.get("db", -1)) == db and c.get("id") != str(r.client_id())]
    if others:
        raise SystemExit(f"Redis db {db} has {len(others)} other client(s) (another worker?); pick a free db "
                         f"with --redis-url")


def reset_state(redis_url: str) -> None:
    import redis

    from accounts.models import Account, AuditLog, EquitySnapshot
    from orders.models import Order, Position, Trade
    from signals.models import Signal

    Trade.objects.all().delete()
    Order.objects.all().delete()
    Position.objects.all().delete()
    Signal.objects.all().delete()
    EquitySnapshot.objects.all().delete()
    AuditLog.objects.all().delete()
    Account.objects.all().delete()
    redis.Redis.from_url(redis_url).flushdb()


def start_worker(args, sim_url: str, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, SIMULATOR_URL=sim_url, ORDERS_UNKNOWN_SETTLE_S="0.3")
    cmd = [sys.executable, "-m", "celery", "-A", "tradeops", "worker", "-Q", "orders,default", "--pool", args.pool,
           "--concurrency", str(args.concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
           "-n", f"bench-{os.getpid()}@%h", "--loglevel", os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING")]
    # e.g. BENCH_WORKER_PREFIX="py-spy record -f raw -o /tmp/worker.txt --" to profile the worker
    cmd = os.environ.get("BENCH_WORKER_PREFIX", "").split() + cmd
    log = open(log_path, "wb")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_worker_ready(app, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    from tradeops.celery import ping

    while time.monotonic() < deadline:
        try:
            ping.apply_async(("ready",), queue="default").get(timeout=5)
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit("worker did not start")


def create_accounts(sim, n: int, symbol, api: str = "platform") -> list:
    from django.utils import timezone

    from accounts.models import Account
    from orders.broker import client_for

    emails = [f"bench-{i}-{time.time_ns()}@sim.test" for i in range(n)]
    created = sim.control.create_accounts([{"email": e, "password": "pw", "balance": "10000"} for e in emails])
    now = timezone.now()
    rows = [Account(name=f"bench-{e}", platform_url=sim.url, email=e, password="pw", system_uuid=c["systemUuid"],
                    trading_account_id=c["tradingAccountId"], balance=Decimal("10000"), equity=Decimal("10000"),
                    balance_updated_at=now, max_open_positions=50, max_volume_per_symbol=Decimal("100"),
                    daily_loss_limit=Decimal("100000"))
            for e, c in zip(emails, created, strict=True)]
    for i, (row, c) in enumerate(zip(rows, created, strict=True)):
        if api == "trader" or (api == "mixed" and i % 2):
            row.api, row.email, row.password = "trader", "", ""
            row.trader_api_token = sim.control.issue_trader_token(c["systemUuid"])
    accounts = Account.objects.bulk_create(rows, batch_size=500)
    accounts = list(Account.objects.filter(name__in=[r.name for r in rows]))
    # one login per Platform API account, tokens into Redis (what the first order would do); a
    # Trader API account has no login
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda a: client_for(a).system_uuid, [a for a in accounts if a.api == "platform"]))
    return accounts


def time_noop(n: int, redis_url: str) -> float:
    """Rate of ``tradeops.ping`` through the same worker: time from the first send until every
    result is stored (polled in batches with MGET, so the measurement does not slow the worker)."""
    import redis

    from tradeops.celery import ping

    r = redis.Redis.from_url(redis_url)
    t0 = time.perf_counter()
    with ping.app.producer_or_acquire() as producer:
        ids = [ping.apply_async((i,), queue="default", producer=producer).id for i in range(n)]
    keys = [f"celery-task-meta-{i}" for i in ids]
    deadline = t0 + 300
    while time.perf_counter() < deadline:
        if all(v is not None for v in r.mget(keys)):
            break
        time.sleep(0.01)
    return n / (time.perf_counter() - t0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores, from /proc/stat)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(x) for x in parts]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s() -> float:
    """CPU of every PostgreSQL process (the worker's sessions do their queries there)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if Path(f"/proc/{d.name}/comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(d.name))
            except OSError:
                pass
    return total


def worker_pids(worker: subprocess.Popen) -> list[int]:
    """The worker and its pool processes (prefork), found by process group."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == worker.pid:
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids or [worker.pid]


def buy_signal(symbol):
    """A BUY at the frozen market with a 20-pip (EURUSD) / 50-pip (USDJPY) stop."""
    from signals.models import Signal

    if symbol.name == "USDJPY":
        prices = dict(entry_price=Decimal("150.000"), stop_loss=Decimal("149.500"), take_profit=Decimal("151.000"))
    else:
        prices = dict(entry_price=Decimal("1.10000"), stop_loss=Decimal("1.09800"), take_profit=Decimal("1.10400"))
    return Signal.objects.create(symbol=symbol, side="BUY", strength=Decimal("0.9"), **prices)


def time_signal(sim, symbols, n_accounts: int, worker=None) -> dict:
    """Dispatch one signal per symbol at the same moment; time until every order is terminal."""
    from orders.lifecycle import TERMINAL
    from orders.models import Order
    from orders import publish

    before_exec = sim.control.stats().get("executions", 0)
    signals_ = [buy_signal(symbol) for symbol in symbols]
    expected = n_accounts * len(signals_)
    pids = worker_pids(worker) if worker is not None else []
    cpu0 = sum(cpu_seconds(p) for p in pids)
    own0 = time.process_time()
    busy0, pg0 = machine_busy_s(), postgres_cpu_s()
    t0 = time.perf_counter()
    for signal in signals_:
        publish.dispatch_signal(signal.pk)
    executed_at = terminal_at = None
    deadline = t0 + 300
    mine = Order.objects.filter(signal__in=signals_)
    while time.perf_counter() < deadline and (terminal_at is None or executed_at is None):
        now = time.perf_counter()
        if terminal_at is None:
            done = mine.filter(status__in=TERMINAL).count()
            if done >= expected:
                terminal_at = now
        if executed_at is None:
            execs = sim.control.stats().get("executions", 0) - before_exec
            if execs >= expected:
                executed_at = now
        time.sleep(0.01)
    cpu = {"worker_cpu_s": sum(cpu_seconds(p) for p in pids) - cpu0, "bench_cpu_s": time.process_time() - own0,
           "machine_busy_s": machine_busy_s() - busy0, "postgres_cpu_s": postgres_cpu_s() - pg0}
    # follow-up: every fill linked to its broker position (orders.link_fills, follow-up priority);
    # waiting for it also starts the next measurement from a quiet worker
    linked_at = None
    while time.perf_counter() < deadline:
        if not mine.filter(status="filled", position__isnull=True).exists():
            linked_at = time.perf_counter()
            break
        time.sleep(0.05)
    from django.db.models import Count

    statuses = dict(mine.values_list("status").annotate(n=Count("id")))
    terminal_s = (terminal_at or time.perf_counter()) - t0
    return {"accounts": n_accounts, "signals": len(signals_), "orders": expected, "terminal_s": terminal_s,
            "executed_s": (executed_at - t0) if executed_at else None,
            "linked_s": (linked_at - t0) if linked_at else None,
            "orders_per_s": expected / terminal_s, "statuses": statuses, **cpu}


def report(r: dict, noop_rate: float) -> None:
    ex = f"{r['executed_s']:.2f}s" if r["executed_s"] is not None else "n/a"
    what = f"{r['accounts']:>5} accounts" + (f" × {r['signals']} signals at once" if r["signals"] > 1 else "")
    if r.get("latency_ms"):
        what += f", broker answering each order in {r['latency_ms']:.0f} ms"
    print(f"{what}: signal → all orders terminal in DB {r['terminal_s']:.2f}s, "
          f"→ all executed in the simulator {ex}; {r['orders_per_s']:,.0f} orders/s "
          f"= {r['orders_per_s'] / noop_rate:.2f} × no-op rate; statuses {r['statuses']}")
    print(f"       CPU until all terminal: worker {r['worker_cpu_s']:.2f}s "
          f"({r['worker_cpu_s'] / r['terminal_s']:.2f} cores, {r['worker_cpu_s'] / r['orders'] * 1000:.2f} "
          f"ms/order), this process (simulator + polling) {r['bench_cpu_s']:.2f}s, PostgreSQL "
          f"{r['postgres_cpu_s']:.2f}s; whole machine {r['machine_busy_s'] / r['terminal_s']:.2f} of "
          f"{os.cpu_count()} cores busy")
    linked = f"{r['linked_s']:.2f}s" if r["linked_s"] is not None else "not within the deadline"
    print(f"       follow-up: every fill linked to its broker position {linked} after the signal")


def main():
    args = parse_args()
    setup_environment(args)
    counts = [int(x) for x in args.accounts.split(",") if x.strip()]
    from matchtrader.simulator.testing import running_simulator
    from tests.factories import make_symbol
    from tradeops.celery import app

    check_redis_db_is_ours(args.redis_url)
    reset_state(args.redis_url)
    log_path = Path(f"/tmp/bench-fanout-worker-{os.getpid()}.log")
    with running_simulator(seed=11, tick_rate=2.0, history_minutes=5, surges_per_hour=0.0,
                           rate_limit_per_min=0) as sim:
        sim.control.market(paused=True, prices={"EURUSD": 1.10000, "USDJPY": 150.000})
        from django.conf import settings

        settings.SIMULATOR_URL = sim.url  # the tokens' Redis key includes the broker URL
        symbol = make_symbol("EURUSD", base_currency="EUR", quote_currency="USD")
        second = make_symbol("USDJPY", digits=3, tick_size=Decimal("0.001"), base_currency="USD",
                             quote_currency="JPY")
        print(f"setting up {max(counts)} accounts ...", flush=True)
        t = time.perf_counter()
        pool = create_accounts(sim, max(counts), symbol, api=args.api)
        print(f"  accounts on the {args.api} API", flush=True)
        print(f"  accounts created and logged in in {time.perf_counter() - t:.1f}s", flush=True)
        worker = start_worker(args, sim.url, log_path)

        def stop_worker(*_):
            if worker.poll() is None:
                os.killpg(worker.pid, signals.SIGTERM)
            raise SystemExit(1)

        signals.signal(signals.SIGTERM, stop_worker)  # never leave an orphan worker behind
        try:
            wait_worker_ready(app)
            noop_rate = time_noop(args.noop, args.redis_url)
            print(f"no-op tasks ({args.pool} x{args.concurrency}): {noop_rate:,.0f} tasks/s", flush=True)
            from accounts.models import Account

            results = []
            for n in [min(counts)] + counts:  # first run warms the worker (connections, clients)
                ids = [a.pk for a in pool[:n]]
                Account.objects.filter(pk__in=ids).update(enabled=True)
                Account.objects.exclude(pk__in=ids).update(enabled=False)
                results.append(time_signal(sim, [symbol], n, worker))
            if args.concurrent_signals:
                # two signals on two symbols at the same moment: their chunks hold the same
                # accounts' locks, so half of them find their accounts busy and queue again
                results.append(time_signal(sim, [symbol, second], max(counts), worker))
            if args.latency_ms:
                # a real broker is tens of ms away: the fan-out must overlap its calls
                sim.control.set_faults(latency_ms=args.latency_ms, scope="write")
                try:
                    results.append(dict(time_signal(sim, [symbol], max(counts), worker), latency_ms=args.latency_ms))
                finally:
                    sim.control.set_faults(latency_ms=0.0, scope="all")
            warm, *measured = results
            print(f"warm-up {warm['accounts']} accounts: {warm['terminal_s']:.2f}s")
            for r in measured:
                report(r, noop_rate)
            big = [r for r in measured if r["signals"] == 1 and not r.get("latency_ms")][-1]
            print(f"target 1,000 accounts ≤ 2 s: {'MET' if big['terminal_s'] <= 2 else 'NOT MET'} "
                  f"({big['terminal_s']:.2f}s for {big['accounts']}); "
                  f"≥ 0.5 × no-op rate: {'MET' if big['orders_per_s'] >= 0.5 * noop_rate else 'NOT MET'}")
        finally:
            os.killpg(worker.pid, signals.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signals.SIGKILL)
            if not args.keep_worker_log:
                log_path.unlink(missing_ok=True)
            else:
                print(f"worker log: {log_path}")


if __name__ == "__main__":
    main()
