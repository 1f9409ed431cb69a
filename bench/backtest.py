"""Benchmark of the backtest engine (issue 12's targets).

    .venv/bin/python bench/backtest.py [--bars 5000] [--ticks-per-bar 60] [--combos 32] [--sweep-bars 400]

1. Engine: both replay paths (per event, ``Engine.run``; columnar, ``Engine.run_stream``,
   what ``backtest.runner`` uses), alternated ``--repeats`` times, medians. The 5,000 EURUSD hourly bars of the ``backtesting`` package at 60 ticks per bar
   (300,000 ticks, each a quote plus a trade print), analysed at the live cadence (a pass every
   1 s of the replay clock, plus the pre-screen's wake-ups). Prints ticks/s, analysis passes/s,
   the wall time, and the engine's overhead over the analysis itself, measured in the SAME run:
   every ``analyse_all`` call the engine makes is timed (the analysis itself, on the engine's own
   windows); overhead = engine wall time / time inside ``analyse_all`` − 1.
   Target: overhead ≤ 25 %.
2. Sweep: ``--combos`` parameter combinations (``--sweep-bars`` bars each) run by 1 worker
   process, then by 2; prints the ratio (target ≤ 0.6 × the 1-worker time on 2 cores). Worker
   processes here are a process pool running the sweep task's body (``backtest.runner``), the
   same CPU work a Celery ``backtest`` worker does per message, without the broker round trips
   (~ms per combination, negligible next to seconds of work). Needs no database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradeops.settings")

import django  # noqa: E402

django.setup()

from backtest import engine as engine_mod  # noqa: E402
from backtest.data import TickPlan, bar_events, load_series  # noqa: E402
from backtest.engine import AccountSpec, Engine, SymbolSetup  # noqa: E402
from backtest.stream import stream_from_events  # noqa: E402
from matchtrader.simulator.instruments import SPECS  # noqa: E402
from signals.strategy import analyse_all  # noqa: E402


def _timed_run(events, stream, fast: bool):
    spent = [0.0]

    def timed_analyse_all(*args):
        t = time.perf_counter()
        try:
            return analyse_all(*args)
        finally:
            spent[0] += time.perf_counter() - t

    eng = Engine([SymbolSetup("EURUSD", SPECS["EURUSD"])], [AccountSpec()])
    engine_mod.analyse_all = timed_analyse_all  # the engine's own calls, on its own windows, timed
    try:
        t0 = time.perf_counter()
        res = eng.run_stream(stream) if fast else eng.run(events)
        wall = time.perf_counter() - t0
    finally:
        engine_mod.analyse_all = analyse_all
    return res, wall, spent[0]


def engine_bench(bars: int, ticks_per_bar: int, repeats: int) -> None:
    series = load_series("backtesting:EURUSD", "EURUSD").slice(0, bars)
    events = list(bar_events(series, seed=1, plan=TickPlan(ticks_per_bar)))  # materialised: not timed
    t0 = time.perf_counter()
    stream = stream_from_events(events)  # the same events as columns (timed apart, below)
    to_columns = time.perf_counter() - t0
    runs = {False: [], True: []}
    for _ in range(repeats):  # alternate the two paths so both see the same machine load
        for fast in (False, True):
            runs[fast].append(_timed_run(events, stream, fast))
    res = runs[True][0][0]
    same = all(r[0].trades == res.trades and r[0].passes == res.passes and r[0].wakeups == res.wakeups
               for path in runs.values() for r in path)
    print(f"engine: {bars} bars x {ticks_per_bar} ticks = {res.ticks:,} tick events (quotes + trade prints), "
          f"{res.passes:,} analysis passes ({res.wakeups:,} pre-screen wake-ups), {len(res.signals)} signals, "
          f"{len(res.trades)} trades; both paths identical: {same}; median of {repeats}, alternated; "
          f"load average {os.getloadavg()[0]:.1f}")
    for fast, label in ((False, "per-event path (Engine.run)"), (True, "stream path (Engine.run_stream)")):
        walls = sorted(r[1] for r in runs[fast])
        wall = walls[len(walls) // 2]
        overheads = sorted(r[1] / r[2] - 1 for r in runs[fast])
        bare = statistics.median(r[2] for r in runs[fast]) / max(1, res.passes)
        print(f"  {label}: wall {wall:.1f} s; {res.ticks / wall:,.0f} ticks/s; {res.passes / wall:,.0f} passes/s; "
              f"analyse_all alone {bare * 1000:.3f} ms/pass = {1 / bare:,.0f} passes/s; "
              f"overhead {overheads[len(overheads) // 2]:+.1%} over the analysis (target <= +25%)")
    print(f"  (building the stream's columns from the events: {to_columns:.1f} s, once per seed, not in the above)")


def one_combo(args):
    ratio, bars = args
    from backtest.runner import Definition, run_definition

    run_definition(Definition(params={"surge_min_ratio": ratio}, max_bars=bars, seeds=[1]))
    return ratio


def sweep_bench(combos: int, bars: int) -> None:
    work = [(2.0 + 0.1 * i, bars) for i in range(combos)]
    times = {}
    for workers in (1, 2):
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one_combo, work[:2]))  # warm the processes (imports) before timing
            t0 = time.perf_counter()
            list(pool.map(one_combo, work))
            times[workers] = time.perf_counter() - t0
    print(f"sweep: {combos} combinations x {bars} bars: 1 worker {times[1]:.1f} s, 2 workers {times[2]:.1f} s "
          f"-> {times[2] / times[1]:.2f}x the 1-worker time (target <= 0.60x on 2 cores)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bars", type=int, default=5000)
    p.add_argument("--ticks-per-bar", type=int, default=60)
    p.add_argument("--combos", type=int, default=32)
    p.add_argument("--sweep-bars", type=int, default=400)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-sweep", action="store_true")
    a = p.parse_args()
    engine_bench(a.bars, a.ticks_per_bar, a.repeats)
    if not a.skip_sweep:
        sweep_bench(a.combos, a.sweep_bars)


if __name__ == "__main__":
    main()
