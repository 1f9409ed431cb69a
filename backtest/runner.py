"""Running a backtest definition end to end: load and validate the data, run the engine once per
seed, split in-sample / out-of-sample, summarise, store. The engine is pure; this module is the
edge (files, database, git).

In-sample / out-of-sample: the last ``oos_fraction`` of the bars is out-of-sample. The engine runs
ONCE over all bars (so the out-of-sample part starts with warm windows and the same cool-down
state as live would have); trades are assigned to the segment of the bar they opened in, and the
equity curve is cut at the split for each segment's drawdown and daily returns.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from tradeops.logging import get_logger

from . import metrics, walkforward
from .data import BacktestDataError, BarSeries, TickPlan, bar_events, input_report, load_series, spec_of
from .engine import AccountSpec, BacktestConfigError, Engine, EngineConfig, Result, SymbolSetup
from .propcheck import PropMonitor, PropRules
from .stream import stream_from_events

log = get_logger(__name__)
MAX_SEEDS = 20
MAX_EQUITY_POINTS = 1500


@dataclass
class Definition:
    symbol: str = "EURUSD"
    source: str = "backtesting:EURUSD"
    strategy: str = "volume_surge"
    params: dict = field(default_factory=dict)
    start: str | None = None
    end: str | None = None
    seeds: list[int] = field(default_factory=lambda: [1])
    ticks_per_bar: int = 60
    tick_interval_ms: int = 100
    accounts: list[dict] = field(default_factory=lambda: [{"name": "A", "equity": "10000", "risk_pct": "0.5"}])
    oos_fraction: float = 0.3
    use_prescreen: bool = True
    slippage_points: int = 0
    commission_per_lot: str = "3.5"
    max_bars: int | None = None
    name: str = ""
    walk_forward: int = 0  # folds (0: off); see backtest.walkforward
    prop_profile: str = ""  # a prop.models.RuleProfile name: report the breaches it would have had
    prop_enforce: bool = False  # ... and apply its entry checks and flatten-at-margin like live
    prop_phase: str = "evaluation"  # the simulated accounts' program phase (the news rule's scope)
    wf_is_ratio: float = 3.0  # in-sample bars per out-of-sample bar in each fold

    def validate(self) -> tuple[list[AccountSpec], SymbolSetup, TickPlan]:
        if not self.seeds or len(self.seeds) > MAX_SEEDS or not all(isinstance(s, int) for s in self.seeds):
            raise BacktestConfigError(f"seeds: 1 to {MAX_SEEDS} integers, got {self.seeds!r}")
        if self.walk_forward and not (2 <= self.walk_forward <= walkforward.MAX_FOLDS):
            raise BacktestConfigError(f"walk_forward: 0 (off) or 2 to {walkforward.MAX_FOLDS} folds, "
                                      f"got {self.walk_forward}")
        if not (0.0 <= self.oos_fraction < 1.0):
            raise BacktestConfigError(f"oos_fraction must be in [0, 1), got {self.oos_fraction}")
        if not (4 <= self.ticks_per_bar <= 10_000) or not (1 <= self.tick_interval_ms <= 3_600_000):
            raise BacktestConfigError("ticks_per_bar must be in [4, 10000] and tick_interval_ms in [1, 3600000]")
        if self.slippage_points < 0:
            raise BacktestConfigError("slippage_points must be >= 0")
        try:
            accounts = [AccountSpec(**{k: (Decimal(str(v)) if k in ("equity", "risk_pct") else v)
                                       for k, v in a.items()}) for a in self.accounts]
        except TypeError as exc:
            raise BacktestConfigError(f"accounts: {exc}") from None
        except ArithmeticError:
            raise BacktestConfigError(f"accounts: equity and risk_pct must be numbers: {self.accounts}") from None
        setup = SymbolSetup(self.symbol, spec_of(self.symbol), self.strategy, self.params)
        return accounts, setup, TickPlan(self.ticks_per_bar, self.tick_interval_ms)


@dataclass
class Outcome:
    definition: Definition
    series: BarSeries
    results: dict[int, Result]
    split_bar: int
    effective_params: dict
    summary: dict
    equity: list
    duration_s: float


def _bar_ms(series: BarSeries, bar: int) -> int:
    return series.times_ms[min(max(bar, 0), len(series) - 1)]


def _segment_summary(series: BarSeries, res: Result, accounts: list[AccountSpec], lo: int, hi: int) -> dict:
    trades = [t for t in res.trades if lo <= t.open_bar < hi]
    # the equity curve of all accounts together, at each bar end within [lo, hi)
    total: dict[int, float] = {}
    for name, points in res.equity.items():
        for bar, eq in points:
            if lo <= bar < hi:
                total[bar] = total.get(bar, 0.0) + float(eq)
    curve = [(_bar_ms(series, b), v) for b, v in sorted(total.items())]
    span = None
    if res.first_ms is not None and res.bars:
        per_bar = (res.last_ms - res.first_ms) / max(1, res.bars)
        span = int(per_bar * (min(hi, res.bars) - lo))
    return {**metrics.summarise(trades, curve, span), "start_equity": curve[0][1] if curve else 0.0}


def run_definition(defn: Definition) -> Outcome:
    """Run every seed; raises BacktestDataError / BacktestConfigError / StrategyParamsError on bad input."""
    t0 = time.perf_counter()
    accounts, setup, plan = defn.validate()
    series = load_series(defn.source, defn.symbol, defn.start, defn.end)
    if defn.max_bars:
        series = series.slice(0, defn.max_bars)
    n = len(series)
    split = n - int(round(n * defn.oos_fraction)) if defn.oos_fraction else n
    try:
        fold_plan = walkforward.folds(n, defn.walk_forward, defn.wf_is_ratio) if defn.walk_forward else []
    except walkforward.WalkForwardError as exc:
        raise BacktestConfigError(str(exc)) from None
    config = EngineConfig(use_prescreen=defn.use_prescreen, slippage_points=defn.slippage_points,
                          commission_per_lot=Decimal(defn.commission_per_lot))
    results: dict[int, Result] = {}
    per_seed = {}
    engine = None
    prop_rules = _prop_rules(defn, accounts, series) if defn.prop_profile else None
    for seed in defn.seeds:
        monitor = (PropMonitor(prop_rules, [a.name for a in accounts], defn.prop_enforce)
                   if prop_rules is not None else None)
        engine = Engine([setup], accounts, config, prop=monitor, bar_times=list(series.times_ms))
        stream = stream_from_events(bar_events(series, seed, plan))  # columns: the engine's fast path
        res = engine.run_stream(stream) if stream is not None else engine.run(bar_events(series, seed, plan))
        results[seed] = res
        per_seed[seed] = {
            "all": _segment_summary(series, res, accounts, 0, n),
            "is": _segment_summary(series, res, accounts, 0, split),
            "oos": _segment_summary(series, res, accounts, split, n) if split < n else {},
            "signals": len(res.signals), "passes": res.passes, "wakeups": res.wakeups, "ticks": res.ticks,
            "reasons": res.reasons,
            "skips": _count(r for _, _, r in res.skips),
        }
        if monitor is not None:
            per_seed[seed]["prop"] = monitor.summary()
        if fold_plan:
            per_seed[seed]["folds"] = [
                {"is": _segment_summary(series, res, accounts, f.is_lo, f.is_hi),
                 "oos": _segment_summary(series, res, accounts, f.oos_lo, f.oos_hi)} for f in fold_plan]
    segments = ("all", "is", "oos")
    aggregate = {seg: metrics.spread([per_seed[s][seg] for s in defn.seeds if per_seed[s][seg]]) for seg in segments}
    scores = {seg: [metrics.score(per_seed[s][seg]) for s in defn.seeds if per_seed[s][seg]] for seg in segments}
    summary = {
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "aggregate": aggregate,
        "score": {seg: (round(sum(v) / len(v), 4) if v else None) for seg, v in scores.items()},
        "split_bar": split, "split_time": datetime.fromtimestamp(_bar_ms(series, split) / 1000, tz=UTC).isoformat()
        if split < n else None,
    }
    if fold_plan:
        summary["walk_forward"] = _walk_forward_summary(series, defn, fold_plan, per_seed)
    if prop_rules is not None:
        summary["prop"] = {"profile": defn.prop_profile, "enforced": defn.prop_enforce, "phase": defn.prop_phase,
                           "breaches_per_seed": {str(s): per_seed[s]["prop"]["total"] for s in defn.seeds},
                           "counts_per_seed": {str(s): per_seed[s]["prop"]["counts"] for s in defn.seeds}}
    first = results[defn.seeds[0]]
    equity = _equity_curve(series, first)
    effective = engine.params[defn.symbol].to_dict()
    return Outcome(defn, series, results, split, effective, metrics.to_jsonable(summary), equity,
                   time.perf_counter() - t0)


def _prop_rules(defn: Definition, accounts: list[AccountSpec], series: BarSeries) -> list[PropRules]:
    """The profile resolved for each simulated account by prop's own ``prop.state.resolve`` (its
    initial balance = the account's starting equity), with the news events of the data's range."""
    from types import SimpleNamespace

    from prop import rules as R
    from prop.models import NewsEvent, RuleProfile
    from prop.state import news_applies, resolve

    profile = RuleProfile.objects.filter(name=defn.prop_profile).first()
    if profile is None:
        names = ", ".join(RuleProfile.objects.order_by("name").values_list("name", flat=True)) or "none"
        raise BacktestConfigError(f"unknown prop rule profile {defn.prop_profile!r}; profiles: {names}")
    news: tuple = ()
    if news_applies(profile, defn.prop_phase):
        lo = _dt(series.times_ms[0] - profile.news_after_s * 1000)
        hi = _dt(series.times_ms[-1] + profile.news_before_s * 1000 + 3_600_000)
        news = tuple(R.NewsWindow(e.at, e.currency, e.impact, e.title)
                     for e in NewsEvent.objects.filter(at__gte=lo, at__lte=hi).order_by("at"))
    out = []
    for k, acct in enumerate(accounts):
        stand_in = SimpleNamespace(pk=k, initial_balance=acct.equity, daily_loss_limit=None, rule_profile_id=profile.pk)
        ar = resolve(stand_in, profile, _dt(series.times_ms[0]))
        if ar.loss.unresolved:
            raise BacktestConfigError(f"prop profile {profile.name!r}: {', '.join(map(str, ar.loss.unresolved))} "
                                      "cannot be computed for the run's accounts")
        out.append(PropRules(profile.name, ar.loss, ar.caps, ar.session, profile.reset_time, profile.reset_timezone,
                             acct.equity, profile.min_hold_seconds, news, profile.news_before_s, profile.news_after_s,
                             profile.news_min_impact))
    return out


def _walk_forward_summary(series: BarSeries, defn: Definition, plan: list, per_seed: dict) -> dict:
    """Per fold: its bars and dates, the spread across seeds and the mean score of each side; and
    the means over the folds (what a sweep ranks on when walk-forward is on)."""
    rows = []
    for f in plan:
        row = {"fold": f.index + 1}
        for seg, lo, hi in (("is", f.is_lo, f.is_hi), ("oos", f.oos_lo, f.oos_hi)):
            sums = [per_seed[s]["folds"][f.index][seg] for s in defn.seeds]
            row[seg] = {"bars": [lo, hi], "from": _dt(_bar_ms(series, lo)).isoformat(),
                        "to": _dt(_bar_ms(series, hi - 1)).isoformat(),
                        "score": walkforward.mean(metrics.score(x) for x in sums),
                        "spread": metrics.spread(sums)}
        rows.append(row)
    return {"folds_requested": defn.walk_forward, "is_ratio": defn.wf_is_ratio, "folds": rows,
            "score": {seg: walkforward.mean(r[seg]["score"] for r in rows) for seg in ("is", "oos")}}


def _count(items) -> dict:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


def _equity_curve(series: BarSeries, res: Result) -> list:
    total: dict[int, float] = {}
    for points in res.equity.values():
        for bar, eq in points:
            total[bar] = total.get(bar, 0.0) + float(eq)
    bars = sorted(total)
    step = max(1, len(bars) // MAX_EQUITY_POINTS)
    out, peak = [], float("-inf")
    for i, b in enumerate(bars):
        peak = max(peak, total[b])
        if i % step == 0 or i == len(bars) - 1:
            out.append([_bar_ms(series, b) // 1000, round(total[b], 2), round(total[b] - peak, 2)])
    return out


def code_version() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5)
        return (out.stdout.strip() or "unknown") + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def save(outcome: Outcome, run=None, sweep=None):
    """Store the outcome as a BacktestRun (``run``: an existing RUNNING row to complete)."""
    from .models import BacktestRun, BacktestTrade

    d, series = outcome.definition, outcome.series
    fields = dict(
        name=d.name, strategy=d.strategy, params=d.params, effective_params=metrics.to_jsonable(outcome.effective_params),
        symbol=d.symbol, source=d.source, data_from=_dt(series.times_ms[0]), data_to=_dt(series.times_ms[-1]),
        bars=len(series), seeds=d.seeds, ticks_per_bar=d.ticks_per_bar, tick_interval_ms=d.tick_interval_ms,
        accounts=d.accounts, oos_fraction=d.oos_fraction, code_version=code_version(), summary=outcome.summary,
        inputs=input_report(any(b.volume > 0 for b in series.bars)), equity=outcome.equity,
        duration_s=round(outcome.duration_s, 3), status=BacktestRun.Status.DONE, finished_at=timezone.now(),
        sweep=sweep,
    )
    with transaction.atomic():
        if run is None:
            run = BacktestRun.objects.create(**fields)
        else:
            for k, v in fields.items():
                setattr(run, k, v)
            run.save()
        rows = []
        for seed, res in outcome.results.items():
            for t in res.trades:
                rows.append(BacktestTrade(
                    run=run, seed=seed, account=t.account, symbol=t.symbol, side=t.side, volume=t.volume,
                    open_time=_dt(_bar_ms(series, t.open_bar)), close_time=_dt(_bar_ms(series, t.close_bar)),
                    open_price=t.open_price, close_price=t.close_price, stop_loss=t.stop_loss,
                    take_profit=t.take_profit, reason=t.reason, profit=t.profit, commission=t.commission, net=t.net,
                    pips=t.pips, hold_s=(t.close_ms - t.open_ms) / 1000,
                    segment="is" if t.open_bar < outcome.split_bar else "oos"))
        BacktestTrade.objects.bulk_create(rows, batch_size=2000)
    log.info("backtest_saved", run_id=run.pk, trades=len(rows), seconds=round(outcome.duration_s, 2))
    return run


def run_and_save(defn: Definition, sweep=None):
    return save(run_definition(defn), sweep=sweep)


__all__ = ["Definition", "run_definition", "save", "run_and_save", "BacktestDataError", "BacktestConfigError"]
