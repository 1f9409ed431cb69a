"""CSV and JSON export of a stored run (the admin's download links and ``manage.py backtest``)."""

from __future__ import annotations

import csv
import io
import json

TRADE_COLUMNS = ("seed", "segment", "account", "symbol", "side", "volume", "open_time", "open_price", "close_time",
                 "close_price", "stop_loss", "take_profit", "reason", "profit", "commission", "net", "pips", "hold_s")
RUN_FIELDS = ("id", "name", "status", "strategy", "params", "effective_params", "symbol", "source", "data_from",
              "data_to", "bars", "seeds", "ticks_per_bar", "tick_interval_ms", "accounts", "oos_fraction",
              "code_version", "summary", "inputs", "duration_s")


def _plain(v):
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if v is None or isinstance(v, (int, float, str, bool, list, dict)):
        return v
    return str(v)


def trades_csv(run) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(TRADE_COLUMNS)
    for t in run.trades.order_by("seed", "open_time", "id").values_list(*TRADE_COLUMNS):
        w.writerow([_plain(v) for v in t])
    return out.getvalue()


def run_json(run, with_trades: bool = True) -> str:
    doc = {f: _plain(getattr(run, f)) for f in RUN_FIELDS}
    doc["equity"] = run.equity
    if with_trades:
        doc["trades"] = [dict(zip(TRADE_COLUMNS, map(_plain, t)))
                         for t in run.trades.order_by("seed", "open_time", "id").values_list(*TRADE_COLUMNS)]
    return json.dumps(doc, indent=1)
