"""The backtest dashboard page: the latest runs, and one run's equity/drawdown chart, its price
with the trades marked, and its trades (server-side SVG from dashboard.charts)."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib import admin
from django.shortcuts import get_object_or_404, render

from dashboard.charts import Box, Series, line_chart

from .admin import prop_table, walk_forward_table
from .models import BacktestRun

TRADES_SHOWN = 200


def equity_charts(run: BacktestRun) -> tuple[str, str]:
    eq = [(t, e) for t, e, _ in run.equity or []]
    dd = [(t, d) for t, _, d in run.equity or []]
    box = Box(width=900, height=240)
    return (line_chart([Series("equity", eq)], box, label="equity", empty_message="No equity curve"),
            line_chart([Series("drawdown", dd, color="#e15759")], box, label="drawdown", zero_line=True,
                       empty_message="No drawdown"))


def price_chart(run: BacktestRun, seed: int | None) -> str:
    """The bars' closes with every trade of ``seed`` marked: entry → exit, green when it won."""
    from .data import BacktestDataError, load_series

    try:
        series = load_series(run.source, run.symbol, None, None)
    except BacktestDataError:
        return line_chart([], label="price", empty_message="The run's data is no longer available")
    lo, hi = run.data_from.timestamp() * 1000, run.data_to.timestamp() * 1000
    pts = [(t / 1000, b.close) for t, b in zip(series.times_ms, series.bars) if lo <= t <= hi]
    step = max(1, len(pts) // 1500)
    lines = [Series(f"{run.symbol} close", pts[::step], color="#4e79a7", width=1.0)]
    for t in run.trades.filter(seed=seed)[:TRADES_SHOWN]:
        color = "#59a14f" if t.net > 0 else "#e15759"
        lines.append(Series(f"{t.side} {t.net}", [(t.open_time.timestamp(), float(t.open_price)),
                                                  (t.close_time.timestamp() + 1, float(t.close_price))],
                            color=color, width=3.0))
    return line_chart(lines, Box(width=900, height=260), label="price with trades")


@staff_member_required
def run_page(request, pk: int | None = None):
    runs = list(BacktestRun.objects.filter(status=BacktestRun.Status.DONE).order_by("-created_at")[:20])
    run = get_object_or_404(BacktestRun, pk=pk) if pk else (runs[0] if runs else None)
    context = {**admin.site.each_context(request), "title": "Backtests", "runs": runs, "run": run}
    if run is not None:
        seed = run.seeds[0] if run.seeds else None
        context["equity_svg"], context["drawdown_svg"] = equity_charts(run)
        context["price_svg"] = price_chart(run, seed)
        context["trades"] = run.trades.filter(seed=seed)[:TRADES_SHOWN]
        context["per_seed"] = (run.summary or {}).get("per_seed", {})
        context["aggregate"] = run.total("all")
        context["score"] = (run.summary or {}).get("score", {})
        context["walk_forward"] = walk_forward_table(run.summary)
        context["prop"] = prop_table(run.summary)
    return render(request, "backtest/run.html", context)
