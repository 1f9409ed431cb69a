"""A second, small strategy: simple moving-average cross on closed 1 m bars, fixed TP/SL in ticks.

The example of how to add a strategy (see ``signals.strategies``): a params dataclass with
validated ranges, a pure ``evaluate`` returning the same ``Decision``/``ExitPlan`` as the
volume-surge scalper, and a ``PreScreen`` (here: wake on the first tick of a new minute, the only
moment a closed-bar cross can appear).

Entry: the fast SMA of the closes of the last ``fast`` CLOSED 1 m bars crosses the slow SMA
between the previous closed bar and the last one (up → BUY, down → SELL). The forming bar is
ignored (a cross that can still vanish is not a cross). Exits: SL/TP ``sl_ticks``/``tp_ticks``
from the entry reference (ask for BUY, bid for SELL), time stop ``time_stop_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .strategies import Strategy, register
from .strategy import (
    Decision,
    ExitPlan,
    Reason,
    Side,
    StrategyParams,
    StrategyParamsError,
    _check_field,
    _entry_reference,
    _p,
    _tick_decimals,
    freshness_gate,
)

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class MACrossParams:
    max_staleness_ms: int = _p(5_000, "No signal when now - newest tick time exceeds this (ms).", 1, 3_600_000)
    cooldown_ms: int = _p(60_000, "Minimum time between two signals on one symbol (ms).", 0, 86_400_000)
    fast: int = _p(5, "Fast SMA period (closed 1 m bars).", 1, 500)
    slow: int = _p(20, "Slow SMA period (closed 1 m bars), > fast.", 2, 1_000)
    sl_ticks: int = _p(100, "Stop-loss distance from the entry, ticks.", 1, 1_000_000)
    tp_ticks: int = _p(150, "Take-profit distance from the entry, ticks.", 1, 1_000_000)
    time_stop_s: int = _p(3_600, "Close the position after this many seconds regardless.", 1, 86_400 * 7)

    def __post_init__(self) -> None:
        import dataclasses

        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name))
        if self.fast >= self.slow:
            raise StrategyParamsError(f"fast ({self.fast}) must be < slow ({self.slow})")

    from_dict = classmethod(StrategyParams.from_dict.__func__)
    to_dict = StrategyParams.to_dict
    describe = classmethod(StrategyParams.describe.__func__)


def _grid(price: float, tick_size: float) -> float:
    return round(round(price / tick_size) * tick_size, _tick_decimals(tick_size))


def evaluate_cross(window, params: MACrossParams, now_ms: int, last_signal_ms: int | None, tick_size: float) -> Decision:
    if not tick_size > 0:
        raise ValueError(f"{window.symbol}: tick_size must be > 0, got {tick_size!r}")
    symbol, tick_ts = window.symbol, window.last_tick_ms
    features: dict = {}

    def no(reason: Reason) -> Decision:
        return Decision(symbol, reason, features, tick_ts_ms=tick_ts)

    gated = freshness_gate(window, params.max_staleness_ms, params.cooldown_ms, now_ms, last_signal_ms, features)
    if gated:
        return no(gated)
    bars = window.bars_1m
    closed = bars.ts_ms + MINUTE_MS <= max(now_ms, tick_ts)
    close = bars.close[closed]
    if len(close) < params.slow + 1:
        return no(Reason.INSUFFICIENT_HISTORY)
    fast_now, fast_prev = float(np.mean(close[-params.fast:])), float(np.mean(close[-params.fast - 1:-1]))
    slow_now, slow_prev = float(np.mean(close[-params.slow:])), float(np.mean(close[-params.slow - 1:-1]))
    features.update(sma_fast=fast_now, sma_slow=slow_now)
    if fast_prev <= slow_prev and fast_now > slow_now:
        side = Side.BUY
    elif fast_prev >= slow_prev and fast_now < slow_now:
        side = Side.SELL
    else:
        return no(Reason.NO_CROSS)
    entry = _grid(_entry_reference(window.ticks, side), tick_size)
    sign = 1 if side is Side.BUY else -1
    sl = _grid(entry - sign * params.sl_ticks * tick_size, tick_size)
    tp = _grid(entry + sign * params.tp_ticks * tick_size, tick_size)
    plan = ExitPlan(entry, sl, tp, params.time_stop_s, "ticks")
    strength = min(1.0, abs(fast_now - slow_now) / (tick_size * max(1, params.sl_ticks)) * 10)
    features.update(entry_price=entry, stop_loss=sl, take_profit=tp, exit_basis="ticks", strength=strength)
    return Decision(symbol, Reason.SIGNAL, features, side=side, strength=strength, exit=plan, tick_ts_ms=tick_ts)


class NewMinutePreScreen:
    __slots__ = ("minute",)

    def __init__(self):
        self.minute = None

    def on_tick(self, ts_ms: int, price: float, volume: float) -> bool:
        minute = ts_ms // MINUTE_MS
        if minute != self.minute:
            first = self.minute is not None
            self.minute = minute
            return first
        return False


class MACrossStrategy(Strategy):
    name = "ma_cross"
    label = "Moving-average cross (fixed TP/SL)"
    params_type = MACrossParams

    def evaluate(self, window, params, now_ms, last_signal_ms, tick_size):
        return evaluate_cross(window, params, now_ms, last_signal_ms, tick_size)

    def prescreen(self, params) -> NewMinutePreScreen:
        return NewMinutePreScreen()


register(MACrossStrategy())
