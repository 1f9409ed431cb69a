"""Tick → signal latency, measured on the real pipeline driven by Celery beat.

    .venv/bin/python bench/signal_latency.py [--symbols 3] [--rounds 4]
                                             [--redis-url redis://127.0.0.1:6379/8] [--db tradeops_bench_signals]

The same setup as tests/signals/test_beat_e2e.py: the exchange simulator (this process, 127.0.0.1,
ephemeral port) → the feed (a thread of this process) → Redis → a real ``celery beat`` with the
DatabaseScheduler and a real ``celery worker -Q analysis`` (subprocesses) → Signal rows in a
throw-away PostgreSQL database (created and migrated if missing).

Each round plants a buying or selling surge on every symbol at the venue (``POST /_sim/surge``)
and waits for each symbol's signal. Printed, median and p95 over all signals:

- **tick → signal**: ``Signal.created_at − Signal.tick_at`` — venue time of the newest tick the
  pass saw to the row's insert (feed + Redis + beat phase + read + analyse + store).
- **surge → signal**: ``Signal.created_at −`` the moment the surge was planted: what a trader
  would call detection delay; bounded below by the beat period (1 s) and the evidence needed.
- the analysis pass itself (read / analyse / store ms, from the worker's last-run summary).

The Redis database must be empty (it is flushed at the end); the PostgreSQL database is emptied
of signals, symbols, strategy configs and periodic tasks at the start.
"""

from __future__ import annotations

import argparse
import json
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

# Every round surges symbols that never surged before: a past surge inflates a symbol's baseline
# (mean and spread) for the baseline window, which would make later rounds measure the strategy's
# (correct) reluctance instead of the latency.
from matchtrader.simulator.instruments import DEFAULT_SYMBOLS as SYMBOLS  # noqa: E402
from matchtrader.simulator.instruments import spec_for  # noqa: E402
# As in the e2e test: a short baseline so the bench starts quickly, a short cool-down so rounds
# can follow each other, no filters that depend on the random pre-generated history.
PARAMS = {
    "baseline_window_s": 300,  # a past round's surge weighs little in the next round's baseline
    "min_baseline_s": 8,
    "recent_window_s": 3,
    "cooldown_ms": 4_000,
    "use_swing_levels": False,
    "rsi_overbought": 100.0,
    "rsi_oversold": 0.0,
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--symbols", type=int, default=3, help="surging symbols per round")
    p.add_argument("--rounds", type=int, default=3, help=f"rounds x symbols <= {len(SYMBOLS)}")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/8", help="an EMPTY Redis database")
    p.add_argument("--db", default="tradeops_bench_signals", help="throw-away database (created, emptied)")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    return p.parse_args()


def setup_environment(args) -> None:
    from _setup import setup_django

    setup_django(pg=args.pg, db=args.db, redis_url=args.redis_url, env={"ORDERS_RECONCILE_ON_WORKER_READY": "false"}, own_celery_urls=True)


def reset_state(names) -> None:
    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    from marketdata.models import Symbol
    from signals.models import Signal, StrategyConfig

    import importlib

    migration = importlib.import_module("signals.migrations.0002_beat_schedule")
    Signal.objects.all().delete()
    StrategyConfig.objects.all().delete()
    Symbol.objects.update(enabled=False)
    PeriodicTask.objects.exclude(name=migration.TASK_NAME).delete()  # only the analysis beat
    migration.create_schedule(apps, None)
    for name in names:
        spec = spec_for(name)
        Symbol.objects.update_or_create(name=name, defaults=dict(
            digits=spec.price_precision, tick_size=Decimal(1).scaleb(-spec.price_precision), enabled=True,
            contract_size=spec.contract_size, min_volume=spec.volume_min, max_volume=spec.volume_max,
            lot_step=spec.volume_step))
    StrategyConfig.objects.create(params=PARAMS)


def start(cmd, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")
    return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(os_signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_for(predicate, timeout: float, what: str, procs=(), interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"{p.args[3:6]} exited ({p.returncode}) while waiting for {what}")
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


def pct(values, q) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def main() -> None:
    args = parse_args()
    if args.symbols * args.rounds > len(SYMBOLS):
        raise SystemExit(f"--symbols x --rounds must be <= {len(SYMBOLS)} (each round surges fresh symbols)")
    names = list(SYMBOLS)
    groups = [names[i * args.symbols:(i + 1) * args.symbols] for i in range(args.rounds)]
    setup_environment(args)

    import redis as redis_lib

    from matchtrader.simulator.testing import running_simulator
    from signals.models import Signal
    from signals.names import LAST_RUN_KEY
    from workers.feed import FeedConfig, FeedWorker

    r = redis_lib.Redis.from_url(args.redis_url)
    if r.dbsize():
        raise SystemExit(f"{args.redis_url} is not empty: pass --redis-url of an unused database")
    reset_state(names)
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"signal-latency-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    procs = []
    tick_to_signal, surge_to_signal, passes = [], [], {}
    try:
        with running_simulator(seed=5, symbols=names, tick_rate=10.0, history_minutes=60, surges_per_hour=0.0) as sim:
            sim.control.create_account("feed@bench.test", "feed-pw-1")
            feed = FeedWorker(FeedConfig.from_settings(base_url=sim.url, ws_url=sim.ws_url, email="feed@bench.test",
                                                       password="feed-pw-1", broker_id="0", warmup_minutes=60),
                              redis=redis_lib.Redis.from_url(args.redis_url, socket_timeout=5),
                              symbol_source=lambda: set(names))
            with feed.running():
                procs.append(start([py, "-m", "celery", "-A", "tradeops", "beat", "-S",
                                    "django_celery_beat.schedulers:DatabaseScheduler", "-s", str(logs / "beat-schedule"),
                                    "--pidfile=", "-l", "WARNING"], logs / "beat.log"))
                procs.append(start([py, "-m", "celery", "-A", "tradeops", "worker", "-Q", "analysis", "-c", "1",
                                    "-n", f"bench-sig-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
                                    "--without-heartbeat", "-l", "WARNING"], logs / "worker.log"))

                def summary():
                    raw = r.get(LAST_RUN_KEY)
                    return json.loads(raw) if raw else None

                def all_calm():
                    s = summary()
                    ok = s and set(s["reasons"]) <= {"no_surge", "cooldown"} and sum(s["reasons"].values()) == len(names)
                    return s if ok else None

                print(f"waiting for the analysis to have {PARAMS['min_baseline_s']} s of history ...", flush=True)
                for rnd in range(args.rounds):
                    first = wait_for(all_calm, 60, "a calm pass over every symbol", procs)
                    wait_for(lambda: (s := all_calm()) and s["ts_ms"] > first["ts_ms"], 10, "a second calm pass", procs)
                    seen = set(Signal.objects.values_list("pk", flat=True))
                    side = "BUY" if rnd % 2 == 0 else "SELL"
                    # we just saw a pass end: plant at a random phase of the beat period, not in step with it
                    time.sleep(random.uniform(0.0, 1.0))
                    planted_ms = time.time() * 1000
                    group = groups[rnd]
                    for name in group:
                        sim.control.surge(name, side=side, intensity=6.0, seconds=3.0)
                    def signalled():
                        s = summary()
                        if s and s["signals"]:
                            passes[s["ts_ms"]] = s  # the pass that stored signals: its timings
                        rows = list(Signal.objects.exclude(pk__in=seen))
                        return rows if len({row.symbol_id for row in rows}) == len(group) else None

                    try:
                        new = wait_for(signalled, 15, f"round {rnd + 1}: a signal on every symbol", procs)
                    except SystemExit:
                        print(f"last pass: {summary()}", flush=True)
                        raise
                    ids = {row.pk for row in new}

                    def pass_summary():
                        s = summary()
                        if s and ids & set(s["signals"]):
                            passes[s["ts_ms"]] = s
                        return any(ids & set(p["signals"]) for p in passes.values())

                    wait_for(pass_summary, 5, "the summary of the pass that stored the signals", procs, interval=0.01)
                    for s in new:
                        tick_to_signal.append(s.latency_ms)
                        surge_to_signal.append(s.created_at.timestamp() * 1000 - planted_ms)
                    print(f"  round {rnd + 1}: {len(new)} signals ({side}), tick->signal "
                          f"{', '.join(f'{s.latency_ms:.0f}' for s in new)} ms", flush=True)
                    wait_for(lambda: not Signal.objects.exclude(pk__in=seen).filter(
                        created_at__gt=max(s.created_at for s in new)).exists() and all_calm(), 30,
                        "the surge to fade", procs)
    finally:
        stop(procs)
        r.flushdb()
    n = len(tick_to_signal)
    print(f"tick -> signal over {n} signals ({args.symbols} surging of {len(names)} symbols x {args.rounds} rounds,"
          " beat every 1 s):")
    print(f"  tick -> signal   median {statistics.median(tick_to_signal):7.1f} ms  p95 {pct(tick_to_signal, 95):7.1f} ms")
    print(f"  surge -> signal  median {statistics.median(surge_to_signal):7.1f} ms  p95 {pct(surge_to_signal, 95):7.1f} ms")
    if passes:
        med = {k: statistics.median(p[k] for p in passes.values()) for k in ("read_ms", "analyse_ms", "store_ms")}
        print(f"  passes that stored signals ({len(passes)}, {len(names)} symbols): read {med['read_ms']:.1f} ms, "
              f"analyse {med['analyse_ms']:.1f} ms, store+dispatch {med['store_ms']:.1f} ms (medians)")


if __name__ == "__main__":
    main()
