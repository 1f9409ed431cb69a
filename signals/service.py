"""The I/O around the pure strategy: which symbols, which parameters, what was signalled last,
and turning a Decision into a stored ``Signal`` handed to order dispatch.

``analyze_market`` (signals.tasks) is a thin wrapper around ``run_analysis`` here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction

from marketdata.models import Symbol
from tradeops.celery import app
from tradeops.logging import get_logger
from tradeops.money import round_to_step, to_decimal

from .models import Signal, StrategyConfig
from .strategy import DEFAULT_PARAMS, Decision, Reason, StrategyParams, analyse_all

log = get_logger(__name__)

LAST_SIGNAL_KEY = "signals:last_signal_ms"  # hash symbol -> ms; survives worker restarts (cool-down)
STALE_WARN_KEY = "signals:stale_warned:{symbol}"  # one warning per symbol per minute, not per second
DISPATCH_TASK = "orders.dispatch_signal"


@dataclass(slots=True)
class AnalysisRun:
    symbols: int
    signals: list[int]
    reasons: dict[str, int]
    read_ms: float
    analyse_ms: float


def enabled_symbols() -> list[Symbol]:
    return list(Symbol.objects.filter(enabled=True).only("id", "name", "tick_size"))


def load_params(symbols: list[Symbol]) -> dict[str, StrategyParams]:
    """Defaults, overridden by the default StrategyConfig row, overridden by a symbol's row.
    A row that fails validation is logged and ignored (the admin validates on save)."""
    rows = list(StrategyConfig.objects.filter(enabled=True).select_related("symbol"))
    base: dict = {}
    per_symbol: dict[str, dict] = {}
    for row in rows:
        if row.symbol_id is None:
            base.update(row.params or {})
        else:
            per_symbol[row.symbol.name] = row.params or {}
    params: dict[str, StrategyParams] = {}
    for symbol in symbols:
        merged = {**base, **per_symbol.get(symbol.name, {})}
        try:
            params[symbol.name] = StrategyParams.from_dict(merged) if merged else DEFAULT_PARAMS
        except (ValueError, TypeError) as exc:
            log.error("strategy_params_invalid", symbol=symbol.name, error=str(exc))
            params[symbol.name] = DEFAULT_PARAMS
    return params


def last_signal_times(redis, names: list[str]) -> dict[str, int | None]:
    values = redis.hmget(LAST_SIGNAL_KEY, names) if names else []
    return {name: int(v) if v is not None else None for name, v in zip(names, values)}


def run_analysis(redis, now_ms: int | None = None) -> AnalysisRun:
    """Read every enabled symbol's window in one round trip, analyse, store and dispatch signals."""
    from marketdata.reader import read_windows

    symbols = enabled_symbols()
    names = [s.name for s in symbols]
    if not names:
        return AnalysisRun(0, [], {}, 0.0, 0.0)
    t0 = time.perf_counter()
    windows = read_windows(redis, names)
    t1 = time.perf_counter()
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    decisions = analyse_all(
        windows,
        load_params(symbols),
        now_ms,
        last_signal_times(redis, names),
        {s.name: float(s.tick_size) for s in symbols},
    )
    t2 = time.perf_counter()
    by_name = {s.name: s for s in symbols}
    reasons: dict[str, int] = {}
    created: list[int] = []
    for name, decision in decisions.items():
        reasons[str(decision.reason)] = reasons.get(str(decision.reason), 0) + 1
        if decision.reason == Reason.STALE_DATA:
            _warn_stale(redis, name, decision, now_ms)
        if decision.is_signal:
            signal = record_signal(by_name[name], decision)
            redis.hset(LAST_SIGNAL_KEY, name, now_ms)
            created.append(signal.pk)
    return AnalysisRun(len(names), created, reasons, (t1 - t0) * 1000, (t2 - t1) * 1000)


def _warn_stale(redis, symbol: str, decision: Decision, now_ms: int) -> None:
    if redis.set(STALE_WARN_KEY.format(symbol=symbol), 1, nx=True, ex=60):
        age = now_ms - decision.tick_ts_ms if decision.tick_ts_ms else None
        log.warning("stale_market_data", symbol=symbol, last_tick_age_ms=age)


def _price(value: float | None, tick_size: Decimal) -> Decimal | None:
    return None if value is None else round_to_step(to_decimal(value), tick_size)


def record_signal(symbol: Symbol, decision: Decision) -> Signal:
    """Store the signal and hand it to order dispatch once the row is committed."""
    plan = decision.exit
    tick_at = datetime.fromtimestamp(decision.tick_ts_ms / 1000, tz=UTC) if decision.tick_ts_ms else None
    with transaction.atomic():
        signal = Signal.objects.create(
            symbol=symbol,
            side=str(decision.side),
            strength=Decimal(str(round(min(max(decision.strength, 0.0), 1.0), 4))),
            features=decision.features,
            entry_price=_price(plan.entry_price if plan else None, symbol.tick_size),
            stop_loss=_price(plan.stop_loss if plan else None, symbol.tick_size),
            take_profit=_price(plan.take_profit if plan else None, symbol.tick_size),
            time_stop_seconds=plan.time_stop_s if plan else None,
            tick_at=tick_at,
        )
        transaction.on_commit(lambda: dispatch(signal.pk))
    log.info("signal", signal_id=signal.pk, symbol=symbol.name, side=signal.side, strength=float(signal.strength),
             latency_ms=signal.latency_ms)
    return signal


def dispatch(signal_id: int) -> None:
    """By name, so analysis never imports the order engine; the message waits on the orders queue."""
    app.send_task(DISPATCH_TASK, args=[signal_id], queue="orders")
