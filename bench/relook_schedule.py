"""The pre-screen's re-look schedule against the strategy's evidence, offline and deterministic.

    .venv/bin/python bench/relook_schedule.py [--surges-per-symbol 25] [--symbols 8] [--seed 1]

``bench/tick_to_trade.py`` measures the whole path with real processes, but 40 random surges on a
shared 2-core machine give a p95 that moves by 100 ms from one run to the next. This isolates
the one thing the re-look schedule decides: at which tick of a surge the analysis is asked.

The simulator's own market model (``matchtrader.simulator.market.Market``, 50 ticks/s, a surge of
3 s at intensity 6 planted every 30 s — ``bench/tick_to_trade.py``'s surges and strategy
parameters) is stepped in memory; every event goes through the feed's order (quote, trade
prints, depth) into the backtest's window builder. For each surge:

- **evidence**: the first tick from the surge start at which the strategy (``evaluate`` on the
  window holding that tick, no cool-down) signals, among the ticks where the pre-screen's surge
  test holds (a necessary condition of a signal) — the earliest any schedule could signal;
- per schedule, the first of ITS wake-ups (the pre-screen's surge test, then the schedule) at
  which the strategy signals, and how many wake-ups it made from the surge start to 8 s after.

Schedules: ``doubling`` (the former one: 50 ms after the first look, then 100, 200, ... up to
1 s, applied to the ticks at which the surge test held) and ``fixed`` (``VolumeSurgePreScreen``
as shipped, fed the same events: every ``RELOOK_MS`` during the first ``FAST_PHASE_MS`` of an
episode, then every ``REFIRE_MAX_MS``). The beat (every 1 s, at a random
phase) is left out: it caps any schedule's delay at 1 s. No Redis, no database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradeops.settings")

from backtest.windows import WindowBuilder  # noqa: E402
from matchtrader.events import DepthEvent, QuoteEvent, TradeEvent  # noqa: E402
from matchtrader.simulator.instruments import DEFAULT_SYMBOLS, spec_for  # noqa: E402
from matchtrader.simulator.market import Market  # noqa: E402
from signals.strategies import VolumeSurgePreScreen  # noqa: E402
from signals.strategy import Reason, StrategyParams, evaluate  # noqa: E402

# bench/tick_to_trade.py's strategy parameters and surges
PARAMS = StrategyParams.from_dict({"baseline_window_s": 20, "min_baseline_s": 8, "recent_window_s": 2,
                                   "cooldown_ms": 4_000, "use_swing_levels": False, "rsi_overbought": 100.0,
                                   "rsi_oversold": 0.0})
TICK_RATE = 50.0
SURGE_S, INTENSITY, EVERY_S, WARMUP_S = 3.0, 6.0, 30.0, 30.0
LOOK_S = 8.0  # wake-ups counted from the surge start to this much after (the test holds ~2 s past the surge)


class EveryHold(VolumeSurgePreScreen):
    """The shipped surge test with no schedule: fires at every event where the test holds."""

    RELOOK_MS = 0
    FAST_PHASE_MS = 1 << 62


def doubling(holds: list[int]) -> list[int]:
    fires, next_fire, refire, held = [], -1, 50, -(1 << 62)
    for t in holds:
        if t - held >= VolumeSurgePreScreen.REARM_MS:
            refire = 50
        held = t
        if t >= next_fire:
            fires.append(t)
            next_fire = t + refire
            refire = min(refire * 2, 1_000)
    return fires


SCHEDULES = {"doubling": doubling}


def run_symbol(symbol: str, surges: int, seed: int) -> list[dict]:
    """Step one symbol's market through ``surges`` surges; per surge the tick times at which the
    surge test held (from the start to LOOK_S after) and those of them at which the strategy
    signals (in the first 3 s)."""
    t0 = 1_700_000_000_000
    market = Market([symbol], seed=seed, now_ms=t0, tick_rate=TICK_RATE, history_minutes=60, surges_per_hour=0.0)
    tick_size = spec_for(symbol).point
    builder = WindowBuilder()
    holder = EveryHold(PARAMS)
    shipped = VolumeSurgePreScreen(PARAMS)  # the schedule as shipped, fed the same events
    step_ms = int(1000 / TICK_RATE)
    starts = [t0 + int((WARMUP_S + i * EVERY_S) * 1000) for i in range(surges)]
    out = [{"symbol": symbol, "start": s, "holds": [], "fixed": [], "signals": set()} for s in starts]
    now, k, cur = t0, 0, None
    while now < starts[-1] + int(EVERY_S * 1000):
        if k < len(starts) and now >= starts[k]:
            market.plant_surge(symbol, 1 if k % 2 == 0 else -1, INTENSITY, SURGE_S, now)
            cur, k = out[k], k + 1
        tick = market.step(now)[0]
        held = fired = False
        for ev in [QuoteEvent(symbol, tick.bid, tick.ask, now, now)] + \
                  [TradeEvent(symbol, tr.price, tr.volume, tr.side, now, now) for tr in tick.trades]:
            builder.ingest(ev)
            price, volume = ((ev.bid + ev.ask) * 0.5, 0.0) if isinstance(ev, QuoteEvent) else (ev.price, ev.volume)
            held |= holder.on_tick(now, price, volume)  # the prices and volumes marketdata.feed_state gives
            fired |= shipped.on_tick(now, price, volume)
        builder.ingest(DepthEvent(symbol, tick.bids, tick.asks, now, now))
        if held and cur is not None and now - cur["start"] < LOOK_S * 1000:
            cur["holds"].append(now)
            if fired:
                cur["fixed"].append(now)
            if now - cur["start"] < SURGE_S * 1000:
                d = evaluate(builder.book(symbol).window(), PARAMS, now, None, tick_size)
                if d.reason == Reason.SIGNAL:
                    cur["signals"].add(now)
        now += step_ms
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--surges-per-symbol", type=int, default=25)
    ap.add_argument("--symbols", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    surges = []
    for i, symbol in enumerate(DEFAULT_SYMBOLS[:a.symbols]):
        surges += run_symbol(symbol, a.surges_per_symbol, a.seed + i)
    rows = {"evidence (every tick the test holds)": ([], [])}
    rows.update({name: ([], []) for name in [*SCHEDULES, "fixed"]})
    missed = {name: 0 for name in rows}
    for s in surges:
        firsts = {"evidence (every tick the test holds)": s["holds"]}
        firsts.update({name: f(s["holds"]) for name, f in SCHEDULES.items()}, fixed=s["fixed"])
        for name, fires in firsts.items():
            hit = next((t for t in fires if t in s["signals"]), None)
            if hit is None:
                missed[name] += 1
            else:
                rows[name][0].append(hit - s["start"])
            rows[name][1].append(len(fires))
    print(f"{len(surges)} surges ({a.symbols} symbols x {a.surges_per_symbol}, {TICK_RATE:g} ticks/s, "
          f"{SURGE_S:g} s at intensity {INTENSITY:g}), surge start -> first signalling look (ms); "
          f"looks = wake-ups from the surge start to {LOOK_S:g} s after")
    print(f"{'':40s} {'p50':>6s} {'p95':>6s} {'max':>6s} {'no signal':>10s} {'looks/surge':>12s}")
    for name, (delays, looks) in rows.items():
        if delays:
            print(f"{name:40s} {statistics.median(delays):6.0f} {pct(delays, 0.95):6.0f} {max(delays):6.0f} "
                  f"{missed[name]:10d} {statistics.mean(looks):12.1f}")
    ev = {id(s): next((t for t in s["holds"] if t in s["signals"]), None) for s in surges}
    for name, f in [*SCHEDULES.items(), ("fixed", None)]:
        looks = {id(s): (f(s["holds"]) if f else s["fixed"]) for s in surges}
        extra = [next(t for t in looks[id(s)] if t in s["signals"]) - ev[id(s)] for s in surges
                 if ev[id(s)] is not None and any(t in s["signals"] for t in looks[id(s)])]
        print(f"{name}: delay over the evidence p50 {statistics.median(extra):.0f} / p95 {pct(extra, 0.95):.0f} / "
              f"max {max(extra):.0f} ms")


if __name__ == "__main__":
    main()
