"""Volume surge and aggressor flow for one symbol.

Volume is bucketed into wall-clock seconds (``ts_ms // 1000``). The *recent* window is the last
``recent_s`` seconds up to and including the (possibly partial) second of ``now_ms``; the
*baseline* is the ``baseline_s`` seconds just before it. Seconds without trades count as zero.
The recent rate divides by the elapsed time of the window (``now_ms`` - window start + 1 ms),
the baseline rate is the mean of whole seconds.

Sources: ticks are authoritative for every second after the second of the oldest tick in the
tick window (that second is only partly in the window); older seconds come from the 1 s bars
when there are any. So a 2,000-tick window that covers only 30 s of a busy market still gets a
5-minute baseline from the bars, and a source without 1 s bars still works from ticks alone.

All work is vectorised: ``searchsorted`` for window edges, ``bincount`` for per-second sums and a
``maximum.accumulate`` forward fill for the tick rule over the recent ticks (the last price change
before them is found by a block-wise look-back). No Python loop runs per tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from marketdata.windows import BarWindow, TickWindow


# A baseline below this volume per second counts as dead (no ratio against ~0: it would overflow).
MIN_BASELINE_RATE = 1e-9


@dataclass(frozen=True, slots=True)
class VolumeSurge:
    """Volume features of one symbol at ``now_ms``.

    ``ratio`` = recent_rate / baseline_rate; ``zscore`` = (recent_rate - baseline_rate) /
    max(baseline_std, std_floor * baseline_rate). Both are 0 when there is not enough history.
    ``direction`` is the sign of the price change over the recent window (+1 up, -1 down, 0 flat).
    """

    enough_history: bool
    baseline_seconds: int  # baseline seconds actually covered by data
    recent_volume: float
    recent_rate: float  # volume per second in the recent window
    baseline_rate: float  # mean volume per second in the baseline
    baseline_std: float  # population std of the per-second baseline volumes
    ratio: float
    zscore: float
    is_surge: bool
    buy_volume: float
    sell_volume: float
    buy_ratio: float  # buy / (buy + sell) in the recent window, 0.5 when nothing is classified
    price_change: float  # last price - last price before the recent window
    direction: int
    strength: float  # in [0, 1], 0 unless is_surge
    volume_source: str  # "volume" (traded size) or "ticks" (tick count)
    dropped_ticks: int = 0  # ticks/bars left out: non-finite or non-positive price, negative/non-finite volume
    valid: bool = True  # False when the arithmetic overflowed (absurd volumes): every number is then neutral


_LOOKBACK_BLOCK = 256  # ticks scanned per step when looking back for the last price change


def _last_move_up_to(price: np.ndarray, i: int) -> int:
    """Sign of the last price change among ticks 0..i (0 if the price never changed).

    Scans backwards a block at a time: usually one block, and never a Python loop per tick.
    """
    hi = i
    while hi > 0:
        lo = max(hi - _LOOKBACK_BLOCK, 0)
        block = price[lo : hi + 1]
        changed = np.flatnonzero(block[1:] != block[:-1])
        if changed.shape[0]:
            j = lo + int(changed[-1]) + 1
            return 1 if price[j] > price[j - 1] else -1
        hi = lo
    return 0


def tick_rule_sides(price: np.ndarray, side: np.ndarray, start: int = 0) -> np.ndarray:
    """Aggressor side of ticks ``start:``: the known ``side`` where non-zero, else the tick rule.

    Tick rule: uptick -> +1 (buy), downtick -> -1 (sell), zero tick -> the previous non-zero
    tick's sign; 0 while no price change has been seen yet (the first tick has no predecessor).
    Ticks before ``start`` only serve as history for the rule (the last change before the slice).
    """
    n = price.shape[0]
    if start >= n:
        return np.empty(0, dtype=np.int8)
    segment = price[start:]
    m = n - start
    moves = np.empty(m, dtype=np.int8)
    moves[0] = _last_move_up_to(price, start)
    np.sign(segment[1:] - segment[:-1], out=moves[1:], casting="unsafe")
    # forward-fill zero ticks with the last non-zero move: index of the last non-zero so far
    last_nonzero = np.where(moves != 0, np.arange(m), 0)
    np.maximum.accumulate(last_nonzero, out=last_nonzero)
    inferred = moves[last_nonzero]
    known = np.asarray(side[start:], dtype=np.int8)
    return np.where(known != 0, known, inferred)


def buy_sell_volume(price: np.ndarray, volume: np.ndarray, side: np.ndarray, start: int = 0) -> tuple[float, float]:
    """(buy volume, sell volume) of ticks ``start:``; earlier ticks give the tick rule its history."""
    sides = tick_rule_sides(price, side, start)
    vol = volume[start:]
    return float(vol[sides > 0].sum()), float(vol[sides < 0].sum())


def buy_ratio_of(buy: float, sell: float) -> float:
    """buy / (buy + sell), 0.5 (neutral) when neither side has volume."""
    total = buy + sell
    return buy / total if total > 0 else 0.5


def _per_second(ts_ms: np.ndarray, volume: np.ndarray, first_sec: int, n: int) -> np.ndarray:
    """Sum of ``volume`` per second for seconds first_sec .. first_sec + n - 1 (ts sorted)."""
    lo = ts_ms.searchsorted(first_sec * 1000)
    hi = ts_ms.searchsorted((first_sec + n) * 1000)
    if hi <= lo:
        return np.zeros(n)
    idx = ts_ms[lo:hi] // 1000 - first_sec
    return np.bincount(idx, weights=volume[lo:hi], minlength=n)


def _bad_rows(price: np.ndarray, volume: np.ndarray) -> np.ndarray | None:
    """Mask of rows with a price that is not finite and > 0 or a volume that is not finite and
    >= 0; None when every row is good (the usual case: two vectorised checks, no copy)."""
    with np.errstate(invalid="ignore"):
        good = (price > 0) & (price < np.inf) & (volume >= 0) & (volume < np.inf)
    return None if good.all() else ~good


def clean_ticks(ticks: TickWindow) -> tuple[TickWindow, int]:
    """``ticks`` without rows the feed should never have let through (NaN/inf/negative price or
    volume), and how many were dropped. Totality: one bad tick costs that tick, not the symbol."""
    bad = _bad_rows(ticks.price, ticks.volume)
    if bad is None:
        return ticks, 0
    keep = ~bad
    return (TickWindow(ticks.symbol, ticks.ts_ms[keep], ticks.bid[keep], ticks.ask[keep], ticks.price[keep],
                       ticks.volume[keep], ticks.side[keep]), int(bad.sum()))


def clean_bars(bars: BarWindow | None) -> tuple[BarWindow | None, int]:
    """Bars without rows whose volume is not a finite number >= 0 (see ``clean_ticks``); a bad
    close only disqualifies the bar as a price reference (``price_before``)."""
    if bars is None or len(bars) == 0:
        return bars, 0
    with np.errstate(invalid="ignore"):
        good = (bars.volume >= 0) & (bars.volume < np.inf)
    bad = None if good.all() else ~good
    if bad is None:
        return bars, 0
    keep = ~bad
    return (BarWindow(bars.symbol, bars.timeframe, bars.ts_ms[keep], bars.open[keep], bars.high[keep], bars.low[keep],
                      bars.close[keep], bars.volume[keep], bars.buy_volume[keep], bars.sell_volume[keep],
                      bars.ticks[keep]), int(bad.sum()))


def _ones(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.float64)


def uses_tick_count(ticks: TickWindow, source: str) -> bool:
    """``source`` "volume" | "ticks" | "auto": auto counts ticks when the tick window has no traded
    volume at all (a quote-only source such as the real Match-Trader API: tick count is then the
    usual proxy for activity)."""
    if source == "auto":
        return not bool(ticks.volume.any())
    if source not in ("volume", "ticks"):
        raise ValueError(f"volume source must be 'auto', 'volume' or 'ticks', got {source!r}")
    return source == "ticks"


def per_second_volume(
    ticks: TickWindow, bars_1s: BarWindow | None, last_sec: int, n: int, *, tick_count: bool = False
) -> tuple[np.ndarray, int]:
    """Volume per second for the ``n`` seconds ending with ``last_sec`` (oldest first), and the
    index of the first second covered by data (``n`` when nothing is covered).

    ``tick_count``: count ticks instead of summing traded volume (bars: their ``ticks`` field).
    """
    first_sec = last_sec - n + 1
    has_ticks = len(ticks) > 0
    has_bars = bars_1s is not None and len(bars_1s) > 0
    if not has_ticks and not has_bars:
        return np.zeros(n), n
    if has_ticks:
        # The oldest tick's second is only partly inside the tick window: ticks own the seconds after it.
        tick_cut = int(ticks.ts_ms[0]) // 1000 + 1
        series = _per_second(ticks.ts_ms, _ones(len(ticks)) if tick_count else ticks.volume, first_sec, n)
    else:
        tick_cut = last_sec + 1
        series = np.zeros(n)
    oldest = tick_cut
    if has_bars:
        bar_first = int(bars_1s.ts_ms[0]) // 1000
        if bar_first < tick_cut:
            bar_volume = bars_1s.ticks.astype(np.float64) if tick_count else bars_1s.volume
            bar_series = _per_second(bars_1s.ts_ms, bar_volume, first_sec, n)
            cut_idx = min(max(tick_cut - first_sec, 0), n)
            series[:cut_idx] = bar_series[:cut_idx]
            oldest = bar_first
    return series, min(max(oldest - first_sec, 0), n)


def analyse_volume(
    ticks: TickWindow,
    bars_1s: BarWindow | None,
    now_ms: int,
    *,
    recent_s: int = 5,
    baseline_s: int = 300,
    min_baseline_s: int = 60,
    min_ratio: float = 3.0,
    min_zscore: float = 3.0,
    min_recent_volume: float = 0.0,
    std_floor: float = 0.1,
    strength_full_ratio: float = 10.0,
    volume_source: str = "auto",
) -> VolumeSurge:
    """Volume surge of the last ``recent_s`` seconds against the previous ``baseline_s``.

    Surge when ratio >= min_ratio AND zscore >= min_zscore AND recent volume >= min_recent_volume.
    ``strength`` = clip((ratio - 1) / (strength_full_ratio - 1), 0, 1) on a surge, else 0.
    History is enough when at least ``min_baseline_s`` baseline seconds are covered and the
    baseline has some volume (a dead baseline makes every ratio meaningless).
    ``volume_source`` (see ``uses_tick_count``): with tick counts every tick weighs 1, in the
    surge and in the buy/sell ratio alike.

    Total: ticks and bars with a non-finite or non-positive price or a negative/non-finite volume
    are left out (``dropped_ticks``); if the remaining numbers still overflow (volumes near
    1e308), the result is neutral with ``valid`` False. Every output is finite and in range.
    """
    ticks, dropped = clean_ticks(ticks)
    bars_1s, dropped_bars = clean_bars(bars_1s)
    dropped += dropped_bars
    tick_count = uses_tick_count(ticks, volume_source)
    last_sec = now_ms // 1000
    n = recent_s + baseline_s
    series, first_covered = per_second_volume(ticks, bars_1s, last_sec, n, tick_count=tick_count)
    baseline = series[first_covered:baseline_s]
    recent = series[baseline_s:]
    recent_volume = float(recent.sum())
    # the newest second is only partly elapsed: divide by the time actually covered, in ms,
    # so a surge is neither diluted at the start of a second nor inflated at its end
    recent_start_ms = (last_sec - recent_s + 1) * 1000
    recent_rate = recent_volume / ((now_ms - recent_start_ms + 1) / 1000.0)

    # aggressor flow and price move inside the recent window (ticks only)
    buy = sell = price_change = 0.0
    if len(ticks):
        start = int(ticks.ts_ms.searchsorted(recent_start_ms))
        if start < len(ticks):
            weights = _ones(len(ticks)) if tick_count else ticks.volume
            buy, sell = buy_sell_volume(ticks.price, weights, ticks.side, start)
            reference = price_before(ticks, bars_1s, start, recent_start_ms)
            price_change = float(ticks.price[-1] - reference)
    direction = int(np.sign(price_change))
    buy_ratio = buy_ratio_of(buy, sell)

    k = baseline.shape[0]
    if k > 0:  # mean and population std by hand: np.mean/np.std cost ~30 us of dispatch here
        baseline_rate = float(baseline.sum()) / k
        deviation = baseline - baseline_rate
        baseline_std = math.sqrt(float(deviation @ deviation) / k)
    else:
        baseline_rate = baseline_std = 0.0
    enough = baseline.shape[0] >= min_baseline_s and baseline_rate > MIN_BASELINE_RATE
    if enough:
        ratio = recent_rate / baseline_rate
        zscore = (recent_rate - baseline_rate) / max(baseline_std, std_floor * baseline_rate)
    else:
        ratio = zscore = 0.0
    valid = all(map(math.isfinite, (recent_volume, recent_rate, baseline_rate, baseline_std, ratio, zscore, buy, sell,
                                    price_change)))
    if not valid:  # overflowed: say nothing rather than something infinite
        enough, ratio, zscore, buy, sell, price_change = False, 0.0, 0.0, 0.0, 0.0, 0.0
        recent_volume = recent_rate = baseline_rate = baseline_std = 0.0
        direction, buy_ratio = 0, 0.5
    is_surge = enough and ratio >= min_ratio and zscore >= min_zscore and recent_volume >= min_recent_volume
    strength = min(max((ratio - 1.0) / (strength_full_ratio - 1.0), 0.0), 1.0) if is_surge else 0.0
    return VolumeSurge(
        enough_history=bool(enough),
        baseline_seconds=int(baseline.shape[0]),
        recent_volume=recent_volume,
        recent_rate=recent_rate,
        baseline_rate=baseline_rate,
        baseline_std=baseline_std,
        ratio=float(ratio),
        zscore=float(zscore),
        is_surge=bool(is_surge),
        buy_volume=buy,
        sell_volume=sell,
        buy_ratio=buy_ratio,
        price_change=price_change,
        direction=direction,
        strength=float(strength),
        volume_source="ticks" if tick_count else "volume",
        dropped_ticks=dropped,
        valid=valid,
    )


def price_before(ticks: TickWindow, bars_1s: BarWindow | None, start: int, recent_start_ms: int) -> float:
    """The last price before the recent window (the reference of ``price_change``).

    The tick before ``start`` when the tick window reaches back that far; when the tick window
    starts inside the recent window, the close of the last 1 s bar before the window (a busy
    market's 2,000 ticks can cover less than the 5 s window, and measuring from the first tick
    inside it missed part of the move); the first tick only when neither source reaches back.
    """
    if start > 0:
        return float(ticks.price[start - 1])
    if bars_1s is not None and len(bars_1s):
        i = int(bars_1s.ts_ms.searchsorted(recent_start_ms)) - 1
        if i >= 0:
            close = float(bars_1s.close[i])
            if 0 < close < math.inf:
                return close
    return float(ticks.price[start])
