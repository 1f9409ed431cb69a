"""REST polling transport against the simulator."""

from __future__ import annotations

import threading

import pytest

from matchtrader.client import MatchTraderClient
from matchtrader.events import CandleEvent, GapEvent, QuoteEvent
from matchtrader.polling import PollingTransport, candle_period
from matchtrader.ratelimit import NoLimit
from tests.waiting import wait_for


def test_budget_arithmetic():
    assert candle_period(10, 1.0, 300) == 10.0  # floor
    assert candle_period(100, 1.0, 300) == 25.0  # 60 quotes + 240 candles per minute
    with pytest.raises(ValueError):
        candle_period(1, 0.2, 300)  # quotes alone: 300/min
    t = PollingTransport(object(), interval_s=1.0, symbols=[f"S{i}" for i in range(100)])
    assert t.requests_per_minute() == pytest.approx(300)


class Sink(list):
    def of(self, kind):
        return [e for e in list(self) if isinstance(e, kind)]


@pytest.fixture
def poll_client(sim, account):
    calls = []

    class Counting(MatchTraderClient):
        def _send(self, method, path, *a, **kw):
            calls.append(path)
            return super()._send(method, path, *a, **kw)

    c = Counting(sim.url, account["email"], "pw", "0", rate_limiter=NoLimit())
    c.calls = calls
    return c


def test_polls_all_symbols_in_one_call_and_dedupes_unchanged_quotes(sim, poll_client):
    t = PollingTransport(poll_client, interval_s=0.25, symbols=["EURUSD", "GBPUSD", "XAUUSD"], budget_per_min=400)
    sink, stop = Sink(), threading.Event()
    th = threading.Thread(target=t.run, args=(sink.append, stop), daemon=True)
    th.start()
    try:
        wait_for(lambda: len(sink.of(CandleEvent)) >= 3 and {q.symbol for q in sink.of(QuoteEvent)} >= {"EURUSD", "XAUUSD"})
        sim.control.market(paused=True)  # prices frozen: further polls must not repeat quotes
        n_quotes = len(sink.of(QuoteEvent))
        quote_calls = lambda: len([p for p in poll_client.calls if p.endswith("/quotations")])  # noqa: E731
        k = quote_calls()
        wait_for(lambda: quote_calls() >= k + 3)
        assert len(sink.of(QuoteEvent)) <= n_quotes + 3  # at most the in-flight poll's changes
        n_quotes = len(sink.of(QuoteEvent))
        k = quote_calls()
        wait_for(lambda: quote_calls() >= k + 2)
        assert len(sink.of(QuoteEvent)) == n_quotes
    finally:
        sim.control.market(paused=False)
        stop.set()
        th.join(5)
    assert {c.symbol for c in sink.of(CandleEvent)} == {"EURUSD", "GBPUSD", "XAUUSD"}
    assert all(c.interval == "M1" for c in sink.of(CandleEvent))
    # one /quotations call per cycle for all three symbols; candles far less often
    q_calls = [p for p in poll_client.calls if p.endswith("/quotations")]
    c_calls = [p for p in poll_client.calls if p.endswith("/candles")]
    assert len(c_calls) <= 3 * 2 and len(q_calls) >= 5


def test_poll_failure_emits_gap_and_recovers(sim, poll_client):
    poll_client.balance()
    t = PollingTransport(poll_client, interval_s=0.25, symbols=["EURUSD"], candles=False, budget_per_min=400)
    sink, stop = Sink(), threading.Event()
    th = threading.Thread(target=t.run, args=(sink.append, stop), daemon=True)
    th.start()
    try:
        wait_for(lambda: sink.of(QuoteEvent))
        sim.control.set_faults(p_5xx=1.0)
        wait_for(lambda: sink.of(GapEvent))
        sim.control.set_faults(p_5xx=0.0)
        n = len(sink)
        wait_for(lambda: any(isinstance(e, QuoteEvent) for e in sink[n:]))
    finally:
        stop.set()
        th.join(5)
    gap = sink.of(GapEvent)[0]
    assert gap.reason == "poll_failed" and gap.symbols == ["EURUSD"] and gap.to_ms >= gap.from_ms
    assert t.stats.extra["poll_failures"] >= 1


def test_cadence_spends_the_dedicated_data_sessions_budget():
    from matchtrader.polling import MIN_INTERVAL_S, cadence

    interval, candles = cadence(10, 450)
    assert candles == 30.0 and interval == pytest.approx(60 / 430)  # 20 candle + 430 quote calls a minute
    interval, candles = cadence(100, 450)
    assert candles == pytest.approx(6000 / 90) and interval == pytest.approx(60 / 360)
    for n in (1, 10, 100, 1000):
        interval, candles = cadence(n, 450)
        assert 60 / interval + n * 60 / candles <= 450 + 1e-6 or interval == MIN_INTERVAL_S
    t = PollingTransport(object(), interval_s=None, symbols=["A"] * 1, budget_per_min=450)
    t.set_symbols([f"S{i}" for i in range(100)])
    assert t.interval_s == pytest.approx(60 / 360) and t.requests_per_minute() == pytest.approx(450)
    with pytest.raises(ValueError):
        cadence(10, 0)


def test_the_polling_transport_reads_through_the_trader_api(sim, account):
    """The same transport over the Trader API client (quotes + candles), nothing else changed."""
    from matchtrader.trader_client import TraderApiClient
    from workers.feed import FeedConfig, build_client, build_transport

    token = sim.control.issue_trader_token(account["systemUuid"], ["read"])
    cfg = FeedConfig(transport="polling", base_url=sim.url, trader_api_token=token, poll_interval_s=0.25)
    client = build_client(cfg)
    assert isinstance(client, TraderApiClient) and token not in repr(cfg) and token not in repr(client)
    t = build_transport(cfg, client)
    t.set_symbols(["EURUSD", "XAUUSD"])
    sink, stop = Sink(), threading.Event()
    th = threading.Thread(target=t.run, args=(sink.append, stop), daemon=True)
    th.start()
    try:
        wait_for(lambda: {q.symbol for q in sink.of(QuoteEvent)} >= {"EURUSD", "XAUUSD"}
                 and {c.symbol for c in sink.of(CandleEvent)} >= {"EURUSD", "XAUUSD"})
    finally:
        stop.set()
        th.join(5)
    with pytest.raises(ValueError, match="no stream"):
        build_transport(FeedConfig(transport="websocket", trader_api_token=token), client)
