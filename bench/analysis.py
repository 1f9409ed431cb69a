"""Benchmark of the pure analysis: 100 symbols x 2,000-tick windows, as the beat task runs it.

    .venv/bin/python bench/analysis.py [--symbols 100] [--ticks 2000] [--repeats 30]

Prints median and p95 of one ``analyse_all`` pass over all symbols for three mixes (all calm:
most stop at "no_surge"; all surging: every analyzer runs; 10 % surging: a busy second), and the
share of each analyzer when each is run on every window (the worst case).

With ``--redis-url`` (default: none, the part is skipped) it also writes the windows into Redis
through the feed's own writer (``marketdata.store.MarketDataWriter``: trades, depth, 1 m history)
and times what the beat task does: ``read_windows`` (one round trip) + ``analyse_all``, with the
share spent reading Redis. Only ``md:*`` keys are written, and deleted afterwards; use a Redis
database of your own, e.g. ``--redis-url redis://127.0.0.1:6379/2``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradeops.settings")

import numpy as np  # noqa: E402

from signals.analysis.indicators import compute_indicators  # noqa: E402
from signals.analysis.levels import support_resistance  # noqa: E402
from signals.analysis.orderbook import analyse_book  # noqa: E402
from signals.analysis.synthetic import DEFAULT_NOW_MS, PlantedSurge, make_market_window  # noqa: E402
from signals.analysis.volume import analyse_volume  # noqa: E402
from signals.strategy import DEFAULT_PARAMS, analyse_all  # noqa: E402

TICK = 0.00001


def build_windows(n_symbols: int, n_ticks: int, surge_every: int | None, with_book: bool = True):
    """``surge_every`` = k plants a surge in every k-th symbol (1 = all, None = none)."""
    windows = {}
    for i in range(n_symbols):
        surge = PlantedSurge(direction=1 if i % 2 else -1) if surge_every and i % surge_every == 0 else None
        w = make_market_window(f"SYM{i:03d}", seed=i, n_ticks=n_ticks, surge=surge, with_book=with_book)
        windows[w.symbol] = w
    return windows


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def write_to_redis(redis, windows) -> None:
    """Replay each synthetic window into Redis through the feed's writer (as the feed would)."""
    from marketdata.bars import Bar
    from marketdata.store import MarketDataWriter
    from matchtrader.events import DepthEvent, TradeEvent

    writer = MarketDataWriter(redis)
    for w in windows.values():
        m = w.bars_1m
        closed_minutes = m.ts_ms < (int(w.ticks.ts_ms[0]) // 60_000) * 60_000
        writer.warmup_bars(w.symbol, [
            Bar(int(m.ts_ms[i]), float(m.open[i]), float(m.high[i]), float(m.low[i]), float(m.close[i]),
                float(m.volume[i]), float(m.buy_volume[i]), float(m.sell_volume[i]), int(m.ticks[i]))
            for i in np.flatnonzero(closed_minutes)
        ], "1m")
        t = w.ticks
        events = [
            TradeEvent(w.symbol, float(t.price[i]), float(t.volume[i]), int(t.side[i]), int(t.ts_ms[i]), int(t.ts_ms[i]))
            for i in range(len(t))
        ]
        if w.book is not None:
            b = w.book
            events.append(DepthEvent(w.symbol, list(zip(b.bid_prices.tolist(), b.bid_sizes.tolist())),
                                     list(zip(b.ask_prices.tolist(), b.ask_sizes.tolist())), b.ts_ms, b.ts_ms))
        writer.ingest(events)
        if not writer.flush():
            raise RuntimeError("Redis unavailable")
    writer.close()


def redis_part(url: str, args, params, last, ticks) -> None:
    import redis as redis_lib

    from marketdata.reader import read_windows

    client = redis_lib.Redis.from_url(url)
    windows = build_windows(args.symbols, args.ticks, 10)
    try:
        write_to_redis(client, windows)
        symbols = list(windows)
        read_ms, total_ms = [], []
        read_windows(client, symbols, ticks=args.ticks)  # warm-up
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            read = read_windows(client, symbols, ticks=args.ticks)
            t1 = time.perf_counter()
            decisions = analyse_all(read, params, DEFAULT_NOW_MS, last, ticks)
            t2 = time.perf_counter()
            read_ms.append((t1 - t0) * 1000)
            total_ms.append((t2 - t0) * 1000)
        signals = sum(d.is_signal for d in decisions.values())
        r, tot = statistics.median(read_ms), statistics.median(total_ms)
        print(f"read_windows + analyse_all from Redis ({url}), 10% surging, {signals} signals:")
        print(f"  total       median {tot:7.2f}  p95 {p95(total_ms):7.2f}")
        print(f"  read Redis  median {r:7.2f}  p95 {p95(read_ms):7.2f}  share {100 * r / tot:5.1f} %")
    finally:
        for key in client.scan_iter(match="md:*", count=1000):
            client.delete(key)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--redis-url", default=None, help="also time read_windows from this Redis database")
    args = parser.parse_args()
    params = {}
    ticks = {f"SYM{i:03d}": TICK for i in range(args.symbols)}
    last = {}

    print(f"analyse_all over {args.symbols} symbols x {args.ticks} ticks, {args.repeats} repeats (ms per pass)")
    mixes = {"calm": None, "10% surging": 10, "all surging": 1, "all surging, no book": 1}
    for name, every in mixes.items():
        windows = build_windows(args.symbols, args.ticks, every, with_book="no book" not in name)
        times = timed(lambda: analyse_all(windows, params, DEFAULT_NOW_MS, last, ticks), args.repeats)
        decisions = analyse_all(windows, params, DEFAULT_NOW_MS, last, ticks)
        signals = sum(d.is_signal for d in decisions.values())
        print(
            f"  {name:<22} median {statistics.median(times):7.2f}  p95 {p95(times):7.2f}  "
            f"({statistics.median(times) * 1000 / args.symbols:6.1f} us/symbol, {signals} signals)"
        )

    # per-analyzer shares: each analyzer on every window (as if every symbol surged)
    windows = list(build_windows(args.symbols, args.ticks, 1).values())
    p = DEFAULT_PARAMS
    analyzers = {
        "volume": lambda: [analyse_volume(w.ticks, w.bars_1s, DEFAULT_NOW_MS) for w in windows],
        "orderbook": lambda: [analyse_book(w.book, p.book_levels, p.wall_size_multiple) for w in windows],
        "levels": lambda: [
            support_resistance(float(w.ticks.price[-1]), TICK, high=w.bars_1m.high, low=w.bars_1m.low,
                               wall_prices=w.book.bid_prices[:2])
            for w in windows
        ],
        "indicators": lambda: [compute_indicators(w.bars_1m) for w in windows],
    }
    medians = {name: statistics.median(timed(fn, args.repeats)) for name, fn in analyzers.items()}
    total = sum(medians.values())
    print("per-analyzer time, every analyzer on every window (median ms per pass, share):")
    for name, ms in medians.items():
        print(f"  {name:<11} {ms:7.2f}  {100 * ms / total:5.1f} %")
    if args.redis_url:
        redis_part(args.redis_url, args, params, last, ticks)


if __name__ == "__main__":
    main()
