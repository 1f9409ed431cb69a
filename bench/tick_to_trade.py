"""Tick to trade: from the first tick of a surge at the venue to the last broker acknowledgement.

    .venv/bin/python bench/tick_to_trade.py [--surges 40] [--accounts 100] [--symbols 8] [--tick-rate 50]
                                            [--redis-url redis://127.0.0.1:6379/6] [--db tradeops_bench_t2t]

The real processes, as the Procfile runs them: the exchange simulator (this process, 127.0.0.1,
ephemeral port, ``--tick-rate`` ticks/s per symbol), ``manage.py run_feed``, ``celery beat`` (the
analysis entry, every 1 s), ``celery worker -Q analysis --pool threads -c 2`` and the orders worker
(``-Q orders,default``, prefork, 4 processes) — all subprocesses — on a throw-away PostgreSQL
database and the given Redis db; ``--accounts`` simulator accounts with their database rows, logged
in once beforehand (tokens in Redis, as after the first order).

Two phases in the same run, each of ``--surges`` surges planted one at a time through the
simulator's control API (``POST /_sim/surge``, 3 s at 6× activity, on the symbols in turn, at a
random phase of the beat period, a symbol again only once its last surge left the strategy's
baseline window): the feed started with the event path OFF
(``ANALYSIS_EVENT_PATH=false``: the beat alone finds surges), then restarted with it ON (the
strategy pre-screen wakes the analysis). For each surge, from the venue time the surge starts (the
simulator records its first surge tick's venue time; it follows the planting by up to one tick
interval, which runs before 2026-12-06 10:45 still counted):

- → signal: the signal's ``signal`` hop;
- → first / last broker acknowledgement: the earliest / latest ``answer`` hop of its FILLED orders
  (every account's order must be filled; a surge with an order skipped — e.g. ``price_moved`` —,
  rejected or failed is counted and reported, not measured: a skipped order is no acknowledgement);
  the orders sent and their outcomes (status, reason) are printed per phase;

p50 / p95 per phase, the ratio OFF / ON (the headline), the ON phase's per-hop medians (where the
time goes), how many ON signals came through the event path, how the wake-ups ended
(``signals:wake_outcomes``) and, per phase, every surge's time to signal with the time of the tick
whose wake-up signalled, and the hops of the six slowest. Monotonic hops are put on the
venue's time line with the signal's wall/monotonic anchor (``signals.hops``): same host.

Targets (2 cores): surge → signal p95 ≤ 150 ms; surge → last of 100 acknowledgements p95 ≤ 500 ms.
The machine's load is printed with the figures (load average before and after).
"""

from __future__ import annotations

import argparse
import os
import random
import signal as os_signal
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matchtrader.simulator.instruments import DEFAULT_SYMBOLS, spec_for  # noqa: E402

# A 20 s baseline: the symbols surge in turn, each again after >= 27 s (SAME_SYMBOL_GAP_S), when its
# last surge has left the baseline (a surge inside the baseline makes the strategy rightly reluctant, which would
# measure the strategy, not the latency); a short cool-down; no filters that depend on the random
# pre-generated history.
PARAMS = {
    "baseline_window_s": 20,
    "min_baseline_s": 8,
    "recent_window_s": 2,
    "cooldown_ms": 4_000,
    "use_swing_levels": False,
    "rsi_overbought": 100.0,
    "rsi_oversold": 0.0,
}
# the Procfile's "analysis" worker: two threads, so a wake-up never waits behind a beat pass
ANALYSIS_POOL = ("--pool", "threads", "--concurrency", "2")
SURGE_S = 3.0
SURGE_INTENSITY = 6.0  # the simulator's: trades per tick and their size both scale with it
# a symbol surges again only once its last surge (and the recent window after it) left the baseline
SAME_SYMBOL_GAP_S = PARAMS["baseline_window_s"] + SURGE_S + PARAMS["recent_window_s"] + 2


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--surges", type=int, default=40, help="surges per phase (>= 40 for the p95)")
    p.add_argument("--accounts", type=int, default=100)
    p.add_argument("--symbols", type=int, default=8, help=f"symbols streamed and surged in turn (<= {len(DEFAULT_SYMBOLS)})")
    p.add_argument("--tick-rate", type=float, default=50.0, help="ticks per second per symbol at the venue")
    p.add_argument("--phases", default="off,on", help="event path off/on, in this order")
    p.add_argument("--max-entry-deviation", default=None,
                   help="ORDERS_MAX_ENTRY_DEVIATION of the orders worker (default: the shipped value); a surge "
                        "moves the price fast, and orders skipped as price_moved give no acknowledgement")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/6", help="an EMPTY Redis database nobody uses")
    p.add_argument("--db", default="tradeops_bench_t2t", help="throw-away database (created, emptied)")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    a = p.parse_args()
    if not 1 <= a.symbols <= len(DEFAULT_SYMBOLS):
        p.error(f"--symbols must be 1..{len(DEFAULT_SYMBOLS)}")
    if a.surges < 1 or a.accounts < 1 or a.tick_rate <= 0:
        p.error("--surges, --accounts and --tick-rate must be positive")
    if not set(a.phases.split(",")) <= {"on", "off"}:
        p.error("--phases: a comma-separated list of on/off")
    return a


def setup_environment(args) -> None:
    from _setup import setup_django

    setup_django(pg=args.pg, db=args.db, redis_url=args.redis_url, env={"SIMULATION_MODE": "true", "ORDERS_RECONCILE_ON_WORKER_READY": "false"}, own_celery_urls=True)


def reset_state(names) -> None:
    import importlib

    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    from accounts.models import Account, AuditLog, EquitySnapshot
    from marketdata.models import Symbol
    from orders.models import Order, Position, Trade
    from signals.models import Signal, StrategyConfig

    Trade.objects.all().delete()
    Order.objects.all().delete()
    Position.objects.all().delete()
    Signal.objects.all().delete()
    EquitySnapshot.objects.all().delete()
    AuditLog.objects.all().delete()
    Account.objects.all().delete()
    StrategyConfig.objects.all().delete()
    Symbol.objects.update(enabled=False)
    migration = importlib.import_module("signals.migrations.0002_beat_schedule")
    PeriodicTask.objects.exclude(name=migration.TASK_NAME).delete()  # the analysis heartbeat only
    migration.create_schedule(apps, None)
    for name in names:
        spec = spec_for(name)
        Symbol.objects.update_or_create(name=name, defaults=dict(
            digits=spec.price_precision, tick_size=Decimal(1).scaleb(-spec.price_precision), enabled=True,
            contract_size=spec.contract_size, min_volume=spec.volume_min, max_volume=spec.volume_max,
            lot_step=spec.volume_step, base_currency=spec.base, quote_currency=spec.quote))
    StrategyConfig.objects.create(params=PARAMS)


def create_accounts(sim, n: int) -> list:
    """n accounts able to take every surge's order (large balance, small risk, no position cap)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.utils import timezone

    from accounts.models import Account
    from orders.broker import client_for

    emails = [f"t2t-{i}-{time.time_ns()}@sim.test" for i in range(n)]
    created = sim.control.create_accounts([{"email": e, "password": "pw", "balance": "10000000", "leverage": 500}
                                           for e in emails])
    now = timezone.now()
    rows = [Account(name=f"t2t-{i}", platform_url=sim.url, email=e, password="pw", system_uuid=c["systemUuid"],
                    trading_account_id=c["tradingAccountId"], balance=Decimal("10000000"),
                    equity=Decimal("10000000"), balance_updated_at=now, max_open_positions=10_000,
                    risk_per_trade_pct=Decimal("0.01"), max_volume_per_symbol=Decimal("100000"),
                    daily_loss_limit=Decimal("10000000"))
            for i, (e, c) in enumerate(zip(emails, created, strict=True))]
    Account.objects.bulk_create(rows, batch_size=500)
    accounts = list(Account.objects.filter(name__startswith="t2t-"))
    with ThreadPoolExecutor(16) as pool:  # one login per account: tokens into Redis
        list(pool.map(lambda a: client_for(a).system_uuid, accounts))
    return accounts


class Procs:
    def __init__(self, logs: Path):
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, key: str, cmd: list[str], **env) -> None:
        log = open(self.logs / f"{key}.log", "ab")
        self.procs[key] = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, **env), stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, *keys: str) -> None:
        chosen = [self.procs.pop(k) for k in (keys or list(self.procs)) if k in self.procs]
        for p in chosen:
            if p.poll() is None:
                p.send_signal(os_signal.SIGTERM)
        for p in chosen:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def alive(self) -> list[subprocess.Popen]:
        return list(self.procs.values())


def wait_for(predicate, timeout: float, what: str, procs=(), interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"{p.args[1:5]} exited ({p.returncode}) while waiting for {what}")
        time.sleep(interval)
    return None


def pct(values, q) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def to_wall(hops: dict, mono: float) -> float:
    wall, at_mono = hops["anchor"]
    return wall + (float(mono) - at_mono)


def run_phase(phase: str, args, sim, names, procs: Procs, py: str, last_surge: dict[str, float]) -> dict:
    """One phase's surges. ``last_surge`` (symbol → monotonic time of its last planting) is shared by
    the phases: the first surges of a phase wait for the previous phase's last surge on their
    symbol to leave the baseline too (3 of 40 ON surges were caught only by the beat without it)."""
    import redis as redis_lib
    from django.db import close_old_connections

    from orders.lifecycle import TERMINAL
    from orders.models import Order
    from signals import hops as hops_mod
    from signals.models import Signal

    r = redis_lib.Redis.from_url(args.redis_url)
    procs.start("feed", [py, "manage.py", "run_feed"], FEED_BASE_URL=sim.url, FEED_WS_URL=sim.ws_url,
                FEED_EMAIL="feed@t2t.test", FEED_PASSWORD="feed-pw-1", FEED_SIM_AUTO_ACCOUNT="true",
                FEED_WARMUP_MINUTES="60", ANALYSIS_EVENT_PATH="true" if phase == "on" else "false")
    # the pre-screens' baseline (min_baseline_s) and the analysis' need a few seconds of ticks
    if not wait_for(lambda: r.exists("signals:analyze:last_run") and all(
            r.xlen(f"md:ticks:{n}") > 0 for n in names), 90, "ticks of every symbol and a beat pass", procs.alive()):
        raise SystemExit("no ticks / no analysis pass within 90 s: see the logs in " + str(procs.logs))
    time.sleep(PARAMS["min_baseline_s"] + 4)
    out = {"signal": [], "first": [], "last": [], "missed": 0, "partial": 0, "paths": {}, "steps": {}, "surges": [],
           "statuses": {}}
    r.delete("signals:wake_outcomes")
    for i in range(args.surges):
        close_old_connections()
        symbol = names[i % len(names)]
        seen = set(Signal.objects.filter(symbol__name=symbol).values_list("pk", flat=True))
        # the symbol's previous surge must have left the baseline (see PARAMS): with fast signals
        # and acknowledgements 8 symbols come round in less than that
        if symbol in last_surge:
            time.sleep(max(0.0, last_surge[symbol] + SAME_SYMBOL_GAP_S - time.monotonic()))
        time.sleep(random.uniform(0.0, 1.0))  # a random phase of the beat period
        last_surge[symbol] = time.monotonic()
        wakes_before = int(r.hget("signals:wakes", symbol) or 0)
        planted = sim.control.surge(symbol, side="BUY" if i % 2 == 0 else "SELL", intensity=SURGE_INTENSITY,
                                    seconds=SURGE_S)
        planted_ms = float(planted.get("starts_ms") or time.time() * 1000)
        sig = wait_for(lambda: Signal.objects.filter(symbol__name=symbol).exclude(pk__in=seen).order_by("pk").first(),
                       10, f"a signal on {symbol}", procs.alive())
        # from the venue time of the surge's first tick (the origin), which the simulator
        # records; it follows the planting by up to one tick interval
        first_tick = sim.control.stats().get("surge_first_tick_ms", {}).get(symbol)
        start_ms = float(first_tick) if first_tick is not None and first_tick >= planted_ms else planted_ms
        out.setdefault("first_tick_after_plant", []).append(start_ms - planted_ms)
        wakes_at_signal = int(r.hget("signals:wakes", symbol) or 0)
        if sig is None:
            out["missed"] += 1
            print(f"  [{phase}] surge {i + 1} on {symbol}: no signal", flush=True)
            continue

        def acked():
            # every order terminal, and the hops of every one that reached the broker written
            s = Signal.objects.get(pk=sig.pk)
            rows = (s.hops or {}).get("orders") or {}
            if len(rows) >= args.accounts:
                return s
            states = list(Order.objects.filter(signal_id=sig.pk).values_list("status", flat=True))
            sent = sum(1 for st in states if st not in ("skipped", "new"))
            if len(states) >= args.accounts and all(st in TERMINAL for st in states) and len(rows) >= sent:
                return s
            return None

        done = wait_for(acked, 20, "every account's answer", procs.alive(), interval=0.05)
        s = done or Signal.objects.get(pk=sig.pk)
        h = s.hops
        out["paths"][h.get("path", "?")] = out["paths"].get(h.get("path", "?"), 0) + 1
        # per surge (the tail table): wake-ups analysed on the symbol from the plant to the signal
        out["surges"].append({"n": i + 1, "symbol": symbol, "path": h.get("path", "?"),
                              "signal": to_wall(h, h["signal"]) - start_ms,
                              "woke_at": float(h["venue"]) - start_ms if h.get("path") == "event" else None,
                              "wakes": wakes_at_signal - wakes_before,
                              "steps": hops_mod.breakdown(h)["steps"]})
        out["signal"].append(to_wall(h, h["signal"]) - start_ms)
        if h.get("path") == "event":  # the tick whose pre-screen woke the analysis that signalled
            out.setdefault("woke_at", []).append(float(h["venue"]) - start_ms)
        # an acknowledgement is a fill the broker confirmed: a skipped order (price_moved, a risk
        # rule) was never sent, a rejected or failed one was not acknowledged
        outcomes = list(Order.objects.filter(signal_id=sig.pk).values_list("id", "status", "reason"))
        filled = {str(pk) for pk, st, _ in outcomes if st == "filled"}
        for _, st, reason in outcomes:
            key = f"{st}:{reason}" if st in ("skipped", "failed", "rejected") else st
            out["statuses"][key] = out["statuses"].get(key, 0) + 1
        answers = [row[2] for pk, row in (h.get("orders") or {}).items() if pk in filled and row and row[2]]
        if done is None or len(answers) < args.accounts:
            out["partial"] += 1
            print(f"  [{phase}] surge {i + 1} on {symbol}: {len(answers)}/{args.accounts} acknowledged", flush=True)
        else:
            out["first"].append(to_wall(h, min(answers)) - start_ms)
            out["last"].append(to_wall(h, max(answers)) - start_ms)
        out["orders"] = out.get("orders", 0) + args.accounts
        out["sent"] = out.get("sent", 0) + sum(1 for _, st, _ in outcomes if st not in ("skipped", "new"))
        out["acks"] = out.get("acks", 0) + len(answers)
        for a, b, ms in hops_mod.breakdown(h)["steps"]:
            out["steps"].setdefault(f"{a}→{b}", []).append(ms)
        if (i + 1) % 10 == 0:
            print(f"  [{phase}] {i + 1} surges: surge→signal p50 {statistics.median(out['signal']):.0f} ms", flush=True)
        # let this symbol's surge end before it comes round again (other symbols go meanwhile)
    procs.stop("feed")
    out["wake_outcomes"] = {k.decode(): int(v) for k, v in r.hgetall("signals:wake_outcomes").items()}
    r.close()
    return out


def report(results: dict, args) -> None:
    print(f"\ntick to trade: {args.surges} surges per phase, {args.accounts} accounts, {args.symbols} symbols at "
          f"{args.tick_rate:g} ticks/s each, beat every 1 s; from the venue time the surge starts")
    print(f"{'phase':6} {'':22} {'p50 ms':>9} {'p95 ms':>9}   n")
    for phase, res in results.items():
        for key, label in (("signal", "surge → signal"), ("first", "surge → first ack"),
                           ("last", f"surge → last of {args.accounts} acks")):
            v = res[key]
            print(f"{phase:6} {label:22} {statistics.median(v) if v else float('nan'):9.0f} {pct(v, 95):9.0f}   {len(v)}")
        print(f"{phase:6} paths {res['paths']}, no signal {res['missed']}, not every account acknowledged "
              f"{res['partial']} (not measured); of {res.get('orders', 0)} orders {res.get('sent', 0)} sent, "
              f"{res.get('acks', 0)} acknowledged (filled); outcomes {res['statuses']}")
    if {"on", "off"} <= set(results):
        on, off = results["on"], results["off"]
        for key, label in (("signal", "surge → signal"), ("last", "surge → last ack")):
            if on[key] and off[key]:
                print(f"headline {label}: off/on p50 ×{statistics.median(off[key]) / statistics.median(on[key]):.2f}, "
                      f"p95 ×{pct(off[key], 95) / pct(on[key], 95):.2f}")
    for phase, res in results.items():
        if res.get("first_tick_after_plant"):
            print(f"{phase}: the surge's first tick came {statistics.median(res['first_tick_after_plant']):.0f} ms (p50, "
                  f"max {max(res['first_tick_after_plant']):.0f}) after it was planted (measured from that tick)")
        if res.get("woke_at"):
            print(f"{phase}: the signalling wake-up's tick came {statistics.median(res['woke_at']):.0f} ms (p50) after "
                  f"the surge start")
    for phase, res in results.items():
        steps = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in res["steps"].items())
        print(f"{phase} hop medians (ms): {steps}")
    for phase, res in results.items():
        print(f"{phase}: wake-up outcomes {res.get('wake_outcomes', {})}; slowest surges → signal:")
        print("  every surge (→ signal ms / waking tick ms): " + ", ".join(
            f"{row['signal']:.0f}/{row['woke_at']:.0f}" if row["woke_at"] is not None else f"{row['signal']:.0f}/beat"
            for row in res["surges"]))
        for row in sorted(res["surges"], key=lambda x: -x["signal"])[:6]:
            woke = f"{row['woke_at']:.0f}" if row["woke_at"] is not None else "-"
            steps = ", ".join(f"{a}→{b} {ms:.0f}" for a, b, ms in row["steps"])
            print(f"  #{row['n']} {row['symbol']} {row['path']}: {row['signal']:.0f} ms, waking tick at {woke} ms, "
                  f"{row['wakes']} wake-ups analysed; {steps}")
    print(f"targets: surge → signal p95 ≤ 150 ms; surge → last of 100 acks p95 ≤ 500 ms")


def main() -> None:
    args = parse_args()
    names = list(DEFAULT_SYMBOLS)[:args.symbols]
    setup_environment(args)
    import redis as redis_lib

    from matchtrader.simulator.testing import running_simulator

    r = redis_lib.Redis.from_url(args.redis_url)
    if r.dbsize():
        raise SystemExit(f"{args.redis_url} is not empty: pass --redis-url of an unused database")
    reset_state(names)
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"tick-to-trade-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    procs = Procs(logs)
    results = {}
    load_before = os.getloadavg()
    try:
        with running_simulator(seed=5, symbols=names, tick_rate=args.tick_rate, history_minutes=60,
                               surges_per_hour=0.0) as sim:
            from django.conf import settings

            settings.SIMULATOR_URL = sim.url  # simulation accounts go to the simulator (tokens keyed by its URL)
            create_accounts(sim, args.accounts)
            procs.start("beat", [py, "-m", "celery", "-A", "tradeops", "beat", "-S",
                                 "django_celery_beat.schedulers:DatabaseScheduler", "-s", str(logs / "beat-schedule"),
                                 "--pidfile=", "-l", "WARNING"])
            procs.start("analysis", [py, "-m", "celery", "-A", "tradeops", "worker", "-Q", "analysis", *ANALYSIS_POOL,
                                     "-n", f"t2t-analysis-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
                                     "--without-heartbeat", "-l", "WARNING"])
            print(f"orders worker: ORDERS_MAX_ENTRY_DEVIATION={args.max_entry_deviation or 'shipped'}", flush=True)
            procs.start("orders", [py, "-m", "celery", "-A", "tradeops", "worker", "-Q", "orders,default",
                                   "--concurrency", "4", "-n", f"t2t-orders-{os.getpid()}@%h", "--without-gossip",
                                   "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
                        SIMULATOR_URL=sim.url, **({"ORDERS_MAX_ENTRY_DEVIATION": args.max_entry_deviation}
                                                  if args.max_entry_deviation else {}))
            last_surge: dict[str, float] = {}  # across the phases
            for phase in args.phases.split(","):
                print(f"phase: event path {phase} ...", flush=True)
                results[phase] = run_phase(phase, args, sim, names, procs, py, last_surge)
    finally:
        procs.stop()
        r.flushdb()
    report(results, args)
    load_after = os.getloadavg()
    print(f"conditions: {os.cpu_count()} cores, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          f"(other developers' work shares the machine); logs in {logs}")


if __name__ == "__main__":
    main()
