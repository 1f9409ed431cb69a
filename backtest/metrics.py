"""Summary metrics of a backtest: pure functions of trades and an equity curve.

Definitions (what the report's numbers mean):

- ``trades``: closed trades (a partial close counts as one); ``win_rate`` = share with net > 0.
- ``expectancy`` = mean net PnL per trade (account currency, commission included).
- ``profit_factor`` = gross profit / gross loss (net, per trade); None without a losing trade.
- ``net_pnl`` (account currency, all accounts) and ``net_pips`` (sum of trade pips, all accounts).
- ``max_drawdown`` / ``max_drawdown_pct``: the largest fall of the equity curve (marked to
  market at every bar end and every close) from its running peak.
- ``sharpe`` / ``sortino``: mean / std (sortino: downside deviation) of DAILY returns of the
  equity curve, by the bars' own calendar dates, × √252; None with fewer than 2 days or no
  variation.
- ``exposure``: share of the replayed time with at least one position open.
- ``avg_hold_s``: mean time in a trade, on the replay clock.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal


def _f(x) -> float:
    return float(x)


def equity_stats(points: Sequence[tuple[int, float]]) -> dict:
    """``points``: (epoch ms of the bar, equity), in time order."""
    if not points:
        return {"max_drawdown": 0.0, "max_drawdown_pct": 0.0, "sharpe": None, "sortino": None, "days": 0}
    peak = -math.inf
    dd = dd_pct = 0.0
    for _, eq in points:
        peak = max(peak, eq)
        if peak - eq > dd:
            dd = peak - eq
        if peak > 0 and (peak - eq) / peak > dd_pct:
            dd_pct = (peak - eq) / peak
    daily: dict[str, float] = {}
    for t, eq in points:
        daily[datetime.fromtimestamp(t / 1000, tz=UTC).date().isoformat()] = eq
    values = list(daily.values())
    rets = [(b - a) / a for a, b in zip(values, values[1:]) if a]
    sharpe = sortino = None
    if len(rets) >= 2:
        mean = statistics.fmean(rets)
        sd = statistics.pstdev(rets)
        if sd > 0:
            sharpe = mean / sd * math.sqrt(252)
        down = math.sqrt(sum(min(0.0, r) ** 2 for r in rets) / len(rets))
        if down > 0:
            sortino = mean / down * math.sqrt(252)
    return {"max_drawdown": round(dd, 2), "max_drawdown_pct": round(dd_pct * 100, 3),
            "sharpe": None if sharpe is None else round(sharpe, 3),
            "sortino": None if sortino is None else round(sortino, 3), "days": len(daily)}


def trade_stats(trades: Sequence, span_ms: int | None) -> dict:
    nets = [_f(t.net) for t in trades]
    wins = [n for n in nets if n > 0]
    losses = [n for n in nets if n <= 0]
    gross_loss = -sum(n for n in losses)
    intervals = sorted((t.open_ms, t.close_ms) for t in trades)
    covered, cur_lo, cur_hi = 0, None, None
    for lo, hi in intervals:
        if cur_hi is None or lo > cur_hi:
            if cur_hi is not None:
                covered += cur_hi - cur_lo
            cur_lo, cur_hi = lo, hi
        else:
            cur_hi = max(cur_hi, hi)
    if cur_hi is not None:
        covered += cur_hi - cur_lo
    return {
        "trades": len(nets),
        "win_rate": round(len(wins) / len(nets), 4) if nets else None,
        "expectancy": round(statistics.fmean(nets), 2) if nets else None,
        "profit_factor": round(sum(wins) / gross_loss, 3) if gross_loss > 0 else None,
        "net_pnl": round(sum(nets), 2),
        "net_pips": round(sum(_f(t.pips) for t in trades), 1),
        "exposure": round(covered / span_ms, 4) if span_ms else None,
        "avg_hold_s": round(statistics.fmean((t.close_ms - t.open_ms) / 1000 for t in trades), 1) if trades else None,
    }


def summarise(trades: Sequence, equity: Sequence[tuple[int, float]], span_ms: int | None) -> dict:
    return {**trade_stats(trades, span_ms), **equity_stats(equity)}


SPREAD_KEYS = ("trades", "win_rate", "expectancy", "profit_factor", "net_pnl", "net_pips", "max_drawdown",
               "sharpe")


def spread(per_seed: Sequence[dict]) -> dict:
    """min / median / max of each key across seeds (None values left out)."""
    out = {}
    for key in SPREAD_KEYS:
        vals = [s[key] for s in per_seed if s.get(key) is not None]
        if vals:
            out[key] = {"min": min(vals), "median": round(statistics.median(vals), 4), "max": max(vals)}
    return out


def score(summary: dict) -> float:
    """One number to rank sweep results: net PnL per unit of drawdown (a return/risk ratio), the
    drawdown floored at 1 % of the starting equity so a lucky run with no drawdown does not get an
    infinite score; 0 without trades."""
    if not summary.get("trades"):
        return 0.0
    floor = max(0.01 * summary.get("start_equity", 0.0), 1.0)
    return round(summary["net_pnl"] / max(summary["max_drawdown"], floor), 4)


def ranking_scores(summary: dict | None) -> tuple[float | None, float | None, str]:
    """(out-of-sample, in-sample, kind) score a run is ranked on: the means over the walk-forward
    folds when the run has them, else the single split's."""
    summary = summary or {}
    wf = summary.get("walk_forward")
    if wf:
        return wf["score"].get("oos"), wf["score"].get("is"), "walk-forward"
    score = summary.get("score", {})
    return score.get("oos"), score.get("is"), "split"


def to_jsonable(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value
