"""The writer and the reader against the real Redis (the run's own database)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marketdata import redis_keys as keys
from marketdata.bars import Bar, roll
from marketdata.health import read_gaps, read_health
from marketdata.reader import read_quotes, read_windows
from marketdata.store import MarketDataWriter
from matchtrader.events import (
    BUY,
    SELL,
    ConnectionEvent,
    DepthEvent,
    GapEvent,
    MalformedFrame,
    QuoteEvent,
    TradeEvent,
)
from matchtrader.stream import parse_frame

T0 = 1_700_000_040_000  # a whole minute


def quote(sym, i, ts, bid=None):
    bid = 1.1 + i * 1e-5 if bid is None else bid
    return QuoteEvent(sym, bid, bid + 0.0002, ts, ts + 2)


def test_ticks_arrive_in_order_in_stream_tape_and_reader(redis_client):
    # given: interleaved quotes and prints of two symbols, written over several flushes
    w = MarketDataWriter(redis_client)
    events = []
    for i in range(600):
        sym = "EURUSD" if i % 3 else "GBPUSD"
        events.append(quote(sym, i, T0 + i * 10))
        if i % 4 == 0:
            events.append(TradeEvent(sym, 1.2 + i * 1e-5, 0.5 + i, BUY if i % 8 else SELL, T0 + i * 10 + 1,
                                     T0 + i * 10 + 3))
    for k in range(0, len(events), 97):
        w.ingest(events[k : k + 97])
        assert w.flush()
    # then: per symbol, the stream and the reader hold exactly the input ticks, in order
    for sym in ("EURUSD", "GBPUSD"):
        expected = [e for e in events if e.symbol == sym]
        entries = redis_client.xrange(keys.ticks_stream(sym))
        assert len(entries) == len(expected)
        decoded = [keys.unpack_tick(fields[keys.TICK_FIELD]) for _, fields in entries]
        assert [d[0] for d in decoded] == [e.ts_ms for e in expected]
        assert [d[5] for d in decoded] == [getattr(e, "side", 0) for e in expected]
        win = read_windows(redis_client, [sym], ticks=len(expected))[sym]
        assert win.ticks.ts_ms.tolist() == [e.ts_ms for e in expected]
        prices = [e.price if isinstance(e, TradeEvent) else (e.bid + e.ask) / 2 for e in expected]
        assert np.array_equal(win.ticks.price, np.array(prices))
        assert win.ticks.volume.tolist() == [e.volume if isinstance(e, TradeEvent) else 0.0 for e in expected]
        assert win.ticks.side.tolist() == [e.side if isinstance(e, TradeEvent) else 0 for e in expected]
        assert win.ticks.side.dtype == np.int8 and win.ticks.ts_ms.dtype == np.int64
        # a print carries the quote in force when it printed
        last_trade = max(i for i, e in enumerate(expected) if isinstance(e, TradeEvent))
        assert win.ticks.bid[last_trade] == expected[last_trade - 1].bid
        assert win.last_tick_ms == expected[-1].ts_ms
        # asking for fewer gives the newest ones
        tail = read_windows(redis_client, [sym], ticks=10)[sym]
        assert tail.ticks.ts_ms.tolist() == [e.ts_ms for e in expected[-10:]]
    assert read_quotes(redis_client, ["EURUSD"])["EURUSD"]["bid"] == [e for e in events if e.symbol == "EURUSD"
                                                                      and isinstance(e, QuoteEvent)][-1].bid


def test_bars_in_redis_match_hand_computed_series(redis_client):
    # given: the series of test_bars, as events
    w = MarketDataWriter(redis_client)
    ev = [
        QuoteEvent("X", 1.09, 1.11, T0 + 100, T0 + 100),  # mid 1.10
        TradeEvent("X", 1.12, 2.0, BUY, T0 + 200, T0 + 200),
        TradeEvent("X", 1.09, 3.0, SELL, T0 + 900, T0 + 900),
        TradeEvent("X", 1.11, 1.0, BUY, T0 + 1_000, T0 + 1_000),
        TradeEvent("X", 1.08, 4.0, SELL, T0 + 3_500, T0 + 3_500),
        TradeEvent("X", 1.20, 1.0, 0, T0 + 61_000, T0 + 61_000),  # next minute, tick rule: up → buy
    ]
    w.ingest(ev)
    assert w.flush()
    win = read_windows(redis_client, ["X"], bars_1s=10, bars_1m=10)["X"]
    b1s, b1m = win.bars_1s, win.bars_1m
    # then: 1 s bars (closed ones, then the forming one)
    assert b1s.ts_ms.tolist() == [T0, T0 + 1_000, T0 + 3_000, T0 + 61_000]
    assert b1s.open.tolist() == [1.10, 1.11, 1.08, 1.20]
    assert b1s.high.tolist() == [1.12, 1.11, 1.08, 1.20]
    assert b1s.low.tolist() == [1.09, 1.11, 1.08, 1.20]
    assert b1s.close.tolist() == [1.09, 1.11, 1.08, 1.20]
    assert b1s.volume.tolist() == [5.0, 1.0, 4.0, 1.0]
    assert b1s.buy_volume.tolist() == [2.0, 1.0, 0.0, 1.0]
    assert b1s.sell_volume.tolist() == [3.0, 0.0, 4.0, 0.0]
    assert b1s.ticks.tolist() == [3, 1, 1, 1]
    # 1 m: the closed first minute, then the forming second one
    assert b1m.ts_ms.tolist() == [T0, T0 + 60_000]
    assert b1m.open.tolist() == [1.10, 1.20]
    assert b1m.high.tolist() == [1.12, 1.20]
    assert b1m.low.tolist() == [1.08, 1.20]
    assert b1m.close.tolist() == [1.08, 1.20]
    assert b1m.volume.tolist() == [10.0, 1.0]
    assert b1m.buy_volume.tolist() == [3.0, 1.0]
    assert b1m.sell_volume.tolist() == [7.0, 0.0]
    assert b1m.ticks.tolist() == [5, 1]
    # without the forming bar, and a window of 1 holds just the newest bar
    closed_only = read_windows(redis_client, ["X"], include_forming=False)["X"]
    assert closed_only.bars_1m.ts_ms.tolist() == [T0]
    one = read_windows(redis_client, ["X"], bars_1s=1, bars_1m=1)["X"]
    assert one.bars_1s.ts_ms.tolist() == [T0 + 61_000] and one.bars_1m.ts_ms.tolist() == [T0 + 60_000]
    # and Redis agrees with the pure roller on the same ticks
    closed_1s, _, _, _ = roll([(e.ts_ms, (e.bid + e.ask) / 2 if isinstance(e, QuoteEvent) else e.price,
                                getattr(e, "volume", 0.0), getattr(e, "side", 0)) for e in ev])
    assert [b.ts_ms for b in closed_1s] == b1s.ts_ms.tolist()[:-1]


def test_book_and_empty_symbols(redis_client):
    w = MarketDataWriter(redis_client)
    w.ingest([DepthEvent("X", [(1.1, 5.0), (1.0999, 3.0)], [(1.1002, 2.0)], T0, T0)])
    assert w.flush()
    out = read_windows(redis_client, ["X", "NOTHING"])
    book = out["X"].book
    assert book.ts_ms == T0
    assert book.bid_prices.tolist() == [1.1, 1.0999] and book.bid_sizes.tolist() == [5.0, 3.0]
    assert book.ask_prices.tolist() == [1.1002] and book.ask_sizes.tolist() == [2.0]
    empty = out["NOTHING"]
    assert len(empty.ticks) == 0 and len(empty.bars_1s) == 0 and empty.book is None and empty.last_tick_ms is None
    assert read_windows(redis_client, []) == {}


def test_memory_stays_bounded(redis_client):
    # given: small bounds and many more ticks than they hold
    maxlen, tape_len, bars_len = 200, 300, 50
    w = MarketDataWriter(redis_client, stream_maxlen=maxlen, tape_len=tape_len, bars_1s_len=bars_len)
    node = int(redis_client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    for batch in range(40):
        w.ingest([quote("B", i, T0 + (batch * 250 + i) * 100) for i in range(250)])
        assert w.flush()
        # then: XLEN never exceeds MAXLEN plus one radix-tree node (MAXLEN ~ trims whole nodes)
        assert redis_client.xlen(keys.ticks_stream("B")) <= maxlen + node
        assert redis_client.strlen(keys.tape("B")) <= 2 * tape_len * keys.TICK.size
        assert redis_client.strlen(keys.bars("1s", "B")) <= 2 * bars_len * keys.BAR.size
    assert w.ticks == 10_000
    # the reader still sees the newest ticks, contiguous
    win = read_windows(redis_client, ["B"], ticks=tape_len)["B"]
    assert len(win.ticks) == tape_len
    assert np.all(np.diff(win.ticks.ts_ms) == 100)
    assert win.last_tick_ms == T0 + 9_999 * 100


def test_malformed_frames_interleaved_lose_no_good_tick(redis_client):
    # given: 2,000 good simulator frames with 1,000 malformed ones interleaved
    good, frames = [], []
    for i in range(2000):
        ts = T0 + i
        f = json.dumps({"type": "quote", "seq": i + 1, "data": {"symbol": "EURUSD", "bid": 1.1 + i * 1e-6,
                                                               "ask": 1.1002 + i * 1e-6, "timestampMs": ts}})
        good.append(ts)
        frames.append(f)
        if i % 2 == 0:
            bad = [f[: len(f) // 2], '{"type":"quote","data":{"symbol":"EURUSD"}}', "[1,2]", "\x00\xff garbage"]
            frames.append(bad[(i // 2) % 4])
    assert len(frames) == 3000
    w = MarketDataWriter(redis_client)
    for k in range(0, len(frames), 128):
        events = []
        for raw in frames[k : k + 128]:
            events += parse_frame(raw, T0)
        w.ingest(events)
        assert w.flush()
    # then: every good tick is there, in order, and every bad frame was counted
    win = read_windows(redis_client, ["EURUSD"], ticks=5000)["EURUSD"]
    assert win.ticks.ts_ms.tolist() == good
    w.write_health()
    assert w.flush()
    health = read_health(redis_client, ["EURUSD"])
    assert health.process["malformed"] == 1000
    assert health.process["ticks"] == 2000


def test_redis_unavailable_buffers_then_delivers(private_redis):
    # given: a writer on a Redis that then goes away
    client, server = private_redis
    w = MarketDataWriter(client)
    w.ingest([quote("R", i, T0 + i) for i in range(100)])
    assert w.flush()
    server.stop()
    # when: ticks keep coming while Redis is down
    for k in range(5):
        w.ingest([quote("R", 100 + k * 100 + i, T0 + 100 + k * 100 + i) for i in range(100)])
        assert w.flush() is False
    assert w.buffered_ticks == 500
    assert w.redis_errors == 5
    # then: once it is back, everything buffered arrives, in order, nothing dropped
    server.start()
    assert w.flush() is True
    win = read_windows(client, ["R"], ticks=1000)["R"]
    # (the restarted test server has no persistence: what it held before is gone, and the
    # writer re-loaded its script on the new connection)
    assert win.ticks.ts_ms.tolist() == [T0 + i for i in range(100, 600)]
    assert w.dropped == 0 and w.buffered_ticks == 0


def test_buffer_overflow_drops_oldest_counts_and_records_a_gap(private_redis):
    client, server = private_redis
    w = MarketDataWriter(client, buffer_max_ticks=250)
    server.stop()
    for k in range(6):
        w.ingest([quote("O", k * 100 + i, T0 + k * 100 + i) for i in range(100)])
        assert w.flush() is False
        assert w.buffered_ticks <= 250 + 100  # bound (whole batches are dropped)
    server.start()
    assert w.flush()
    assert w.flush()  # the gap record goes out with the next batch
    win = read_windows(client, ["O"], ticks=1000)["O"]
    kept = win.ticks.ts_ms.tolist()
    assert w.dropped == 600 - len(kept) > 0
    assert kept == [T0 + i for i in range(600 - len(kept), 600)]  # the newest survive, in order
    gaps = read_gaps(client)
    assert gaps[0]["reason"] == "buffer_overflow" and gaps[0]["symbols"] == "O"
    assert int(gaps[0]["missed"]) == w.dropped


def test_gap_malformed_connection_events_reach_health(redis_client):
    w = MarketDataWriter(redis_client, transport_name="websocket")
    w.set_subscribed(["A", "B"])
    w.ingest([
        ConnectionEvent("connected", 0),
        quote("A", 1, T0),
        MalformedFrame('{"type":"quote","seq":3', "invalid JSON", T0, None),
        MalformedFrame("old", "seq 2 after 5", T0, "A", kind="out_of_order"),
        GapEvent("reconnect", ["A", "B"], T0, T0 + 1500),
        GapEvent("sequence", ["A"], T0, T0 + 10, missed=4),
        ConnectionEvent("connected", 1),
    ])
    w.write_health(at_ms=T0 + 1000)
    assert w.flush()
    h = read_health(redis_client, at_ms=T0 + 2000)
    assert h.subscribed == ["A", "B"]
    assert h.process["transport"] == "websocket" and h.process["connection"] == "connected"
    assert (h.process["reconnects"], h.process["malformed"], h.process["out_of_order"], h.process["gaps"]) == (1, 1, 1, 2)
    assert (h.symbols["A"].gaps, h.symbols["A"].out_of_order, h.symbols["B"].gaps) == (2, 1, 1)
    assert h.symbols["A"].last_tick_ms == T0 and h.symbols["A"].lag_ms == 2
    assert h.heartbeat_age_s == 1.0 and h.problems(5) == []
    assert h.stale_symbols(5) == ["B"]  # never ticked
    assert h.problems(0.5)  # heartbeat older than 0.5 s
    gaps = read_gaps(redis_client)
    assert [g["reason"] for g in gaps] == ["sequence", "reconnect"]
    assert gaps[0]["missed"] == "4" and gaps[1]["symbols"] == "A,B"


def test_warmup_history_goes_before_live_bars(redis_client):
    w = MarketDataWriter(redis_client)
    history = [Bar(T0 - 60_000 * k, 1.0, 1.1, 0.9, 1.05, 10.0, 0, 0, 10) for k in (3, 2, 1)]
    assert w.warmup_bars("H", history) == 3
    w.ingest([quote("H", 0, T0 + 5), quote("H", 1, T0 + 60_005)])  # closes the live minute T0
    assert w.flush()
    assert w.warmup_bars("H", history) == 0  # nothing older than what is held goes in twice
    win = read_windows(redis_client, ["H"], include_forming=False)["H"]
    assert win.bars_1m.ts_ms.tolist() == [T0 - 180_000, T0 - 120_000, T0 - 60_000, T0]


def test_reader_works_with_decoding_clients(redis_client):
    import redis as redis_lib
    from django.conf import settings

    w = MarketDataWriter(redis_client)
    w.ingest([quote("D", i, T0 + i) for i in range(5)])
    assert w.flush()
    decoding = redis_lib.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        assert read_windows(decoding, ["D"])["D"].ticks.ts_ms.tolist() == [T0 + i for i in range(5)]
        assert read_health(decoding, ["D"]).symbols["D"].ticks == 0  # no health written yet
    finally:
        decoding.close()


@pytest.mark.parametrize("bad", [0, -1])
def test_zero_or_negative_windows_are_empty(redis_client, bad):
    w = MarketDataWriter(redis_client)
    w.ingest([quote("Z", i, T0 + i * 1000) for i in range(5)])
    assert w.flush()
    out = read_windows(redis_client, ["Z"], ticks=bad, bars_1s=bad, bars_1m=bad)["Z"]
    assert len(out.ticks) == 0 and len(out.bars_1s) == 0 and len(out.bars_1m) == 0
