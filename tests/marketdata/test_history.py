"""Loading the broker's 1 m history into Redis: reconciled with what Redis holds (real Redis)."""

from __future__ import annotations

import numpy as np
import redis as redis_lib
from django.conf import settings

from marketdata import redis_keys as keys
from marketdata.bars import Bar, check_history
from marketdata.health import read_gaps
from marketdata.reader import read_quotes, read_windows
from marketdata.store import MarketDataWriter
from matchtrader.events import QuoteEvent

T0 = 1_700_000_040_000  # a whole minute
M = 60_000


def path(start: float, n: int, first_ts: int, step: float = 1e-5) -> list[Bar]:
    """n closed 1 m bars drifting up by ``step`` a minute, range 2e-4 each."""
    out = []
    for i in range(n):
        c = start + i * step
        out.append(Bar(first_ts + i * M, c, c + 1e-4, c - 1e-4, c, 10.0, 0.0, 0.0, 10))
    return out


def arrays(bars):
    return np.array([b.ts_ms for b in bars], dtype=np.int64), np.array([b.close for b in bars])


def test_check_history_accepts_the_same_path_within_half_a_spread():
    src = path(1.085, 30, T0)
    ts, close = arrays(src)
    assert check_history(ts, close + 4e-5, src).joins  # the feed's mids vs the broker's bids


def test_check_history_rejects_another_price_path():
    stored = path(1.10, 30, T0)
    src = path(1.085, 30, T0)
    check = check_history(*arrays(stored), src)
    assert not check.joins and check.overlap == 10 and check.mismatched == 10
    assert check.stored_close == stored[-1].close and check.source_close == src[-1].close


def test_check_history_without_a_common_minute_does_not_join_unless_nothing_is_stored():
    old = path(1.085, 10, T0 - 300 * M)
    assert not check_history(*arrays(old), path(1.085, 30, T0)).joins
    assert check_history(np.empty(0, np.int64), np.empty(0), path(1.085, 30, T0)).joins


def test_history_replaces_the_overlapping_bars_and_keeps_newer_live_ones(redis_client):
    # given: live bars of minutes T0+5..T0+7 and the forming minute T0+8 (rolled by the feed)
    w = MarketDataWriter(redis_client)
    w.ingest([QuoteEvent("H", 1.08500, 1.08508, T0 + k * M + 1, T0 + k * M + 2) for k in range(5, 9)])
    assert w.flush()
    # when: the broker's history T0..T0+6 arrives late (the broker came up after the feed)
    history = path(1.08504, 7, T0, step=0.0)
    check = w.load_history("H", history)
    # then: one bar per minute, in time order; the broker's bars for T0..T0+6, the live one after
    assert check is not None and check.joins
    win = read_windows(redis_client, ["H"], include_forming=False)["H"]
    assert win.bars_1m.ts_ms.tolist() == [T0 + k * M for k in range(8)]
    assert win.bars_1m.volume.tolist()[:7] == [10.0] * 7  # the broker's, not the feed's partial bars
    # and the feed's next closed bar still goes after them
    w.ingest([QuoteEvent("H", 1.085, 1.08508, T0 + 9 * M + 1, T0 + 9 * M + 2)])
    assert w.flush()
    ts = read_windows(redis_client, ["H"], include_forming=False)["H"].bars_1m.ts_ms
    assert ts.tolist() == [T0 + k * M for k in range(9)]
    w.close()


def test_history_from_another_price_path_resets_the_symbol(redis_client):
    # given: an earlier run's data for EURUSD around 1.10 (ticks, bars, quote), and GBPUSD's
    w = MarketDataWriter(redis_client)
    w.load_history("EURUSD", path(1.10, 30, T0))
    w.ingest([QuoteEvent("EURUSD", 1.10073, 1.10081, T0 + 30 * M + k, T0 + 30 * M + k) for k in range(50)])
    w.ingest([QuoteEvent("GBPUSD", 1.27, 1.2701, T0 + 30 * M + k, T0 + 30 * M + k) for k in range(5)])
    assert w.flush()
    w.close()
    # when: a new feed loads the restarted broker's history, on another path (1.085)
    w2 = MarketDataWriter(redis_client)
    fresh = path(1.085, 31, T0)
    check = w2.load_history("EURUSD", fresh)
    assert check is not None and not check.joins
    # then: nothing of the old path is left for EURUSD; GBPUSD is untouched
    win = read_windows(redis_client, ["EURUSD"], include_forming=False)["EURUSD"]
    assert len(win.ticks) == 0 and len(win.bars_1s) == 0
    assert win.bars_1m.close.tolist() == [b.close for b in fresh]
    assert "EURUSD" not in read_quotes(redis_client, ["EURUSD"])
    assert redis_client.xlen(keys.ticks_stream("EURUSD")) == 0
    assert redis_client.xlen(keys.ticks_stream("GBPUSD")) == 5
    assert [(g["reason"], g["symbols"]) for g in read_gaps(redis_client)] == [("source_reset", "EURUSD")]
    # and live ticks after the reset go on the new path only
    w2.ingest([QuoteEvent("EURUSD", 1.08877, 1.08885, T0 + 31 * M + 5, T0 + 31 * M + 6)])
    assert w2.flush()
    win = read_windows(redis_client, ["EURUSD"])["EURUSD"]
    assert win.ticks.bid.tolist() == [1.08877]
    assert win.bars_1m.high.max() < 1.09
    assert w2.resets == 1
    w2.close()


def test_history_is_retried_when_redis_is_away(private_redis):
    client, server = private_redis
    w = MarketDataWriter(client)
    server.stop()
    assert w.load_history("R", path(1.0, 5, T0)) is None
    server.start()
    assert w.load_history("R", path(1.0, 5, T0)) is not None
    assert len(read_windows(client, ["R"], include_forming=False)["R"].bars_1m) == 5
    w.close()


def test_many_writers_created_and_closed_do_not_leak_connections():
    # redis-py 8 bounds a client's pool (100 connections by default): a writer must give its
    # connection back, or the 101st writer on one client finds the pool exhausted
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    assert client.connection_pool.max_connections <= 150
    try:
        for i in range(150):
            w = MarketDataWriter(client)
            w.ingest([QuoteEvent("LEAK", 1.0, 1.0001, T0 + i, T0 + i)])
            assert w.flush(wait=False)
            w.close()
        pool = client.connection_pool
        assert not pool._in_use_connections
        assert len(pool._available_connections) <= 1
        assert client.xlen(keys.ticks_stream("LEAK")) == 150  # every batch was delivered, none lost
        client.delete(keys.ticks_stream("LEAK"), keys.tape("LEAK"), keys.quote("LEAK"), keys.forming_bars("LEAK"))
    finally:
        client.close()


def test_check_history_rejects_a_path_that_left_at_the_newest_minutes():
    # the bug's shape: the same path for a long while, then the stored one drifted to 1.10 for
    # its last two minutes (a simulator run that went on), which the restarted broker never saw
    src = path(1.0888, 30, T0, step=0.0)
    ts, close = arrays(src)
    close = close.copy()
    close[-2:] = 1.10
    check = check_history(ts, close, src)
    assert not check.joins and check.mismatched == 2 and check.stored_close == 1.10


def test_a_restarted_sequence_marks_the_feed_resyncing_until_the_history_is_rechecked(redis_client):
    from matchtrader.events import ConnectionEvent

    w = MarketDataWriter(redis_client)
    restarted = []
    w.on_source_restart = lambda symbol: restarted.append(symbol) or True
    w.ingest([ConnectionEvent("connected", 0)]
             + [QuoteEvent(s, 1.0, 1.0001, T0 + i, T0 + i, seq=i) for i in (7, 8, 9) for s in ("A", "B")])
    assert w.flush() and restarted == []
    # when: after a reconnect the source numbers its quotes from 1 again (it restarted)
    w.ingest([ConnectionEvent("disconnected", 0), ConnectionEvent("connected", 1),
              QuoteEvent("A", 1.2, 1.2001, T0 + 50, T0 + 50, seq=1),
              QuoteEvent("B", 1.2, 1.2001, T0 + 50, T0 + 50, seq=1),
              QuoteEvent("A", 1.2, 1.2001, T0 + 60, T0 + 60, seq=2)])
    assert w.flush()
    # then: each symbol is reported once, and the analysis is told not to trust the data
    assert restarted == ["A", "B"]
    assert redis_client.hget(keys.HEALTH, "connection") == b"resyncing"
    w.resync_done("A")
    assert w.flush() and redis_client.hget(keys.HEALTH, "connection") == b"resyncing"
    w.resync_done("B")
    assert w.flush() and redis_client.hget(keys.HEALTH, "connection") == b"connected"
    w.close()
