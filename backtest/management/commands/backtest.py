"""manage.py backtest — run one backtest of the live strategy code on real bars and store it.

Examples:
  manage.py backtest                                    # EURUSD hourly bars of the backtesting package
  manage.py backtest --seeds 1,2,3,4,5 --param surge_min_ratio=4 --oos-fraction 0.3
  manage.py backtest --strategy ma_cross --param fast=5 --param slow=20 --source data/eurusd.csv
  manage.py backtest --accounts '[{"name": "small", "equity": 5000, "risk_pct": 0.5}]' --export-json run.json
  manage.py backtest --demo                             # make run's demo run, once per code version
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backtest.data import BacktestDataError
from backtest.engine import BacktestConfigError
from backtest.export import run_json, trades_csv
from backtest.runner import Definition, run_and_save
from signals.strategy import StrategyParamsError


def parse_param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise CommandError(f"--param {text!r}: expected name=value")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string, e.g. volume_source=ticks
    return key.strip(), value


def parse_seeds(text: str) -> list[int]:
    try:
        if "-" in text and "," not in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            return list(range(lo, hi + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CommandError(f"--seeds {text!r}: expected 1,2,3 or 1-5") from None


class Command(BaseCommand):
    help = "Run a backtest of a strategy on real bars (deterministic ticks per seed) and store it."

    def add_arguments(self, parser):
        parser.add_argument("--symbol", default="EURUSD")
        parser.add_argument("--source", default="backtesting:EURUSD",
                            help="backtesting:EURUSD|BTCUSD|GOOG, a CSV path (time,Open,High,Low,Close,Volume), or db")
        parser.add_argument("--strategy", default="volume_surge")
        parser.add_argument("--param", action="append", default=[], help="name=value (repeatable)")
        parser.add_argument("--params", default="{}", help="JSON object of overrides")
        parser.add_argument("--from", dest="start")
        parser.add_argument("--to", dest="end")
        parser.add_argument("--seeds", default="1")
        parser.add_argument("--ticks-per-bar", type=int, default=60)
        parser.add_argument("--tick-interval-ms", type=int, default=100)
        parser.add_argument("--accounts", help="JSON list of {name, equity, currency, risk_pct, max_open_positions, leverage}")
        parser.add_argument("--oos-fraction", type=float, default=0.3)
        parser.add_argument("--walk-forward", type=int, default=0, metavar="FOLDS",
                            help="rolling in-sample/out-of-sample folds (2-50; 0: off); a sweep then ranks on "
                                 "the mean out-of-sample score over the folds")
        parser.add_argument("--wf-is-ratio", type=float, default=3.0,
                            help="walk-forward: in-sample bars per out-of-sample bar in each fold")
        parser.add_argument("--prop-profile", default="", metavar="NAME",
                            help="a prop-firm rule profile (admin: Prop-firm rules): report the breaches the run "
                                 "would have caused")
        parser.add_argument("--prop-enforce", action="store_true",
                            help="with --prop-profile: apply its entry checks and flatten-at-margin like live")
        parser.add_argument("--max-bars", type=int)
        parser.add_argument("--slippage-points", type=int, default=0)
        parser.add_argument("--no-prescreen", action="store_true", help="beat only, no pre-screen wake-ups")
        parser.add_argument("--name", default="")
        parser.add_argument("--export-json")
        parser.add_argument("--export-csv")
        parser.add_argument("--demo", action="store_true",
                            help="the demo run of make run (EURUSD bars, seeds 1-3), only if this code version has none")

    def handle(self, *args, **o):
        if o["demo"]:
            from backtest.demo import ensure_demo_run

            self.stdout.write(ensure_demo_run())
            return
        try:
            params = json.loads(o["params"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not JSON: {exc}") from None
        if not isinstance(params, dict):
            raise CommandError("--params must be a JSON object")
        params.update(dict(parse_param(p) for p in o["param"]))
        defn = Definition(symbol=o["symbol"], source=o["source"], strategy=o["strategy"], params=params,
                          start=o["start"], end=o["end"], seeds=parse_seeds(o["seeds"]),
                          ticks_per_bar=o["ticks_per_bar"], tick_interval_ms=o["tick_interval_ms"],
                          oos_fraction=o["oos_fraction"], use_prescreen=not o["no_prescreen"],
                          walk_forward=o["walk_forward"], wf_is_ratio=o["wf_is_ratio"],
                          prop_profile=o["prop_profile"], prop_enforce=o["prop_enforce"],
                          slippage_points=o["slippage_points"], max_bars=o["max_bars"], name=o["name"])
        if o["accounts"]:
            try:
                defn.accounts = json.loads(o["accounts"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--accounts is not JSON: {exc}") from None
            if not isinstance(defn.accounts, list) or not all(isinstance(a, dict) for a in defn.accounts):
                raise CommandError("--accounts must be a JSON list of objects")
        try:
            run = run_and_save(defn)
        except (BacktestDataError, BacktestConfigError, StrategyParamsError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.report(run))
        if o["export_json"]:
            Path(o["export_json"]).write_text(run_json(run))
        if o["export_csv"]:
            Path(o["export_csv"]).write_text(trades_csv(run))

    @staticmethod
    def report(run) -> str:
        s = run.summary
        lines = [f"backtest #{run.pk}: {run.strategy} on {run.symbol} ({run.source}), {run.bars} bars "
                 f"{run.data_from:%Y-%m-%d} .. {run.data_to:%Y-%m-%d}, seeds {run.seeds}, {run.duration_s:.1f} s"]
        for seed, seg in s["per_seed"].items():
            a = seg["all"]
            lines.append(f"  seed {seed}: {a['trades']} trades, win {a['win_rate']}, net {a['net_pnl']} "
                         f"({a['net_pips']} pips), max dd {a['max_drawdown']}, sharpe {a['sharpe']} | "
                         f"IS net {seg['is'].get('net_pnl')} / OOS net {seg['oos'].get('net_pnl')}")
        for key, spread in s["aggregate"]["all"].items():
            lines.append(f"  {key}: min {spread['min']} median {spread['median']} max {spread['max']}")
        lines.append(f"  score: in-sample {s['score']['is']}, out-of-sample {s['score']['oos']}")
        if s.get("walk_forward"):
            wf = s["walk_forward"]
            lines.append(f"  walk-forward ({len(wf['folds'])} folds, in-sample {wf['is_ratio']}x out-of-sample): "
                         f"mean score in-sample {wf['score']['is']}, out-of-sample {wf['score']['oos']}")
            for f in wf["folds"]:
                lines.append(f"    fold {f['fold']}: IS {f['is']['from'][:10]}..{f['is']['to'][:10]} score "
                             f"{f['is']['score']} | OOS {f['oos']['from'][:10]}..{f['oos']['to'][:10]} score "
                             f"{f['oos']['score']}")
        if s.get("prop"):
            pr = s["prop"]
            lines.append(f"  prop profile {pr['profile']!r} ({'enforced' if pr['enforced'] else 'report only'}): "
                         f"breaches per seed {pr['breaches_per_seed']}")
            first = next(iter(s["per_seed"].values()))["prop"]
            for b in first["breaches"][:10]:
                lines.append(f"    {b['at'][:19]} {b['account']} {b['rule']}: {b['value']} vs {b['limit']} "
                             f"({b['action']}) {b['detail']}")
        lines.append("  inputs: " + "; ".join(f"{k}: {v}" for k, v in run.inputs.items()))
        return "\n".join(lines)
