"""WebSocket push: parsing, sequence gaps, reconnect + resubscribe, injected bad frames."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter

import pytest

from matchtrader.client import MatchTraderClient
from matchtrader.events import (
    BUY,
    CandleEvent,
    ConnectionEvent,
    DepthEvent,
    GapEvent,
    MalformedFrame,
    QuoteEvent,
    TradeEvent,
)
from matchtrader.ratelimit import NoLimit
from matchtrader.stream import SequenceTracker, WebSocketTransport, parse_frame
from tests.waiting import wait_for


def q(seq, ts=1000, sym="EURUSD"):
    return json.dumps({"type": "quote", "seq": seq, "data": {"symbol": sym, "bid": 1.1, "ask": 1.2, "timestampMs": ts}})


def test_parse_frame_kinds():
    [qe] = parse_frame(q(5), 7)
    assert qe == QuoteEvent("EURUSD", 1.1, 1.2, 1000, 7, 5)
    [te] = parse_frame('{"type":"trade","seq":1,"data":{"symbol":"X","price":2,"volume":3,"aggressor":"BUY",'
                       '"timestampMs":9}}', 10)
    assert isinstance(te, TradeEvent) and te.side == BUY and te.volume == 3.0
    [de] = parse_frame('{"type":"depth","seq":1,"data":{"symbol":"X","bids":[[1,2]],"asks":[[3,4]],"timestampMs":9}}', 10)
    assert isinstance(de, DepthEvent) and de.bids == [(1.0, 2.0)] and de.asks == [(3.0, 4.0)]
    [ce] = parse_frame('{"type":"candle","symbol":"X","interval":"M1","closed":true,"data":{"time":60000,"open":1,'
                       '"high":2,"low":0.5,"close":1.5,"volume":10}}', 10)
    assert isinstance(ce, CandleEvent) and ce.closed and ce.high == 2.0
    assert parse_frame('{"type":"heartbeat","timestampMs":1}', 1) == []
    assert parse_frame('{"type":"pong"}', 1) == []


@pytest.mark.parametrize("raw", ['{"type":"quote","data":{"sym', "[1,2]", '{"type":"quote","data":{"symbol":"X"}}',
                                 '{"type":"weird"}', b"\xff\xfe", '{"type":"depth","data":{"symbol":"X","bids":[1]}}'])
def test_parse_frame_never_raises_on_garbage(raw):
    [ev] = parse_frame(raw, 3)
    assert isinstance(ev, MalformedFrame) and ev.recv_ms == 3


def test_sequence_tracker_gap_and_out_of_order():
    tr = SequenceTracker()
    evs = [parse_frame(q(s, ts=s * 10), 0)[0] for s in (1, 2, 5, 4, 5, 6)]
    out = [tr.check(e) for e in evs]
    assert [keep for keep, _ in out] == [True, True, True, False, False, True]
    gap = out[2][1]
    assert isinstance(gap, GapEvent) and gap.missed == 2 and gap.reason == "sequence" and gap.from_ms == 20
    assert out[3][1].kind == "out_of_order" and out[4][1].kind == "out_of_order"
    # sequences are independent per symbol
    assert tr.check(parse_frame(q(1, sym="GBPUSD"), 0)[0]) == (True, None)


def test_backoff_is_capped_full_jitter():
    t = WebSocketTransport("ws://x", dict, [], backoff_base=0.5, backoff_cap=4, rng=random.Random(1))
    samples = [t.backoff(a) for a in range(1, 12) for _ in range(50)]
    assert all(0 <= s <= 4 for s in samples)
    assert max(t.backoff(10) for _ in range(200)) > 3  # grows up to the cap
    assert max(t.backoff(1) for _ in range(200)) <= 0.5


class Collector:
    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def __call__(self, ev):
        with self.lock:
            self.events.append(ev)

    def of(self, kind):
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def ws_client(sim, account):
    return MatchTraderClient(sim.url, account["email"], "pw", "0", rate_limiter=NoLimit())


def run_transport(transport):
    sink, stop = Collector(), threading.Event()
    th = threading.Thread(target=transport.run, args=(sink, stop), daemon=True)
    th.start()
    return sink, stop, th


def test_stream_reconnects_resubscribes_and_reports_the_gap(sim, ws_client):
    t = WebSocketTransport(ws_client.ws_url, ws_client.ws_auth_headers, ["EURUSD", "BTCUSD"],
                           channels=("quotes", "trades", "depth", "candles"), backoff_base=0.05)
    sink, stop, th = run_transport(t)
    try:
        wait_for(lambda: {e.symbol for e in sink.of(QuoteEvent)} == {"EURUSD", "BTCUSD"} and sink.of(DepthEvent)
                 and sink.of(TradeEvent) and sink.of(CandleEvent))
        assert sim.control.drop_websockets() >= 1
        wait_for(lambda: sink.of(GapEvent))
        [gap] = sink.of(GapEvent)
        assert gap.reason == "reconnect" and gap.symbols == ["BTCUSD", "EURUSD"] and gap.to_ms >= gap.from_ms
        n = len(sink.events)
        wait_for(lambda: any(isinstance(e, QuoteEvent) for e in sink.events[n:]))  # resubscribed
        t.set_symbols(["XAUUSD"])
        wait_for(lambda: sink.of(QuoteEvent)[-1].symbol == "XAUUSD")
        m = len(sink.events)
        wait_for(lambda: len([e for e in sink.events[m:] if isinstance(e, QuoteEvent)]) >= 5)
        assert {e.symbol for e in sink.events[m:] if isinstance(e, QuoteEvent)} == {"XAUUSD"}
    finally:
        stop.set()
        th.join(5)
    states = [e.state for e in sink.of(ConnectionEvent)]
    assert states[:3] == ["connected", "disconnected", "connected"] and states[-1] == "disconnected"
    assert t.stats.reconnects == 1 and not th.is_alive()


def test_malformed_and_out_of_order_frames_are_counted_and_good_ones_kept(sim, ws_client):
    sim.control.set_faults(p_ws_malformed=0.2, p_ws_out_of_order=0.2)
    t = WebSocketTransport(ws_client.ws_url, ws_client.ws_auth_headers, ["EURUSD", "GBPUSD"], channels=("quotes",))
    sink, stop, th = run_transport(t)
    try:
        wait_for(lambda: t.stats.malformed >= 3 and t.stats.out_of_order >= 3 and len(sink.of(QuoteEvent)) >= 40)
    finally:
        stop.set()
        th.join(5)
    kinds = Counter(e.kind for e in sink.of(MalformedFrame))
    assert kinds["malformed"] == t.stats.malformed and kinds["out_of_order"] == t.stats.out_of_order
    for sym in ("EURUSD", "GBPUSD"):
        seqs = [e.seq for e in sink.of(QuoteEvent) if e.symbol == sym]
        assert seqs == sorted(set(seqs))  # delivered in order, no duplicates
        assert seqs[-1] - seqs[0] + 1 == len(seqs)  # and none of the good frames lost
    assert not sink.of(GapEvent)


def test_bad_handshake_auth_calls_on_auth_error(sim, account):
    calls = []
    t = WebSocketTransport(sim.ws_url, lambda: {"Auth-trading-api": "bad"}, ["EURUSD"], backoff_base=0.01,
                           on_auth_error=lambda: calls.append(1))
    sink, stop, th = run_transport(t)
    try:
        wait_for(lambda: len(calls) >= 2)
    finally:
        stop.set()
        th.join(5)
    assert not sink.of(QuoteEvent)


def test_account_channel_pushes_positions(sim, ws_client):
    pushes = []
    t = WebSocketTransport(ws_client.ws_url, ws_client.ws_auth_headers, [], channels=("account",),
                           on_account=pushes.append)
    sink, stop, th = run_transport(t)
    try:
        wait_for(lambda: any(p["type"] == "balance" for p in pushes))
        from decimal import Decimal

        ws_client.open_position("EURUSD", "BUY", Decimal("0.01"))
        wait_for(lambda: any(p["type"] == "positions" and p["data"]["positions"] for p in pushes))
    finally:
        stop.set()
        th.join(5)


def test_server_heartbeat_and_auth_expiry_close_then_refresh(sim, ws_client):
    import websocket

    ws = websocket.create_connection(ws_client.ws_url, header=[f"{k}: {v}" for k, v in ws_client.ws_auth_headers().items()],
                                     timeout=5)
    try:
        assert json.loads(ws.recv())["type"] == "heartbeat"  # heartbeat_s=1 in this module's simulator
    finally:
        ws.close()
    t = WebSocketTransport(ws_client.ws_url, ws_client.ws_auth_headers, ["EURUSD"], channels=("quotes",),
                           backoff_base=0.05, on_auth_error=ws_client.refresh_session)
    sink, stop, th = run_transport(t)
    try:
        wait_for(lambda: sink.of(QuoteEvent))
        sim.control.expire_sessions()  # server closes with 4001 → refresh → reconnect
        wait_for(lambda: t.stats.reconnects == 1)
        n = len(sink.events)
        wait_for(lambda: any(isinstance(e, QuoteEvent) for e in sink.events[n:]))
    finally:
        stop.set()
        th.join(5)
    assert any("4001" in e.detail for e in sink.of(ConnectionEvent))


def test_parse_frame_throughput():
    """The feed needs >= 50,000 ticks/s end to end (bench/feed_ingest.py measures that); parsing alone is
    ~90k frames/s on one core here. Thread CPU time, so a loaded CI machine does not make it flaky."""
    import time

    frames = [q(i, ts=i) for i in range(20000)]
    t0 = time.thread_time()
    for f in frames:
        parse_frame(f, 0)
    rate = len(frames) / max(time.thread_time() - t0, 1e-9)
    assert rate > 40_000, rate


def test_injected_periodic_socket_drops(sim, ws_client):
    sim.control.set_faults(ws_drop_every_s=0.3)
    t = WebSocketTransport(ws_client.ws_url, ws_client.ws_auth_headers, ["EURUSD"], channels=("quotes",),
                           backoff_base=0.02)
    sink, stop, th = run_transport(t)
    try:
        wait_for(lambda: t.stats.reconnects >= 2)
    finally:
        stop.set()
        th.join(5)
    assert len(sink.of(GapEvent)) == t.stats.reconnects


def test_backoff_resets_on_received_data_so_frequent_drops_cost_little(sim, ws_client):
    """Shipped backoff (0.5 s base, 5 s cap), sockets cut every second: each session delivers
    quotes, so every reconnect is immediate; by wall time (a session had to last 10 s) the waits
    grew toward the cap and most of the time was spent disconnected."""
    sim.control.market(paused=False)
    sim.control.set_faults(ws_drop_every_s=1.0)
    t = WebSocketTransport(ws_client.ws_url, ws_client.ws_auth_headers, ["EURUSD"], channels=("quotes",))
    sink, stop, th = run_transport(t)
    try:
        wait_for(lambda: t.stats.reconnects >= 6, 20, "six reconnects")
    finally:
        stop.set()
        th.join(5)
    gaps = sink.of(GapEvent)
    down_ms = sum(g.to_ms - g.from_ms for g in gaps)
    assert down_ms / len(gaps) < 250, [g.to_ms - g.from_ms for g in gaps]
