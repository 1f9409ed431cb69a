"""Realistic synthetic MarketWindows (ticks, 1 s bars, 1 m bars, book) for tests and the bench.

Calm market: Poisson-ish tick arrivals at ``ticks_per_s``, a lazy random walk in whole ticks
(mean-reverting slightly so levels stay around ``base_price``), lognormal trade sizes with the
aggressor side unknown (0) so the analysis has to use the tick rule. The 1 s bars cover more time
than the tick window (like the feed keeps them), the 1 m bars go back ``n_bars_1m`` minutes and
their last minutes are aggregated from the ticks.

``surge`` plants a burst of extra, directional ticks in the last seconds: volume rate x
``multiplier``, most steps in ``direction``, and (with a book) the book leaning the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marketdata.windows import BarWindow, BookSnapshot, MarketWindow, TickWindow

DEFAULT_NOW_MS = 1_764_000_000_000  # 2025-11-24, a fixed time: windows are deterministic per seed


@dataclass(frozen=True, slots=True)
class PlantedSurge:
    direction: int = 1  # +1 buying burst (price up), -1 selling burst
    multiplier: float = 8.0  # volume rate in the burst / calm rate
    seconds: int = 4  # burst length, ending at the newest tick
    follow_through: float = 0.45  # probability that a burst tick moves one tick in `direction`


def _aggregate_bars(symbol: str, timeframe: str, bucket_ms: int, ts, price, volume, side) -> BarWindow:
    """OHLCV bars of the ticks per ``bucket_ms`` (only buckets with ticks), vectorised."""
    bucket = ts // bucket_ms
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [ts.shape[0]])) - 1
    buy = np.where(side > 0, volume, 0.0)
    sell = np.where(side < 0, volume, 0.0)
    return BarWindow(
        symbol=symbol,
        timeframe=timeframe,
        ts_ms=(bucket[starts] * bucket_ms).astype(np.int64),
        open=price[starts],
        high=np.maximum.reduceat(price, starts),
        low=np.minimum.reduceat(price, starts),
        close=price[ends],
        volume=np.add.reduceat(volume, starts),
        buy_volume=np.add.reduceat(buy, starts),
        sell_volume=np.add.reduceat(sell, starts),
        ticks=np.diff(np.concatenate((starts, [ts.shape[0]]))).astype(np.int64),
    )


def make_market_window(
    symbol: str = "EURUSD",
    *,
    now_ms: int = DEFAULT_NOW_MS,
    seed: int = 0,
    n_ticks: int = 2_000,
    ticks_per_s: float = 8.0,
    history_s: int = 330,
    base_price: float = 1.10000,
    tick_size: float = 0.00001,
    spread_ticks: int = 2,
    surge: PlantedSurge | None = None,
    with_book: bool = True,
    book_levels: int = 10,
    walls: tuple[tuple[int, float], ...] = (),
    n_bars_1m: int = 120,
    staleness_ms: int = 200,
    known_sides: bool = False,
) -> MarketWindow:
    """A MarketWindow whose newest tick is ``staleness_ms`` before ``now_ms``.

    ``walls``: (offset in ticks from the last mid, size as a multiple of the typical level size);
    a positive offset is an ask-side wall above the price, a negative one a bid-side wall below.
    """
    rng = np.random.default_rng(seed)
    last_ms = now_ms - staleness_ms
    first_ms = last_ms - history_s * 1000
    n_calm = int(ticks_per_s * history_s)
    ts = rng.integers(first_ms, last_ms, size=n_calm, endpoint=True)
    is_burst = np.zeros(n_calm, dtype=bool)
    if surge is not None:
        n_burst = int(ticks_per_s * (surge.multiplier - 1.0) * surge.seconds)
        burst_ts = rng.integers(last_ms - surge.seconds * 1000 + 1, last_ms, size=n_burst, endpoint=True)
        ts = np.concatenate((ts, burst_ts))
        is_burst = np.concatenate((is_burst, np.ones(n_burst, dtype=bool)))
    order = np.argsort(ts, kind="stable")
    ts, is_burst = ts[order].astype(np.int64), is_burst[order]
    ts[-1] = last_ms
    n = ts.shape[0]

    # lazy random walk in ticks; burst ticks mostly follow the burst direction
    steps = rng.choice(np.array([-1, 0, 1]), size=n, p=[0.1, 0.8, 0.1])
    if surge is not None:
        p = surge.follow_through
        burst_steps = rng.choice(np.array([-1, 0, 1]) * surge.direction, size=n, p=[(1 - p) / 3, 2 * (1 - p) / 3, p])
        steps = np.where(is_burst, burst_steps, steps)
    steps[0] = 0
    path_ticks = np.cumsum(steps)
    calm_drift = np.cumsum(np.where(is_burst, 0, steps))
    path_ticks = path_ticks - np.round(calm_drift * 0.7).astype(np.int64)  # mean reversion of calm moves
    base_ticks = round(base_price / tick_size)
    decimals = max(0, -int(np.floor(np.log10(tick_size))) + 2)
    price = np.round((base_ticks + path_ticks) * tick_size, decimals)
    half = spread_ticks / 2
    bid = np.round(price - np.floor(half) * tick_size, decimals)
    ask = np.round(price + np.ceil(half) * tick_size, decimals)
    volume = np.round(rng.lognormal(0.0, 0.5, size=n), 2)
    if known_sides:
        side = np.where(is_burst, surge.direction if surge else 0, rng.choice([-1, 1], size=n)).astype(np.int8)
    else:
        side = np.zeros(n, dtype=np.int8)

    # bars: 1 s from every generated tick (longer than the tick window), 1 m history + tick minutes
    bars_1s = _aggregate_bars(symbol, "1s", 1_000, ts, price, volume, side)
    recent_1m = _aggregate_bars(symbol, "1m", 60_000, ts, price, volume, side)
    n_hist = max(n_bars_1m - len(recent_1m), 0)
    hist_close = base_ticks + np.round(rng.normal(0.0, 12.0, size=n_hist))
    hist_open = np.concatenate(([base_ticks], hist_close[:-1])) if n_hist else hist_close
    hist_high = np.maximum(hist_open, hist_close) + rng.integers(0, 8, size=n_hist)
    hist_low = np.minimum(hist_open, hist_close) - rng.integers(0, 8, size=n_hist)
    first_minute = int(recent_1m.ts_ms[0]) if len(recent_1m) else last_ms // 60_000 * 60_000
    hist_ts = first_minute - 60_000 * np.arange(n_hist, 0, -1, dtype=np.int64)
    hist_vol = np.round(rng.lognormal(0.0, 0.3, size=n_hist) * ticks_per_s * 60, 2)

    def cat(a, b):
        return np.concatenate((np.asarray(a, dtype=b.dtype), b))

    bars_1m = BarWindow(
        symbol,
        "1m",
        cat(hist_ts, recent_1m.ts_ms),
        cat(np.round(hist_open * tick_size, decimals), recent_1m.open),
        cat(np.round(hist_high * tick_size, decimals), recent_1m.high),
        cat(np.round(hist_low * tick_size, decimals), recent_1m.low),
        cat(np.round(hist_close * tick_size, decimals), recent_1m.close),
        cat(hist_vol, recent_1m.volume),
        cat(hist_vol / 2, recent_1m.buy_volume),
        cat(hist_vol / 2, recent_1m.sell_volume),
        cat(np.full(n_hist, int(ticks_per_s * 60)), recent_1m.ticks),
    )

    keep = slice(max(n - n_ticks, 0), n)
    ticks = TickWindow(symbol, ts[keep], bid[keep], ask[keep], price[keep], volume[keep], side[keep])

    book = None
    if with_book:
        offsets = np.arange(book_levels)
        bid_prices = np.round(bid[-1] - offsets * tick_size, decimals)
        ask_prices = np.round(ask[-1] + offsets * tick_size, decimals)
        bid_sizes = np.round(rng.lognormal(np.log(10.0), 0.25, size=book_levels), 2)
        ask_sizes = np.round(rng.lognormal(np.log(10.0), 0.25, size=book_levels), 2)
        if surge is not None:  # the book leans with the burst
            (bid_sizes if surge.direction > 0 else ask_sizes)[:] *= 2.5
        typical = float(np.median(np.concatenate((bid_sizes, ask_sizes))))
        for offset, multiple in walls:
            sizes, prices, idx = (
                (ask_sizes, ask_prices, offset - int(np.ceil(half))) if offset > 0 else (bid_sizes, bid_prices, -offset - int(np.floor(half)))
            )
            if 0 <= idx < book_levels:
                sizes[idx] = multiple * typical
        book = BookSnapshot(symbol, int(last_ms), bid_prices, bid_sizes, ask_prices, ask_sizes)

    return MarketWindow(symbol, ticks, bars_1s, bars_1m, book, int(last_ms))


def make_flat_window(
    symbol: str = "FLAT",
    *,
    now_ms: int = DEFAULT_NOW_MS,
    n_ticks: int = 2_000,
    ticks_per_s: float = 8.0,
    price: float = 1.1,
    volume: float = 1.0,
    tick_size: float = 0.00001,
    with_book: bool = True,
) -> MarketWindow:
    """Constant price and constant volume at a perfectly regular rate: must never signal."""
    step_ms = int(round(1000 / ticks_per_s))
    last_ms = now_ms - 100
    ts = last_ms - step_ms * np.arange(n_ticks - 1, -1, -1, dtype=np.int64)
    p = np.full(n_ticks, price)
    ticks = TickWindow(symbol, ts, p - tick_size, p + tick_size, p, np.full(n_ticks, volume), np.zeros(n_ticks, dtype=np.int8))
    bars_1s = _aggregate_bars(symbol, "1s", 1_000, ts, p, ticks.volume, ticks.side)
    m_ts = (last_ms // 60_000 - np.arange(59, -1, -1, dtype=np.int64)) * 60_000
    c = np.full(60, price)
    bars_1m = BarWindow(symbol, "1m", m_ts, c, c, c, c, np.full(60, 480.0), np.zeros(60), np.zeros(60), np.full(60, 480))
    book = None
    if with_book:
        sizes = np.full(10, 10.0)
        book = BookSnapshot(symbol, int(last_ms), p[-1] - tick_size * np.arange(1, 11), sizes, p[-1] + tick_size * np.arange(1, 11), sizes.copy())
    return MarketWindow(symbol, ticks, bars_1s, bars_1m, book, int(last_ms))
