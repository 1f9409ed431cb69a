"""Bad numbers are refused at the edge: NaN, infinities and negative prices/sizes from the broker
become malformed frames/entries (counted, logged, the feed keeps running); no float's binary
expansion is ever sent to the broker. The polling path and the request bodies go through a real
HTTP proxy the test starts in front of the simulator (it poisons answers / records bodies)."""

from __future__ import annotations

import http.server
import json
import threading
from decimal import Decimal as D

import numpy as np
import pytest
import requests

from matchtrader.client import MatchTraderClient
from matchtrader.errors import MalformedResponse
from matchtrader.events import MalformedFrame, QuoteEvent
from matchtrader.models import Candle, Quote, dec
from matchtrader.polling import PollingTransport
from matchtrader.ratelimit import NoLimit
from matchtrader.stream import parse_frame
from tests.waiting import wait_for
from tradeops.money import ceil_to_step, floor_to_step, round_to_step, to_decimal


def quote(bid, ask="1.2", sym="EURUSD"):
    return '{"type":"quote","seq":1,"data":{"symbol":"%s","bid":%s,"ask":%s,"timestampMs":5}}' % (sym, bid, ask)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "-1.1", "0", '"nan"', '"inf"', "1e999"])
def test_ws_quote_with_bad_price_is_malformed(value):
    [ev] = parse_frame(quote(value), 7)
    assert isinstance(ev, MalformedFrame) and ev.symbol == "EURUSD" and "price" in ev.error


@pytest.mark.parametrize("frame", [
    '{"type":"trade","data":{"symbol":"X","price":2,"volume":NaN,"aggressor":"BUY","timestampMs":9}}',
    '{"type":"trade","data":{"symbol":"X","price":2,"volume":-3,"aggressor":"BUY","timestampMs":9}}',
    '{"type":"trade","data":{"symbol":"X","price":-2,"volume":3,"aggressor":"BUY","timestampMs":9}}',
    '{"type":"depth","data":{"symbol":"X","bids":[[1,2]],"asks":[[3,Infinity]],"timestampMs":9}}',
    '{"type":"depth","data":{"symbol":"X","bids":[[1,-0.5]],"asks":[[3,4]],"timestampMs":9}}',
    '{"type":"depth","data":{"symbol":"X","bids":[[NaN,2]],"asks":[[3,4]],"timestampMs":9}}',
    '{"type":"candle","symbol":"X","interval":"M1","data":{"time":60000,"open":1,"high":Infinity,"low":1,'
    '"close":1,"volume":1}}',
    '{"type":"candle","symbol":"X","interval":"M1","data":{"time":60000,"open":1,"high":2,"low":1,'
    '"close":1,"volume":-1}}',
])
def test_ws_bad_sizes_and_prices_are_malformed(frame):
    [ev] = parse_frame(frame, 7)
    assert isinstance(ev, MalformedFrame)


def test_zero_sizes_are_fine():
    [ev] = parse_frame('{"type":"depth","data":{"symbol":"X","bids":[[1,0]],"asks":[[3,0.0]],"timestampMs":9}}', 7)
    assert ev.bids == [(1.0, 0.0)]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "NaN", "-Infinity", "sNaN"])
def test_rest_numbers_must_be_finite(value):
    with pytest.raises(MalformedResponse):
        dec(value, name="x")
    with pytest.raises(MalformedResponse):
        Quote.from_json({"symbol": "X", "bid": value, "ask": 1})


def test_rest_prices_positive_and_sizes_non_negative():
    with pytest.raises(MalformedResponse):
        Quote.from_json({"symbol": "X", "bid": -1, "ask": 1})
    with pytest.raises(MalformedResponse):
        Candle.from_json({"time": 1, "open": 1, "high": 1, "low": 1, "close": 1, "volume": -2})
    assert Candle.from_json({"time": 1, "open": 1, "high": 1, "low": 1, "close": 1, "volume": 0}).volume == 0


# --- tradeops.money -------------------------------------------------------------------------------
def test_to_decimal_accepts_numpy_floats_without_binary_noise():
    assert to_decimal(np.float64(0.1)) == D("0.1")
    assert to_decimal(np.float32(0.1)) == D("0.1")
    assert to_decimal(np.int64(7)) == D(7)
    assert to_decimal(0.1) == D("0.1")
    for bad in (float("nan"), np.float64("inf"), "NaN"):
        with pytest.raises(ValueError):
            to_decimal(bad)


def test_floor_to_step_never_rounds_up():
    # 28-digit context: value / step used to round to 3.000... and "floor" returned 0.03
    assert floor_to_step(D("0.0299999999999999999999999999999"), D("0.01")) == D("0.02")
    assert floor_to_step(D("1.99999999999999999999999999999999"), D("1")) == D("1")
    assert ceil_to_step(D("0.0200000000000000000000000000001"), D("0.01")) == D("0.03")
    assert round_to_step(D("0.125"), D("0.01")) == D("0.12") and round_to_step(D("0.135"), D("0.01")) == D("0.14")


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(value=st.decimals(min_value=0, max_value=10**6, allow_nan=False, allow_infinity=False, places=None),
       step=st.sampled_from([D("0.01"), D("0.001"), D("0.1"), D("1"), D("0.00001"), D("0.25"), D("5")]))
def test_floor_property(value, step):
    f = floor_to_step(value, step)
    assert f <= value < f + step and f % step == 0


# --- the proxy: poisons /quotations, records request bodies ---------------------------------------
class Proxy:
    def __init__(self, upstream: str):
        self.upstream = upstream
        self.poison: dict[str, object] = {}  # symbol -> bid to put into /quotations answers
        self.bodies: list[bytes] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                if body:
                    proxy.bodies.append(body)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=10)
                payload = r.content
                if self.path.split("?")[0].endswith("/quotations") and proxy.poison and r.ok:
                    text = r.text
                    rows = json.loads(text)
                    lst = rows if isinstance(rows, list) else rows["quotations"]
                    for row in lst:
                        if row["symbol"] in proxy.poison:
                            row["bid"] = "__BAD__"
                    payload = json.dumps(rows).replace('"__BAD__"', str(next(iter(proxy.poison.values())))).encode()
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() in ("content-type", "retry-after"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PUT = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(sim):
    p = Proxy(sim.url)
    yield p
    p.close()


@pytest.fixture
def pclient(proxy, account):
    return MatchTraderClient(proxy.url, account["email"], "pw", "0", rate_limiter=NoLimit())


class Sink(list):
    def of(self, kind):
        return [e for e in list(self) if isinstance(e, kind)]


@pytest.mark.parametrize("bad", ["NaN", "-1.5", "Infinity"])
def test_polling_drops_only_the_bad_quote_and_keeps_running(proxy, pclient, bad):
    proxy.poison = {"GBPUSD": bad}
    t = PollingTransport(pclient, interval_s=0.2, symbols=["EURUSD", "GBPUSD"], candles=False, budget_per_min=400)
    sink, stop = Sink(), threading.Event()
    th = threading.Thread(target=t.run, args=(sink.append, stop), daemon=True)
    th.start()
    try:
        wait_for(lambda: len(sink.of(MalformedFrame)) >= 2 and sink.of(QuoteEvent))
        proxy.poison = {}
        wait_for(lambda: any(q.symbol == "GBPUSD" for q in sink.of(QuoteEvent)))  # recovers
    finally:
        stop.set()
        th.join(5)
    bad_frames = sink.of(MalformedFrame)
    assert all(f.symbol == "GBPUSD" and "bid" in f.error for f in bad_frames)
    assert t.stats.malformed == len(bad_frames)
    assert {q.symbol for q in sink.of(QuoteEvent)} == {"EURUSD", "GBPUSD"}
    assert not [e for e in sink if type(e).__name__ == "GapEvent"]  # a bad entry is no failed poll


def test_client_never_sends_a_binary_expansion(proxy, pclient, sim):
    pclient.balance()
    r = pclient.open_position("EURUSD", "BUY", np.float64(0.1), sl=0.3, tp=None)
    assert r.ok
    body = proxy.bodies[-1].decode()
    assert '"volume":0.1' in body and "0.1000000000000000055" not in body and '"slPrice":0.3' in body
    with pytest.raises(ValueError):
        pclient.open_position("EURUSD", "BUY", float("nan"))
