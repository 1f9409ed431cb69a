"""Does a parameter sweep slow live trading down? The order fan-out with and without a sweep running.

    .venv/bin/python bench/fanout_sweep.py --redis-url redis://127.0.0.1:6379/N --db tradeops_bench_NAME
                                           [--accounts 1000] [--combos 32] [--sweep-bars 1500] [--repeats 3]

Issue 12's target: ``bench/fanout.py``'s fan-out with a 32-combination sweep running on the
Procfile's ``backtest`` worker stays ≤ 1.2 × its time without.

In one run (the set-up is ``bench/fanout.py``'s own functions: throw-away database, its own
Redis db — flushed —, the simulator in this process, the Procfile's order worker):

1. the order worker and the ``backtest`` worker, the latter started from the Procfile's own
   ``backtest:`` line (``nice -n 10``, concurrency 1), so what is measured is what ships;
2. a sweep of ``--combos`` combinations (``backtest.sweeps.create``, one task per combination on
   the ``backtest`` queue) over ``--sweep-bars`` EURUSD bars each;
3. a warm-up fan-out, then ``--repeats`` pairs, alternated so both sides share the machine's load:
   the fan-out with the backtest worker paused (SIGSTOP on its process group: it holds its
   memory but uses no CPU — "without the sweep") and with it running (SIGCONT; the worker's CPU
   during the fan-out is printed to show it was busy). Each fan-out is ``fanout.time_signal``:
   one signal, every account's order terminal in the database.

Prints each pair, the medians and the ratio with / without (target ≤ 1.2), with the load average.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal as signals
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import fanout  # noqa: E402  (this directory's bench/fanout.py: the fan-out measurement reused as is)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--combos", type=int, default=32, help="combinations in the sweep (default 32)")
    p.add_argument("--sweep-bars", type=int, default=1500, help="EURUSD bars per combination")
    p.add_argument("--repeats", type=int, default=3, help="with/without pairs (median)")
    p.add_argument("--pool", default="prefork", choices=["threads", "prefork", "solo", "gevent"])
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/6", help="a Redis db nobody else uses (flushed)")
    p.add_argument("--db", default="tradeops_bench_orders", help="throw-away database (created, emptied)")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    return p.parse_args()


def procfile_command(name: str) -> str:
    """The Procfile line ``name:`` without its ``exec`` (run through ``sh -c``, like honcho)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            cmd = line.split(":", 1)[1].strip()
            return cmd[len("exec "):] if cmd.startswith("exec ") else cmd
    raise SystemExit(f"no '{name}:' line in the Procfile")


def start_backtest_worker(log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = procfile_command("backtest").replace("backtest@%h", f"bench-backtest-{os.getpid()}@%h")
    log = open(log_path, "wb")
    return subprocess.Popen(["sh", "-c", "exec " + cmd], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def group_cpu_s(proc: subprocess.Popen) -> float:
    return sum(fanout.cpu_seconds(p) for p in fanout.worker_pids(proc))


def main():
    args = parse_args()
    fanout.setup_environment(args)
    from backtest import sweeps
    from backtest.models import BacktestRun, Sweep
    from backtest.runner import Definition
    from matchtrader.simulator.testing import running_simulator
    from tests.factories import make_symbol
    from tradeops.celery import app

    fanout.check_redis_db_is_ours(args.redis_url)
    fanout.reset_state(args.redis_url)
    BacktestRun.objects.all().delete()
    Sweep.objects.all().delete()
    logs = [Path(f"/tmp/bench-fanout-sweep-{kind}-{os.getpid()}.log") for kind in ("orders", "backtest")]
    workers: list[subprocess.Popen] = []

    def stop_workers(*_):
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signals.SIGCONT)
                os.killpg(w.pid, signals.SIGTERM)
        raise SystemExit(1)

    signals.signal(signals.SIGTERM, stop_workers)  # never leave an orphan (or a stopped) worker behind
    with running_simulator(seed=11, tick_rate=2.0, history_minutes=5, surges_per_hour=0.0,
                           rate_limit_per_min=0) as sim:
        sim.control.market(paused=True, prices={"EURUSD": 1.10000})
        from django.conf import settings

        settings.SIMULATOR_URL = sim.url
        symbol = make_symbol("EURUSD", base_currency="EUR", quote_currency="USD")
        print(f"setting up {args.accounts} accounts ...", flush=True)
        fanout.create_accounts(sim, args.accounts, symbol)
        try:
            workers.append(fanout.start_worker(args, sim.url, logs[0]))
            fanout.wait_worker_ready(app)
            backtest = start_backtest_worker(logs[1])
            workers.append(backtest)
            defn = Definition(max_bars=args.sweep_bars, seeds=[1])
            grid = {"surge_min_ratio": [round(2.0 + 0.05 * i, 2) for i in range(args.combos)]}
            sweep = sweeps.create(defn, grid, send=False)
            sweeps.enqueue(sweep)
            deadline = time.monotonic() + 120
            while not BacktestRun.objects.filter(sweep=sweep).exists():  # the worker took its first combination
                if time.monotonic() > deadline or backtest.poll() is not None:
                    raise SystemExit(f"the backtest worker did not start a combination (log: {logs[1]})")
                time.sleep(0.2)
            print(f"sweep {sweep.pk}: {args.combos} combinations x {args.sweep_bars} bars on the Procfile's "
                  f"backtest worker ({procfile_command('backtest')!r})", flush=True)
            os.killpg(backtest.pid, signals.SIGSTOP)
            fanout.time_signal(sim, [symbol], args.accounts, workers[0])  # warm-up
            pairs = []
            for _ in range(args.repeats):
                without = fanout.time_signal(sim, [symbol], args.accounts, workers[0])
                os.killpg(backtest.pid, signals.SIGCONT)
                time.sleep(0.5)  # the worker back at full speed in its combination
                cpu0 = group_cpu_s(backtest)
                with_ = fanout.time_signal(sim, [symbol], args.accounts, workers[0])
                sweep_cpu = group_cpu_s(backtest) - cpu0
                os.killpg(backtest.pid, signals.SIGSTOP)
                done = BacktestRun.objects.filter(sweep=sweep, status=BacktestRun.Status.DONE).count()
                pairs.append((without["terminal_s"], with_["terminal_s"]))
                print(f"  without the sweep {without['terminal_s']:.2f}s, with it {with_['terminal_s']:.2f}s "
                      f"(backtest worker {sweep_cpu:.2f} CPU-s during it, {sweep_cpu / with_['terminal_s']:.2f} "
                      f"cores; {done}/{args.combos} combinations done); load average {os.getloadavg()[0]:.1f}",
                      flush=True)
                if done >= args.combos:
                    print("  (the sweep finished: later pairs would not measure it; use more --sweep-bars)")
                    break
            a = statistics.median(p[0] for p in pairs)
            b = statistics.median(p[1] for p in pairs)
            print(f"fan-out of {args.accounts} accounts, median of {len(pairs)}: without the sweep {a:.2f}s, with "
                  f"{b:.2f}s -> {b / a:.2f}x (target <= 1.2x: {'MET' if b / a <= 1.2 else 'NOT MET'}); "
                  f"load average {os.getloadavg()[0]:.1f} (2 cores)")
            sweeps.cancel(sweep)
        finally:
            for w in workers:
                if w.poll() is None:
                    os.killpg(w.pid, signals.SIGCONT)
                    os.killpg(w.pid, signals.SIGTERM)
            for w in workers:
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(w.pid, signals.SIGKILL)
            for log in logs:
                log.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
