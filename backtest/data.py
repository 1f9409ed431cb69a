"""Backtest input: real bars (the ``backtesting`` package's CSVs, any CSV, or the imported candle
table) turned into a deterministic stream of feed events.

Bars are read with the simulator's own ``load_bars`` and expanded into ticks with its own
``expand_bar`` / ``split_volume`` (OHLC respected, bar volume split exactly), under one seed, in
the SAME way the simulator replays bars (``Market._step_replay``): per tick a quote at
(price, price + spread) then, when the tick has volume, a trade print of that volume with a random
aggressor side at the ask (buy) or the bid (sell). So a backtest on ``backtesting:EURUSD`` sees
the events a feed connected to ``--replay EURUSD=backtesting:EURUSD`` would see.

The clock is the replay's: ticks are ``tick_interval_ms`` apart (the simulator's 10 ticks/s →
100 ms), starting at the first bar's time, so one bar lasts ``ticks_per_bar × tick_interval_ms``
of strategy time (the strategy's windows are seconds, not hours). Each tick keeps the index of its
source bar, and the report uses the bars' own dates for daily returns.

Every input problem is a ``BacktestDataError`` with the source and the line: an unknown symbol,
an empty range, a corrupt CSV (missing column, non-number, NaN/inf, high < low, open/close
outside [low, high], time not increasing).
"""

from __future__ import annotations

import decimal
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from matchtrader.events import QuoteEvent, TradeEvent
from matchtrader.simulator.instruments import SPECS, Spec
from matchtrader.simulator.market import Bar, expand_bar, load_bars

BUY, SELL = 1, -1


class BacktestDataError(ValueError):
    """Bad backtest input, with a message a user can act on."""


def spec_of(symbol: str) -> Spec:
    try:
        return SPECS[symbol]
    except KeyError:
        raise BacktestDataError(f"unknown symbol {symbol!r}; known: {', '.join(sorted(SPECS))}") from None


def parse_time(text: str) -> int:
    """Bar time text → epoch ms, UTC (a naive time is UTC)."""
    text = text.strip()
    if text.isdigit():
        value = int(text)
        return value if value > 10**11 else value * 1000
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class BarSeries:
    symbol: str
    source: str
    bars: tuple[Bar, ...]
    times_ms: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.bars)

    def slice(self, start: int, stop: int) -> "BarSeries":
        return BarSeries(self.symbol, self.source, self.bars[start:stop], self.times_ms[start:stop])


def _ms(value) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000)
    if isinstance(value, int):
        return value
    return parse_time(str(value))


def load_series(source: str, symbol: str, start=None, end=None) -> BarSeries:
    """Bars of ``source`` ("backtesting:EURUSD", a CSV path, or "db" for the imported candles),
    within [start, end) when given, validated."""
    spec_of(symbol)
    if source == "db" or source.startswith("db:"):
        from matchtrader import protocol as P

        from .history import load_db_bars

        interval = source.split(":", 1)[1] if ":" in source else "M1"
        if interval not in P.INTERVAL_SECONDS:
            raise BacktestDataError(f"{source}: interval must be one of {', '.join(P.INTERVALS)}")
        bars, times = load_db_bars(symbol, _ms(start), _ms(end), interval)
        if not bars:
            raise BacktestDataError(f"no imported candles for {symbol} in the range (run manage.py import_candles)")
        return BarSeries(symbol, source, tuple(bars), tuple(times))
    try:
        bars = load_bars(source)
    except FileNotFoundError as exc:
        raise BacktestDataError(f"{source}: {exc}") from None
    except (ValueError, IndexError, decimal.InvalidOperation, StopIteration) as exc:
        raise BacktestDataError(f"{source}: corrupt CSV (expected columns time,Open,High,Low,Close,Volume): "
                                f"{type(exc).__name__}: {exc}") from None
    times = []
    last = None
    for i, b in enumerate(bars):
        line = i + 2
        try:
            t = parse_time(b.time)
        except ValueError:
            raise BacktestDataError(f"{source}, line {line}: bad time {b.time!r}") from None
        values = (b.open, b.high, b.low, b.close)
        if not all(math.isfinite(v) and v > 0 for v in values) or not b.volume.is_finite() or b.volume < 0:
            raise BacktestDataError(f"{source}, line {line}: prices must be finite and > 0, volume >= 0: {b}")
        if b.high < b.low or not (b.low <= b.open <= b.high and b.low <= b.close <= b.high):
            raise BacktestDataError(f"{source}, line {line}: OHLC inconsistent (low <= open, close <= high): {b}")
        if last is not None and t <= last:
            raise BacktestDataError(f"{source}, line {line}: time {b.time} is not after the previous bar")
        last = t
        times.append(t)
    lo, hi = _ms(start), _ms(end)
    keep = [i for i, t in enumerate(times) if (lo is None or t >= lo) and (hi is None or t < hi)]
    if not keep:
        raise BacktestDataError(f"{source}: no bars of {symbol} in the range {start or '…'} – {end or '…'}")
    return BarSeries(symbol, source, tuple(bars[i] for i in keep), tuple(times[i] for i in keep))


@dataclass(frozen=True, slots=True)
class TickPlan:
    """How bars become ticks."""

    ticks_per_bar: int = 60
    tick_interval_ms: int = 100  # the simulator's default 10 ticks/s
    spread_points: int | None = None  # None: the instrument's typical spread


def bar_events(series: BarSeries, seed: int, plan: TickPlan = TickPlan(), start_ms: int | None = None
               ) -> Iterator[tuple[object, int]]:
    """(event, bar index) in time order: per tick a QuoteEvent then, with volume, a TradeEvent."""
    spec = spec_of(series.symbol)
    rng = random.Random(f"{seed}:{series.symbol}")
    prec = spec.price_precision
    spread = (spec.spread_points if plan.spread_points is None else plan.spread_points) * spec.point
    t = series.times_ms[0] if start_ms is None else start_ms
    step = plan.tick_interval_ms
    sym = series.symbol
    for idx, bar in enumerate(series.bars):
        for price, vol in expand_bar(bar, plan.ticks_per_bar, rng, prec):
            side = BUY if rng.random() < 0.5 else SELL
            ask = round(price + spread, prec)
            yield QuoteEvent(sym, price, ask, t, t), idx
            if vol > 0:
                yield TradeEvent(sym, ask if side > 0 else price, float(vol), side, t, t), idx
            t += step


def merged_events(streams: list[Iterator[tuple[object, int]]]) -> Iterator[tuple[object, int]]:
    """Several symbols' streams in time order (stable: ties keep the streams' order)."""
    if len(streams) == 1:
        return streams[0]
    return (item for _, _, item in heapq.merge(
        *(((item[0].ts_ms, k, item) for item in s) for k, s in enumerate(streams))))


# What each analyzer had as input when the data is bars (the report states it).
def input_report(has_volume: bool, synthetic: bool = True) -> dict[str, str]:
    if not synthetic:
        return {"price": "real ticks", "volume": "real", "aggressor side": "real", "book": "real"}
    return {
        "price path inside a bar": "synthetic (expand_bar under the seed; open, high, low, close real)",
        "volume surge": ("real bar volume, split synthetically over the bar's ticks" if has_volume
                         else "no volume in the data: tick count only"),
        "aggressor flow (buy/sell ratio)": "synthetic (random side per print; the real Match-Trader data has none)",
        "order book (imbalance, walls)": "absent (no depth in the data): the no-book thresholds apply",
        "indicators (RSI/EMA/ATR on 1 m bars)": "rolled from the synthetic ticks (compressed clock)",
        "swing levels": "rolled from the synthetic ticks",
    }
