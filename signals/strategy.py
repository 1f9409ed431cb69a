"""The volume-surge scalping strategy: pure ``evaluate`` of one symbol's market window.

Entry (every step is a named reason when it fails, checked in this order):
  stale_data -> cooldown -> insufficient_history -> no_surge -> direction_unclear ->
  flow_disagrees -> rsi_extreme -> trend_disagrees -> imbalance_disagrees -> into_wall -> weak
The cheap checks come first: most symbols most of the time stop at ``no_surge`` and never pay
for the book, levels or TA-Lib.

Without a book (``window.book`` None or empty, the real Match-Trader case) there is no
imbalance confirmation and no walls; to compensate, the surge thresholds (ratio and z-score) are
multiplied by ``no_book_threshold_multiplier`` (default 1.5, i.e. stricter). Swing levels still
apply.

See signals/ANALYSIS.md for every formula and parameter.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from marketdata.windows import MarketWindow
from signals.analysis.indicators import compute_indicators
from signals.analysis.levels import support_resistance
from signals.analysis.orderbook import analyse_book, has_depth
from signals.analysis.volume import analyse_volume, clean_ticks

logger = logging.getLogger(__name__)


class Side(StrEnum):
    """The ONE side type of the system: the strategy decides it, ``Signal.side``, ``Order.side``
    and ``Position.side`` store it (``SIDE_CHOICES``), the broker boundary sends it."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


SIDE_CHOICES = [(Side.BUY.value, "Buy"), (Side.SELL.value, "Sell")]


class Reason(StrEnum):
    """Why ``evaluate`` decided what it decided (machine-readable, stored with the decision)."""

    SIGNAL = "signal"
    STALE_DATA = "stale_data"  # newest tick older than max_staleness_ms (or no tick at all)
    COOLDOWN = "cooldown"  # a signal on this symbol less than cooldown_ms ago
    INSUFFICIENT_HISTORY = "insufficient_history"  # baseline too short / dead, or indicators missing when required
    NO_SURGE = "no_surge"
    DIRECTION_UNCLEAR = "direction_unclear"  # price moved less than min_move_ticks over the recent window
    FLOW_DISAGREES = "flow_disagrees"  # buy/sell ratio does not back the price direction
    RSI_EXTREME = "rsi_extreme"  # buying overbought / selling oversold
    TREND_DISAGREES = "trend_disagrees"  # EMA fast vs slow against the side (only if required)
    IMBALANCE_DISAGREES = "imbalance_disagrees"  # book does not confirm (only with a book)
    INTO_WALL = "into_wall"  # a level/wall within block_distance_ticks in the trade direction
    WEAK = "weak"  # strength below min_strength
    BAD_DATA = "bad_data"  # no valid tick left, or numbers that overflow (the feed refuses NaN/inf/negatives)
    ANALYSIS_ERROR = "analysis_error"  # unexpected exception (analyse_all only); a bug, logged
    NO_CROSS = "no_cross"  # moving-average cross strategy (signals.ma_cross): no cross on the last closed bar


class StrategyParamsError(ValueError):
    """Invalid strategy parameters (unknown key, wrong type, out of range)."""


def _p(default: Any, doc: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
       choices: tuple[str, ...] | None = None):
    """A parameter field: default, documentation and the allowed range [lo, hi] (or (lo, hi]),
    or the allowed ``choices`` for a str field."""
    return field(default=default, metadata={"doc": doc, "min": lo, "max": hi, "min_open": lo_open, "choices": choices})


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """Every threshold of the strategy. Stored per symbol as JSON overrides (``from_dict``)."""

    # data quality
    max_staleness_ms: int = _p(5_000, "No signal when now - newest tick time exceeds this (ms).", 1, 3_600_000)
    cooldown_ms: int = _p(60_000, "Minimum time between two signals on one symbol (ms).", 0, 86_400_000)
    # volume surge
    volume_source: str = _p("auto", "What counts as volume: 'volume' (traded size), 'ticks' (tick count) or 'auto' (tick count when the ticks carry no traded volume, e.g. quote-only Match-Trader).", choices=("auto", "volume", "ticks"))
    recent_window_s: int = _p(5, "Length of the recent (surge) window in seconds (the current second counts, partly elapsed).", 2, 300)
    baseline_window_s: int = _p(300, "Length of the baseline window before it, in seconds.", 10, 3_600)
    min_baseline_s: int = _p(60, "Baseline seconds that must be covered by data, else insufficient_history.", 1, 3_600)
    surge_min_ratio: float = _p(3.0, "Recent volume rate / baseline rate needed for a surge.", 1.0, 1_000.0)
    surge_min_zscore: float = _p(3.0, "z-score of the recent rate against the baseline needed for a surge.", 0.0, 1_000.0)
    surge_min_volume: float = _p(0.0, "Minimum total volume in the recent window (0 = off).", 0.0, None)
    zscore_std_floor: float = _p(0.1, "z-score denominator is at least this fraction of the baseline rate.", 0.0, 10.0, lo_open=True)
    strength_full_ratio: float = _p(10.0, "Surge ratio at which the volume strength reaches 1.", 1.0, 10_000.0, lo_open=True)
    no_book_threshold_multiplier: float = _p(1.5, "Surge ratio and z thresholds are multiplied by this when there is no book.", 1.0, 10.0)
    min_move_ticks: float = _p(1.0, "Price must have moved at least this many ticks over the recent window, else direction_unclear.", 0.0, 10_000.0)
    # aggressor flow
    min_buy_ratio: float = _p(0.6, "BUY needs buy_ratio >= this; SELL needs buy_ratio <= 1 - this.", 0.5, 1.0)
    # order book
    book_levels: int = _p(5, "Top levels per side used for the weighted imbalance.", 1, 100)
    min_imbalance: float = _p(0.2, "BUY needs imbalance >= this, SELL <= -this (only with a book).", 0.0, 1.0)
    wall_size_multiple: float = _p(3.0, "A level is a wall when its size > this x the median level size.", 1.0, 1_000.0)
    wall_min_levels: int = _p(3, "Non-empty levels needed before any wall is detected.", 1, 1_000)
    # support / resistance
    use_swing_levels: bool = _p(True, "Include 1 m swing pivots as levels (walls are always used).")
    pivot_width: int = _p(2, "Bars on each side a fractal pivot must exceed.", 1, 50)
    level_tolerance_ticks: float = _p(3.0, "Levels closer than this (ticks) merge into one.", 0.0, 10_000.0)
    block_distance_ticks: float = _p(5.0, "No entry with a level/wall this close (ticks) in the trade direction.", 0.0, 100_000.0)
    # indicators (TA-Lib, on 1 m bars)
    rsi_period: int = _p(14, "RSI period (1 m bars).", 2, 500)
    ema_fast: int = _p(9, "Fast EMA period (1 m bars).", 2, 500)
    ema_slow: int = _p(21, "Slow EMA period (1 m bars), > ema_fast.", 2, 1_000)
    atr_period: int = _p(14, "ATR period (1 m bars).", 1, 500)
    rsi_overbought: float = _p(80.0, "No BUY when RSI >= this.", 0.0, 100.0)
    rsi_oversold: float = _p(20.0, "No SELL when RSI <= this.", 0.0, 100.0)
    require_ema_trend: bool = _p(False, "If true, BUY needs ema_fast > ema_slow and SELL the opposite.")
    require_indicators: bool = _p(False, "If true, missing RSI/EMA/ATR (too few bars) is insufficient_history; else those filters are skipped.")
    # exits
    sl_atr_mult: float = _p(1.0, "Stop-loss distance = this x ATR.", 0.0, 100.0, lo_open=True)
    tp_atr_mult: float = _p(1.5, "Take-profit distance = this x ATR.", 0.0, 100.0, lo_open=True)
    sl_ticks: int = _p(20, "Stop-loss distance in ticks when ATR is unavailable.", 1, 1_000_000)
    tp_ticks: int = _p(30, "Take-profit distance in ticks when ATR is unavailable.", 1, 1_000_000)
    min_stop_ticks: int = _p(2, "SL and TP are at least this many ticks from entry.", 1, 1_000_000)
    time_stop_s: int = _p(120, "Close the position after this many seconds regardless.", 1, 86_400)
    min_strength: float = _p(0.0, "No signal below this strength.", 0.0, 1.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            _check_field(f, value)
            if f.type in ("float", float) and isinstance(value, int):
                object.__setattr__(self, f.name, float(value))  # JSON 4 -> 4.0: one type per field
        if self.ema_fast >= self.ema_slow:
            raise StrategyParamsError(f"ema_fast ({self.ema_fast}) must be < ema_slow ({self.ema_slow})")
        if self.rsi_oversold >= self.rsi_overbought:
            raise StrategyParamsError(
                f"rsi_oversold ({self.rsi_oversold}) must be < rsi_overbought ({self.rsi_overbought})"
            )
        if self.min_baseline_s > self.baseline_window_s:
            raise StrategyParamsError(
                f"min_baseline_s ({self.min_baseline_s}) must be <= baseline_window_s ({self.baseline_window_s})"
            )

    @classmethod
    def from_dict(cls, overrides: Mapping[str, Any] | None) -> "StrategyParams":
        """Defaults with ``overrides`` applied. Unknown keys, wrong types and out-of-range values
        raise StrategyParamsError naming the key (and, for unknown keys, the valid ones)."""
        overrides = dict(overrides or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise StrategyParamsError(
                f"unknown strategy parameter(s): {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
            )
        return cls(**overrides)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def describe(cls) -> dict[str, dict[str, Any]]:
        """name -> {default, doc, min, max}: for the admin and the docs."""
        return {
            f.name: {"default": f.default, "doc": f.metadata["doc"], "min": f.metadata["min"], "max": f.metadata["max"],
                     "choices": f.metadata["choices"]}
            for f in dataclasses.fields(cls)
        }


_FIELD_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _check_field(f: dataclasses.Field, value: Any) -> None:
    kind = _FIELD_TYPES[f.type] if isinstance(f.type, str) else f.type
    if kind is bool or kind is str:
        ok = isinstance(value, kind)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:  # float: ints are fine too (JSON has one number type)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise StrategyParamsError(f"{f.name}: expected {kind.__name__}, got {value!r} ({type(value).__name__})")
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise StrategyParamsError(f"{f.name}: {value!r} must be one of {', '.join(choices)}")
    lo, hi, lo_open = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("min_open")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise StrategyParamsError(f"{f.name}: {value!r} must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        raise StrategyParamsError(f"{f.name}: {value!r} must be <= {hi}")


DEFAULT_PARAMS = StrategyParams()


@dataclass(frozen=True, slots=True)
class ExitPlan:
    """Prices on the symbol's tick grid. BUY: stop_loss < entry_price < take_profit; SELL mirrored."""

    entry_price: float  # reference: last ask for BUY, last bid for SELL (last price if missing)
    stop_loss: float
    take_profit: float
    time_stop_s: int
    basis: str  # "atr" or "ticks"


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of ``evaluate``. ``reason`` is Reason.SIGNAL exactly when ``side`` is set.

    ``features`` is a flat JSON-serialisable dict (floats, ints, str) of what was computed before
    the decision was made; missing features (no book, not enough bars) are left out.
    ``tick_ts_ms`` is the venue time of the newest tick in the window (tick -> signal latency).
    """

    symbol: str
    reason: Reason
    features: dict[str, float | int | str]
    side: Side | None = None
    strength: float = 0.0
    exit: ExitPlan | None = None
    tick_ts_ms: int | None = None

    @property
    def is_signal(self) -> bool:
        return self.side is not None


def _tick_decimals(tick_size: float) -> int:
    """Decimals to round grid prices to: the tick's own decimals plus 2 of margin
    (0.00001 -> 7, 0.25 -> 3, 5 -> 2); only removes float noise from k x tick_size."""
    return max(0, min(12, -math.floor(math.log10(tick_size)) + 2))


def _to_grid(price: float, tick_size: float, rounding) -> float:
    ticks = rounding(price / tick_size + (1e-9 if rounding is math.floor else -1e-9))
    return round(ticks * tick_size, _tick_decimals(tick_size))


def exit_plan(side: Side, entry: float, atr_value: float, tick_size: float, params: StrategyParams) -> ExitPlan:
    """SL/TP at sl_atr_mult/tp_atr_mult x ATR from the entry (sl_ticks/tp_ticks without ATR),
    at least min_stop_ticks away, rounded away from the entry onto the tick grid."""
    if math.isfinite(atr_value) and atr_value > 0:
        sl_dist, tp_dist, basis = params.sl_atr_mult * atr_value, params.tp_atr_mult * atr_value, "atr"
    else:
        sl_dist, tp_dist, basis = params.sl_ticks * tick_size, params.tp_ticks * tick_size, "ticks"
    floor_dist = params.min_stop_ticks * tick_size
    sl_dist, tp_dist = max(sl_dist, floor_dist), max(tp_dist, floor_dist)
    entry_on_grid = round(round(entry / tick_size) * tick_size, _tick_decimals(tick_size))
    if side is Side.BUY:
        sl = _to_grid(entry - sl_dist, tick_size, math.floor)
        tp = _to_grid(entry + tp_dist, tick_size, math.ceil)
    else:
        sl = _to_grid(entry + sl_dist, tick_size, math.ceil)
        tp = _to_grid(entry - tp_dist, tick_size, math.floor)
    return ExitPlan(entry_on_grid, sl, tp, params.time_stop_s, basis)


def _entry_reference(ticks, side: Side) -> float:
    quote = float(ticks.ask[-1] if side is Side.BUY else ticks.bid[-1])
    return quote if math.isfinite(quote) and quote > 0 else float(ticks.price[-1])


def cooling_down(now_ms: int, last_signal_ms: int | None, cooldown_ms: float) -> bool:
    """The cool-down rule, its one home: a signal on the symbol less than ``cooldown_ms`` ago.
    ``freshness_gate`` applies it; a wake-up applies it before reading the market window
    (``signals.service.run_analysis``), since no window changes its answer."""
    return last_signal_ms is not None and now_ms - last_signal_ms < cooldown_ms


def freshness_gate(window, max_staleness_ms: float, cooldown_ms: float, now_ms: int, last_signal_ms: int | None,
                   features: dict) -> Reason | None:
    """The checks every strategy makes first (the volume scalper and ``ma_cross`` alike): ticks
    present and fresh, the symbol's cool-down over. Records ``staleness_ms`` in ``features``."""
    tick_ts = window.last_tick_ms
    if tick_ts is None or len(window.ticks) == 0:
        return Reason.STALE_DATA
    features["staleness_ms"] = int(now_ms - tick_ts)
    if now_ms - tick_ts > max_staleness_ms:
        return Reason.STALE_DATA
    if cooling_down(now_ms, last_signal_ms, cooldown_ms):
        return Reason.COOLDOWN
    return None


def evaluate(
    window: MarketWindow,
    params: StrategyParams,
    now_ms: int,
    last_signal_ms: int | None,
    tick_size: float,
) -> Decision:
    """Decide whether ``window`` justifies a scalp entry now. Pure: no I/O, no clock."""
    if not tick_size > 0:
        raise ValueError(f"{window.symbol}: tick_size must be > 0, got {tick_size!r}")
    symbol = window.symbol
    tick_ts = window.last_tick_ms
    features: dict[str, float | int | str] = {}

    def no(reason: Reason) -> Decision:
        return Decision(symbol, reason, features, tick_ts_ms=tick_ts)

    gated = freshness_gate(window, params.max_staleness_ms, params.cooldown_ms, now_ms, last_signal_ms, features)
    if gated:
        return no(gated)

    # totality: a tick the feed should have refused (NaN/inf/negative) costs that tick only
    ticks, dropped = clean_ticks(window.ticks)
    if dropped:
        features["dropped_ticks"] = dropped
    if len(ticks) == 0:
        return no(Reason.BAD_DATA)

    book_present = has_depth(window.book)
    strictness = 1.0 if book_present else params.no_book_threshold_multiplier
    # A venue clock ahead of ours must not push the newest ticks out of the recent window.
    vol = analyse_volume(
        ticks,
        window.bars_1s,
        max(now_ms, tick_ts),
        recent_s=params.recent_window_s,
        baseline_s=params.baseline_window_s,
        min_baseline_s=params.min_baseline_s,
        min_ratio=params.surge_min_ratio * strictness,
        min_zscore=params.surge_min_zscore * strictness,
        min_recent_volume=params.surge_min_volume,
        std_floor=params.zscore_std_floor,
        strength_full_ratio=params.strength_full_ratio,
        volume_source=params.volume_source,
    )
    features.update(
        book="present" if book_present else "absent",
        volume_source=vol.volume_source,
        volume_ratio=vol.ratio,
        volume_zscore=vol.zscore,
        recent_volume=vol.recent_volume,
        baseline_rate=vol.baseline_rate,
        baseline_seconds=vol.baseline_seconds,
        buy_ratio=vol.buy_ratio,
        price_change=vol.price_change,
    )
    if not vol.valid:
        return no(Reason.BAD_DATA)
    if not vol.enough_history:
        return no(Reason.INSUFFICIENT_HISTORY)
    if not vol.is_surge:
        return no(Reason.NO_SURGE)
    features["move_ticks"] = round(vol.price_change / tick_size, 6)
    if vol.direction == 0 or abs(features["move_ticks"]) < params.min_move_ticks:
        return no(Reason.DIRECTION_UNCLEAR)
    side = Side.BUY if vol.direction > 0 else Side.SELL
    features["side_candidate"] = side.value
    flow_ok = vol.buy_ratio >= params.min_buy_ratio if side is Side.BUY else vol.buy_ratio <= 1.0 - params.min_buy_ratio
    if not flow_ok:
        return no(Reason.FLOW_DISAGREES)

    ind = compute_indicators(
        window.bars_1m,
        rsi_period=params.rsi_period,
        ema_fast=params.ema_fast,
        ema_slow=params.ema_slow,
        atr_period=params.atr_period,
    )
    for name in ("rsi", "ema_fast", "ema_slow", "atr"):
        value = getattr(ind, name)
        if math.isfinite(value):
            features[name] = value
    if params.require_indicators and not ind.complete:
        return no(Reason.INSUFFICIENT_HISTORY)
    if math.isfinite(ind.rsi) and (
        (side is Side.BUY and ind.rsi >= params.rsi_overbought) or (side is Side.SELL and ind.rsi <= params.rsi_oversold)
    ):
        return no(Reason.RSI_EXTREME)
    if params.require_ema_trend and math.isfinite(ind.ema_fast) and math.isfinite(ind.ema_slow):
        if (ind.ema_fast > ind.ema_slow) != (side is Side.BUY):
            return no(Reason.TREND_DISAGREES)

    imbalance_strength = None
    wall_prices = None
    if book_present:
        book = analyse_book(window.book, params.book_levels, params.wall_size_multiple, params.wall_min_levels)
        features["imbalance"] = book.imbalance
        features["wall_count"] = len(book.walls)
        signed = book.imbalance if side is Side.BUY else -book.imbalance
        if signed < params.min_imbalance:
            return no(Reason.IMBALANCE_DISAGREES)
        imbalance_strength = signed
        wall_prices = book.walls.prices

    entry = _entry_reference(ticks, side)
    bars = window.bars_1m
    use_swings = params.use_swing_levels and len(bars) > 0
    levels = support_resistance(
        entry,
        tick_size,
        high=bars.high if use_swings else None,
        low=bars.low if use_swings else None,
        wall_prices=wall_prices,
        pivot_width=params.pivot_width,
        tolerance_ticks=params.level_tolerance_ticks,
    )
    if math.isfinite(levels.support):
        features["support"] = levels.support
        features["support_ticks"] = levels.support_ticks
    if math.isfinite(levels.resistance):
        features["resistance"] = levels.resistance
        features["resistance_ticks"] = levels.resistance_ticks
    blocking = levels.resistance_ticks if side is Side.BUY else levels.support_ticks
    if math.isfinite(blocking) and blocking <= params.block_distance_ticks:
        return no(Reason.INTO_WALL)

    flow_strength = abs(2.0 * vol.buy_ratio - 1.0)
    parts = [vol.strength, flow_strength] + ([imbalance_strength] if imbalance_strength is not None else [])
    strength = sum(parts) / len(parts)
    if not math.isfinite(strength):
        return no(Reason.BAD_DATA)
    strength = min(max(strength, 0.0), 1.0)
    features.update(volume_strength=vol.strength, flow_strength=flow_strength, strength=strength)
    if strength < params.min_strength:
        return no(Reason.WEAK)

    try:
        plan = exit_plan(side, entry, ind.atr, tick_size, params)
    except OverflowError:  # a price near 1e308 is no price
        return no(Reason.BAD_DATA)
    if not all(math.isfinite(x) and x > 0 for x in (plan.entry_price, plan.stop_loss, plan.take_profit)):
        return no(Reason.BAD_DATA)  # e.g. an ATR larger than the price: a stop below zero
    features.update(entry_price=plan.entry_price, stop_loss=plan.stop_loss, take_profit=plan.take_profit, exit_basis=plan.basis)
    return Decision(symbol, Reason.SIGNAL, features, side=side, strength=strength, exit=plan, tick_ts_ms=tick_ts)


def analyse_all(
    windows: Mapping[str, MarketWindow] | Iterable[MarketWindow],
    params_by_symbol: Mapping[str, StrategyParams],
    now_ms: int,
    last_signal_ms_by_symbol: Mapping[str, int | None],
    tick_size_by_symbol: Mapping[str, float],
    strategy_by_symbol: Mapping[str, Any] | None = None,
) -> dict[str, Decision]:
    """``evaluate`` every window: the one entry point of the beat task, the backtest and the benchmark.

    Symbols without params use DEFAULT_PARAMS. ``strategy_by_symbol`` maps a symbol to its
    ``signals.strategies.Strategy`` (absent: this module's volume-surge ``evaluate``; its params
    must then be of that strategy's type). A symbol without a tick size, or whose analysis
    raises (a bug), gets an ANALYSIS_ERROR decision (logged) so one symbol never stops the rest.
    """
    strategies = strategy_by_symbol or {}
    items = windows.values() if isinstance(windows, Mapping) else windows
    decisions: dict[str, Decision] = {}
    for window in items:
        symbol = window.symbol
        try:
            strategy = strategies.get(symbol)
            decisions[symbol] = (strategy.evaluate if strategy is not None else evaluate)(
                window,
                params_by_symbol.get(symbol, DEFAULT_PARAMS),
                now_ms,
                last_signal_ms_by_symbol.get(symbol),
                tick_size_by_symbol[symbol],
            )
        except Exception as exc:  # noqa: BLE001 - isolate one symbol's failure from the others
            logger.exception("analysis failed for %s", symbol)
            decisions[symbol] = Decision(symbol, Reason.ANALYSIS_ERROR, {"error": repr(exc)[:500]}, tick_ts_ms=window.last_tick_ms)
    return decisions
