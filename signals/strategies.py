"""The strategy interface: what the live analysis and the backtest both call, and nothing else.

Why an interface: the beat-driven analysis (``signals.service.run_analysis``), a future
event-driven wake-up in the feed (issue 16) and the backtest engine (``backtest.engine``) must run
the *same* decision code, or a backtest says nothing about live trading. They differ only in
where the ``MarketWindow`` comes from (Redis, or a window built in memory from replayed ticks) and
what the clock is (wall time, or the simulated clock). Everything a strategy decides is here:

``Strategy`` (one instance per kind, stateless, registered in ``STRATEGIES`` by ``name``):

- ``parse_params(overrides) -> params``: defaults + overrides, validated (unknown key, wrong type,
  out of range → ``StrategyParamsError`` naming the key). ``describe()`` documents every
  parameter with its range (admin, sweeps).
- ``evaluate(window, params, now_ms, last_signal_ms, tick_size) -> Decision``: PURE — no I/O, no
  clock (``now_ms`` is passed in). ``Decision.reason`` names why nothing happened; a signal carries
  ``side``, ``strength`` (0..1) and an ``ExitPlan`` (entry, SL, TP on the tick grid, time stop).
  ``last_signal_ms`` is the symbol's previous signal time: the cool-down is the strategy's rule.
- ``prescreen(params) -> PreScreen``: a NEW per-symbol wake-up state. The caller feeds it every
  tick as it arrives (``on_tick(ts_ms, price, volume) -> bool``); True means "analyse this
  symbol now, don't wait for the next beat". It must be cheap (O(1) per tick, no numpy) and is a
  hint only: beat still analyses every symbol every period, so a missed wake-up costs latency,
  never a signal. Each strategy wakes on what matters to it: the volume-surge scalper on the
  current second's activity against an incremental baseline, the moving-average cross on a new
  1 m bar.

The backtest drives ``prescreen`` exactly like the live feed will: an analysis pass at every
beat time AND at every tick where the pre-screen fires (``backtest.engine``).

Adding a strategy: a params dataclass (``signals.strategy._p`` fields give ranges and docs), a
pure ``evaluate``, a ``PreScreen``, a ``Strategy`` subclass registered in ``STRATEGIES``. See
``signals/ma_cross.py`` for a small complete example.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from marketdata.windows import MarketWindow

from .strategy import DEFAULT_PARAMS, Decision, StrategyParams, StrategyParamsError, evaluate

DEFAULT_STRATEGY = "volume_surge"


class PreScreen(Protocol):
    def on_tick(self, ts_ms: int, price: float, volume: float) -> bool: ...


class Strategy:
    """Base class: subclasses set ``name``, ``params_type``, ``label`` and implement ``evaluate``
    and ``prescreen``."""

    name: str = ""
    label: str = ""
    params_type: type = StrategyParams

    def parse_params(self, overrides: Mapping[str, Any] | None):
        return self.params_type.from_dict(overrides)

    def default_params(self):
        return self.params_type()

    def describe(self) -> dict[str, dict[str, Any]]:
        return self.params_type.describe()

    def evaluate(self, window: MarketWindow, params, now_ms: int, last_signal_ms: int | None,
                 tick_size: float) -> Decision:
        raise NotImplementedError

    def prescreen(self, params) -> PreScreen:
        raise NotImplementedError


class VolumeSurgePreScreen:
    """Wake analysis when the current second's activity is well above an incremental baseline.

    Activity per second is the traded volume, or the tick count when the ticks carry no volume
    (the ``volume_source='auto'`` rule of the analysis). The baseline is an exponential moving
    average of completed seconds' activity with a time constant of ``baseline_window_s``; quiet
    seconds between ticks decay it. Fires at most once per second, only once the baseline covers
    ``min_baseline_s`` seconds, and when the current second reaches ``surge_min_ratio`` × baseline
    (the analysis' own ratio, without the no-book multiplier: the pre-screen must wake at least as
    often as the analysis could fire).
    """

    __slots__ = ("ratio", "alpha", "min_seconds", "second", "activity", "baseline", "seconds", "fired_second",
                 "use_volume")

    def __init__(self, params: StrategyParams):
        self.ratio = params.surge_min_ratio
        self.alpha = 1.0 / max(1, params.baseline_window_s)
        self.min_seconds = params.min_baseline_s
        self.use_volume = params.volume_source == "volume"
        self.second = -1
        self.activity = 0.0
        self.baseline = 0.0
        self.seconds = 0
        self.fired_second = -1

    def on_tick(self, ts_ms: int, price: float, volume: float) -> bool:
        second = ts_ms // 1000
        if second != self.second:
            if self.second >= 0 and second > self.second:
                # close the finished second, then decay over the silent ones
                # running mean until the window is covered, then an EMA (no start-up bias)
                self.baseline += max(self.alpha, 1.0 / (self.seconds + 1)) * (self.activity - self.baseline)
                gap = second - self.second - 1
                if gap > 0:
                    self.baseline *= (1.0 - self.alpha) ** min(gap, 10_000)
                self.seconds += 1 + gap
            if second > self.second:
                self.second = second
                self.activity = 0.0
        if volume > 0 and not self.use_volume:
            self.use_volume = True  # traded volume seen: measure volume, like volume_source='auto'
            self.activity = 0.0
            self.baseline = 0.0
            self.seconds = 0
        self.activity += volume if self.use_volume else 1.0
        if self.seconds < self.min_seconds or self.fired_second == second:
            return False
        if self.activity >= self.ratio * max(self.baseline, 1e-12):
            self.fired_second = second
            return True
        return False


class VolumeSurgeStrategy(Strategy):
    name = "volume_surge"
    label = "Volume-surge scalper"
    params_type = StrategyParams

    def default_params(self):
        return DEFAULT_PARAMS

    def parse_params(self, overrides):
        return StrategyParams.from_dict(overrides) if overrides else DEFAULT_PARAMS

    def evaluate(self, window, params, now_ms, last_signal_ms, tick_size):
        return evaluate(window, params, now_ms, last_signal_ms, tick_size)

    def prescreen(self, params) -> VolumeSurgePreScreen:
        return VolumeSurgePreScreen(params)


STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    if not strategy.name or strategy.name in STRATEGIES:
        raise ValueError(f"strategy name {strategy.name!r} is empty or already registered")
    STRATEGIES[strategy.name] = strategy
    return strategy


register(VolumeSurgeStrategy())


def get_strategy(name: str | None) -> Strategy:
    """The registered strategy ``name`` (None/"" → the default). Unknown → StrategyParamsError."""
    _load_builtin()
    key = name or DEFAULT_STRATEGY
    try:
        return STRATEGIES[key]
    except KeyError:
        raise StrategyParamsError(f"unknown strategy {key!r}; valid: {', '.join(sorted(STRATEGIES))}") from None


def strategy_choices() -> list[tuple[str, str]]:
    _load_builtin()
    return [(s.name, s.label or s.name) for s in STRATEGIES.values()]


def _load_builtin() -> None:
    if "ma_cross" not in STRATEGIES:
        from . import ma_cross  # noqa: F401 - registers itself


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
