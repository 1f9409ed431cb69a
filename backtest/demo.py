"""The demo backtest of ``make run`` (``manage.py backtest --demo``): the volume-surge
scalper on the 5,000 EURUSD hourly bars shipped by the ``backtesting`` package, three seeds, so
the dashboard's Backtests page has a finished run to show. Run once per code version."""

from __future__ import annotations

from .models import BacktestRun
from .runner import Definition, code_version, run_and_save

DEMO_NAME = "demo: EURUSD hourly bars (backtesting package)"


def ensure_demo_run() -> str:
    version = code_version()
    existing = BacktestRun.objects.filter(name=DEMO_NAME, status=BacktestRun.Status.DONE,
                                          code_version=version).first()
    if existing is not None:
        return f"demo backtest #{existing.pk} already there (code {version})"
    run = run_and_save(Definition(name=DEMO_NAME, seeds=[1, 2, 3]))
    agg = run.total("all").get("net_pnl", {})
    return (f"demo backtest #{run.pk}: {run.bars} EURUSD bars, seeds {run.seeds}, net PnL across seeds "
            f"{agg.get('min')} … {agg.get('max')} USD ({run.duration_s:.0f} s) — /backtests/")
