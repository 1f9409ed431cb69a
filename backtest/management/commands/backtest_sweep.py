"""manage.py backtest_sweep — sweep strategy parameters on the ``backtest`` queue.

  manage.py backtest_sweep --grid '{"surge_min_ratio": [2.5, 3, 4], "cooldown_ms": [30000, 60000]}' --seeds 1,2 --wait
  manage.py backtest_sweep --grid '{"surge_min_ratio": {"min": 2, "max": 6, "step": 0.5}}' --sample 5 --sample-seed 7
  manage.py backtest_sweep --status 12        # progress and the ranking so far
  manage.py backtest_sweep --cancel 12

The base definition takes the same options as ``manage.py backtest`` (symbol, source, strategy,
params, seeds, accounts, range, OOS fraction). A worker must consume the ``backtest`` queue
(Procfile ``backtest``).
"""

from __future__ import annotations

import json
import time

from django.core.management.base import CommandError
from tqdm import tqdm

from backtest import sweeps
from backtest.data import BacktestDataError
from backtest.engine import BacktestConfigError
from backtest.models import Sweep
from backtest.runner import Definition
from signals.strategy import StrategyParamsError

from .backtest import Command as BacktestCommand
from .backtest import parse_param, parse_seeds


class Command(BacktestCommand):
    help = "Sweep strategy parameters: one Celery task per combination, ranked by out-of-sample score."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--grid", help="JSON: parameter -> list of values or {min, max, step}")
        parser.add_argument("--sample", type=int, help="random sample of this many combinations")
        parser.add_argument("--sample-seed", type=int, default=0)
        parser.add_argument("--wait", action="store_true", help="show progress until the sweep ends, then the ranking")
        parser.add_argument("--timeout", type=float, default=3600.0, help="--wait gives up after this many seconds")
        parser.add_argument("--status", type=int, metavar="SWEEP_ID")
        parser.add_argument("--cancel", type=int, metavar="SWEEP_ID")

    def handle(self, *args, **o):
        if o["cancel"]:
            sweep = self._sweep(o["cancel"])
            left = sweeps.cancel(sweep)
            self.stdout.write(f"sweep #{sweep.pk} cancelled; {left} combination(s) will not run")
            return
        if o["status"]:
            sweep = self._sweep(o["status"])
            self.stdout.write(self.show(sweep))
            return
        if not o["grid"]:
            raise CommandError("--grid is required to start a sweep (or --status / --cancel an existing one)")
        try:
            grid = json.loads(o["grid"])
            params = json.loads(o["params"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--grid/--params is not JSON: {exc}") from None
        if not isinstance(grid, dict) or not grid or not isinstance(params, dict):
            raise CommandError("--grid must be a non-empty JSON object, --params a JSON object")
        params.update(dict(parse_param(p) for p in o["param"]))
        defn = Definition(symbol=o["symbol"], source=o["source"], strategy=o["strategy"], params=params,
                          start=o["start"], end=o["end"], seeds=parse_seeds(o["seeds"]),
                          ticks_per_bar=o["ticks_per_bar"], tick_interval_ms=o["tick_interval_ms"],
                          oos_fraction=o["oos_fraction"], use_prescreen=not o["no_prescreen"],
                          walk_forward=o["walk_forward"], wf_is_ratio=o["wf_is_ratio"],
                          prop_profile=o["prop_profile"], prop_enforce=o["prop_enforce"],
                          slippage_points=o["slippage_points"], max_bars=o["max_bars"])
        if o["accounts"]:
            try:
                defn.accounts = json.loads(o["accounts"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--accounts is not JSON: {exc}") from None
        try:
            from backtest.data import load_series

            load_series(defn.source, defn.symbol, defn.start, defn.end)  # bad data fails here, not in N tasks
            sweep = sweeps.create(defn, grid, o["sample"], o["sample_seed"])
        except (BacktestDataError, BacktestConfigError, StrategyParamsError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"sweep #{sweep.pk}: {sweep.total} combination(s) queued on '{sweeps.QUEUE}'")
        if o["wait"]:
            self.wait(sweep, o["timeout"])
            self.stdout.write(self.show(sweep))

    def _sweep(self, pk: int) -> Sweep:
        sweep = Sweep.objects.filter(pk=pk).first()
        if sweep is None:
            raise CommandError(f"no sweep #{pk}")
        return sweep

    def wait(self, sweep: Sweep, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with tqdm(total=sweep.total, desc=f"sweep #{sweep.pk}", unit="run", file=self.stderr._out) as bar:
            while True:
                sweep.refresh_from_db()
                p = sweep.progress()
                bar.n = p["done"]
                bar.refresh()
                if sweep.status != Sweep.Status.RUNNING or p["done"] >= sweep.total:
                    return
                if time.monotonic() > deadline:
                    raise CommandError(f"sweep #{sweep.pk} not finished after {timeout:.0f} s "
                                       f"({p['done']}/{sweep.total}); is a worker consuming '{sweeps.QUEUE}'?")
                time.sleep(0.5)

    @staticmethod
    def show(sweep: Sweep) -> str:
        p = sweep.progress()
        lines = [f"sweep #{sweep.pk} {sweep.status}: {p['done']}/{p['total']} done ({p['failed']} failed)",
                 f"{'rank':>4} {'run':>6} {'OOS score':>10} {'IS score':>10} {'trades':>6}  params"
                 "   (walk-forward runs: means over the folds)"]
        for rank, row in enumerate(sweeps.ranking(sweep), 1):
            lines.append(f"{rank:>4} {row['run']:>6} {row['oos']!s:>10} {row['is']!s:>10} {row['trades']!s:>6}  "
                         f"{json.dumps(row['params'], sort_keys=True)}")
        return "\n".join(lines)
