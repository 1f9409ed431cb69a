"""Feed ingest + reader benchmark (prints figures; not a test).

    REDIS_URL=redis://127.0.0.1:6379/3 .venv/bin/python bench/feed_ingest.py [--ticks 200000] [--batch 500]

Measures, in one run, on the Redis database of REDIS_URL (only ``md:*:BENCH*`` keys are written,
and they are deleted at the end):

1. **feed path**: raw JSON frames exactly as the simulator pushes them (quote, trade, and
   depth frames) → ``matchtrader.stream.parse_frame`` → ``MarketDataWriter.ingest`` →
   ``MarketDataWriter.flush`` (stream XADD + tape + quotes + book + bars) → Redis; ticks/s.
2. **raw XADD**: the same number of entries (one 40-byte field each) with a plain redis-py
   pipeline (``transaction=False``), the same batch size; entries/s. The target ratio is ≥ 0.5.
   A hand-packed RESP XADD loop is also shown as the ceiling of this machine.
3. **reader**: ``read_windows`` for 100 symbols × 2,000 ticks (+300 1 s, 200 1 m bars):
   median and p95 over ``--reads`` calls.

4. **pre-screen cost** (issue 16): the feed path again with every symbol's strategy pre-screen
   installed (``VolumeSurgePreScreen``, the default parameters), in the same runs, alternating
   with the plain path; the rate ratio with / without (target: the pre-screen costs ≤ 10 %, i.e.
   ratio ≥ 0.90).

Targets (2-core CI machine): ≥ 50,000 ticks/s, ≥ 0.5 × raw XADD, reader ≤ 20 ms, pre-screen ≥ 0.90.
``--redis-url`` overrides REDIS_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradeops.settings")

import django  # noqa: E402

django.setup()

import redis as redis_lib  # noqa: E402
from django.conf import settings  # noqa: E402

from marketdata import redis_keys as keys  # noqa: E402
from marketdata.reader import read_windows  # noqa: E402
from marketdata.store import MarketDataWriter  # noqa: E402
from matchtrader.stream import parse_frame  # noqa: E402

T0 = 1_700_000_000_000


def make_frames(n_ticks: int, n_symbols: int, seed: int = 7) -> tuple[list[str], int]:
    """Frames shaped like ``Simulator._broadcast_tick``: per simulator tick a quote, sometimes a
    trade print, and every 5th tick a 5-level depth snapshot. Returns (frames, tick count)."""
    rng = random.Random(seed)
    syms = [f"BENCH{i:03d}" for i in range(n_symbols)]
    price = {s: 1.0 + i for i, s in enumerate(syms)}
    seq: dict[tuple, int] = {}

    def nseq(kind, s):
        seq[(kind, s)] = seq.get((kind, s), 0) + 1
        return seq[(kind, s)]

    frames = []
    ticks = 0
    ts = T0
    i = 0
    while ticks < n_ticks:
        s = syms[i % n_symbols]
        i += 1
        ts += 1
        p = price[s] = round(price[s] * (1 + rng.gauss(0, 1e-4)), 5)
        bid, ask = round(p - 0.00005, 5), round(p + 0.00005, 5)
        frames.append(json.dumps({"type": "quote", "seq": nseq("quote", s), "data": {
            "symbol": s, "bid": bid, "ask": ask, "high": p * 1.01, "low": p * 0.99, "timestampMs": ts}}))
        ticks += 1
        if ticks < n_ticks and rng.random() < 0.5:
            frames.append(json.dumps({"type": "trade", "seq": nseq("trade", s), "data": {
                "symbol": s, "price": ask if rng.random() < 0.5 else bid, "volume": round(rng.uniform(0.01, 3), 2),
                "aggressor": "BUY" if rng.random() < 0.5 else "SELL", "timestampMs": ts}}))
            ticks += 1
        if i % 5 == 0:
            frames.append(json.dumps({"type": "depth", "seq": nseq("depth", s), "data": {
                "symbol": s, "bids": [[round(bid - k * 1e-5, 5), round(rng.uniform(1, 9), 2)] for k in range(5)],
                "asks": [[round(ask + k * 1e-5, 5), round(rng.uniform(1, 9), 2)] for k in range(5)],
                "timestampMs": ts}}))
    return frames, ticks


def cleanup(r) -> None:
    for pattern in ("md:*:BENCH*", "md:bars:*:BENCH*", "bench:raw:*"):
        batch = list(r.scan_iter(pattern, count=1000))
        for k in range(0, len(batch), 500):
            r.delete(*batch[k : k + 500])


def bench_feed_path(r, frames: list[str], batch_frames: int, n_symbols: int = 0,
                    prescreen: bool = False) -> tuple[float, int, dict]:
    writer = MarketDataWriter(r, stream_maxlen=settings.FEED_STREAM_MAXLEN, tape_len=settings.FEED_TAPE_LEN)
    if prescreen:  # as workers.feed installs them: one per symbol, the symbol's strategy and params
        from signals.strategies import get_strategy

        strategy = get_strategy("volume_surge")
        params = strategy.default_params()
        for i in range(n_symbols):
            writer.state.set_prescreen(f"BENCH{i:03d}", ("volume_surge", repr(params)), strategy.prescreen(params))
    n = 0
    t_parse = t_ingest = t_flush = 0.0
    pc = time.perf_counter
    start = pc()
    for k in range(0, len(frames), batch_frames):
        a = pc()
        recv = T0 + k
        events = []
        for raw in frames[k : k + batch_frames]:
            events += parse_frame(raw, recv)
        b = pc()
        n += writer.ingest(events)
        c = pc()
        if not writer.flush(wait=False):  # as the feed does: replies read while the next batch is parsed
            raise SystemExit("Redis unavailable during the benchmark")
        d = pc()
        t_parse += b - a
        t_ingest += c - b
        t_flush += d - c
    if not writer.flush():  # the last batch's replies
        raise SystemExit("Redis unavailable during the benchmark")
    total = pc() - start
    writer.close()
    writer.state.take_wakes()
    return total, n, {"parse_s": t_parse, "ingest_s": t_ingest, "flush_s": t_flush, "batches": -(-len(frames) // batch_frames)}


def bench_prescreen_cpu(frames: list[str], batch_frames: int, n_symbols: int, repeat: int = 5) -> tuple[float, float]:
    """CPU seconds (process time, best of ``repeat``: robust on a shared machine) of the in-memory
    ingest of every frame, without and with every symbol's pre-screen installed."""
    from marketdata.feed_state import FeedState
    from signals.strategies import get_strategy

    batches = []
    for k in range(0, len(frames), batch_frames):
        events = []
        for raw in frames[k : k + batch_frames]:
            events += parse_frame(raw, T0 + k)
        batches.append(events)
    strategy = get_strategy("volume_surge")
    params = strategy.default_params()
    best = {False: float("inf"), True: float("inf")}
    for _ in range(repeat):
        for with_ps in (False, True):
            state = FeedState()
            if with_ps:
                for i in range(n_symbols):
                    state.set_prescreen(f"BENCH{i:03d}", "k", strategy.prescreen(params))
            t = time.process_time()
            for events in batches:
                state.ingest(events)
                state.take_batch()
                for st in state._syms.values():
                    st.recs.clear()
                    st.closed["1s"].clear()
                    st.closed["1m"].clear()
            best[with_ps] = min(best[with_ps], time.process_time() - t)
    return best[False], best[True]


def bench_raw_xadd(r, n: int, batch: int, n_symbols: int) -> float:
    value = keys.pack_tick(T0, 1.1, 1.2, 1.15, 0.0, 1)
    stream_keys = [f"bench:raw:{i:03d}" for i in range(n_symbols)]
    maxlen = settings.FEED_STREAM_MAXLEN
    pipe = r.pipeline(transaction=False)
    start = time.perf_counter()
    for i in range(n):
        pipe.execute_command("XADD", stream_keys[i % n_symbols], "MAXLEN", "~", maxlen, "*", "d", value)
        if (i + 1) % batch == 0:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - start


def bench_raw_xadd_packed(r, n: int, batch: int, n_symbols: int) -> float:
    """Ceiling: the same XADDs as pre-encoded RESP bytes on one redis-py connection."""
    from marketdata.sink import xadd_prefix

    value = keys.pack_tick(T0, 1.1, 1.2, 1.15, 0.0, 1)
    prefixes = [xadd_prefix(f"bench:raw:{i:03d}", settings.FEED_STREAM_MAXLEN) for i in range(n_symbols)]
    conn = r.connection_pool.get_connection()
    try:
        start = time.perf_counter()
        for k in range(0, n, batch):
            m = min(batch, n - k)
            conn.send_packed_command([b"".join(prefixes[(k + j) % n_symbols] + value + b"\r\n" for j in range(m))])
            for _ in range(m):
                conn.read_response()
        return time.perf_counter() - start
    finally:
        r.connection_pool.release(conn)


def bench_reader(r, n_symbols: int, reads: int) -> tuple[float, float, float, int]:
    syms = [f"BENCH{i:03d}" for i in range(n_symbols)]
    read_windows(r, syms)  # warm the connection
    times = []
    for _ in range(reads):
        t = time.perf_counter()
        w = read_windows(r, syms, ticks=2000, bars_1s=300, bars_1m=200)
        times.append((time.perf_counter() - t) * 1000)
    got = min(len(x.ticks) for x in w.values())
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], times[0], got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ticks", type=int, default=200_000)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--batch", type=int, default=500, help="frames per flush (the feed batches ~1 ms)")
    ap.add_argument("--reads", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="feed/raw pairs; the median ratio is reported")
    ap.add_argument("--profile", action="store_true", help="cProfile the feed path")
    ap.add_argument("--reader-only", action="store_true", help="fill Redis, then time the reader only")
    ap.add_argument("--redis-url", default=None, help="Redis database to use (default: REDIS_URL)")
    args = ap.parse_args()
    if args.redis_url:
        settings.REDIS_URL = args.redis_url

    r = redis_lib.Redis.from_url(settings.REDIS_URL)  # a default client, as the analysis has
    r.ping()
    cleanup(r)
    try:
        frames, n_ticks = make_frames(args.ticks, args.symbols)
        print(f"redis {settings.REDIS_URL}  frames={len(frames):,} ticks={n_ticks:,} symbols={args.symbols} "
              f"batch={args.batch} frames")
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            bench_feed_path(r, frames, args.batch)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
            cleanup(r)
        if args.reader_only:
            bench_feed_path(r, frames, args.batch)
            med, p95, best, got = bench_reader(r, args.symbols, args.reads)
            print(f"reader 100x2000:          median {med:.1f} ms  p95 {p95:.1f} ms  min {best:.1f} ms  "
                  f"(ticks per symbol read: {got}; load average {os.getloadavg()[0]:.2f})")
            return
        runs = []
        prescreen_ratios: list[float] = []
        for i in range(args.repeat):
            cleanup(r)
            total, n, parts = bench_feed_path(r, frames, args.batch)
            ticks_per_batch = max(1, round(n / parts["batches"]))
            raw_s = bench_raw_xadd(r, n, ticks_per_batch, args.symbols)
            packed_s = bench_raw_xadd_packed(r, n, ticks_per_batch, args.symbols)
            cleanup(r)
            total_ps, n_ps, _ = bench_feed_path(r, frames, args.batch, args.symbols, prescreen=True)
            runs.append((n / total, n / raw_s, n / packed_s, total, parts, ticks_per_batch))
            prescreen_ratios.append((n_ps / total_ps) / (n / total))
            print(f"run {i + 1}: feed {n / total:,.0f} ticks/s, raw XADD {n / raw_s:,.0f}/s, "
                  f"ratio {raw_s / total:.2f}; with pre-screens {n_ps / total_ps:,.0f} ticks/s "
                  f"({prescreen_ratios[-1]:.2f} of without)")
        runs.sort(key=lambda x: x[0] / x[1])
        feed_rate, raw_rate, packed_rate, total, parts, ticks_per_batch = runs[len(runs) // 2]  # median ratio
        med, p95, best, got = bench_reader(r, args.symbols, args.reads)

        print(f"median run of {args.repeat} (by ratio):")
        print(f"feed path (parse+store):  {feed_rate:>10,.0f} ticks/s   ({total:.2f}s: parse {parts['parse_s']:.2f}s, "
              f"ingest {parts['ingest_s']:.2f}s, flush {parts['flush_s']:.2f}s)")
        print(f"raw pipelined XADD:       {raw_rate:>10,.0f} entries/s  (redis-py pipeline, {ticks_per_batch} per batch)")
        print(f"raw packed XADD ceiling:  {packed_rate:>10,.0f} entries/s")
        print(f"ratio feed / raw XADD:    {feed_rate / raw_rate:>10.2f}   (target >= 0.5)")
        print(f"reader 100x2000:          median {med:.1f} ms  p95 {p95:.1f} ms  min {best:.1f} ms  (ticks per symbol "
              f"read: {got}; target <= 20 ms)")
        ps_ratio = statistics.median(prescreen_ratios)
        plain_cpu, ps_cpu = bench_prescreen_cpu(frames, args.batch, args.symbols)
        extra_us = (ps_cpu - plain_cpu) / n_ticks * 1e6
        share = (ps_cpu - plain_cpu) / (n_ticks / feed_rate)
        print(f"pre-screens / plain feed: {ps_ratio:>10.2f}   (wall-clock rates, median of {args.repeat}; noisy on a "
              f"loaded machine)")
        print(f"pre-screen CPU per tick:  {extra_us:>10.2f} us  (in-memory ingest {plain_cpu / n_ticks * 1e6:.2f} -> "
              f"{ps_cpu / n_ticks * 1e6:.2f} us/tick, best of 5 process-time runs) = {share * 100:.1f} % of the feed "
              f"path's time per tick (target <= 10 %)")
        print(f"load average during the run: {os.getloadavg()[0]:.2f} (2 cores; other processes share them)")
        ok = feed_rate >= 50_000 and feed_rate >= 0.5 * raw_rate and p95 <= 20 and share <= 0.10
        print("targets:", "MET" if ok else "NOT MET")
    finally:
        cleanup(r)


if __name__ == "__main__":
    main()
