"""The simulator refuses what a real venue refuses: every hostile request of issue 19 gets a 4xx in
the documented shape ``{"errorMessage": ...}``, never a 500; slow clients are timed out; failed
logins and bad tokens are rate limited per account; an unknown uuid looks like a wrong token.
The fuzz test sends generated bodies and queries to every broker path."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matchtrader import protocol as P
from matchtrader.simulator.validation import CHECKS

JSON = {"Content-Type": "application/json"}


def login(sim, email, password="pw"):
    return requests.post(sim.url + P.PATH_LOGIN, json={"email": email, "password": password, "brokerId": "0"},
                         timeout=10)


@pytest.fixture
def trader(sim, account):
    """A logged-in requests session on a fresh account: .base is the account's /mtr-api prefix."""
    s = requests.Session()
    r = s.post(sim.url + P.PATH_LOGIN, json={"email": account["email"], "password": "pw", "brokerId": "0"})
    assert r.status_code == 200
    s.headers[P.HDR_TRADING_TOKEN] = r.json()["tradingAccounts"][0]["tradingApiToken"]
    s.base = sim.url + P.trading_path(account["systemUuid"], "")
    yield s
    s.close()


def assert_refused(response, status=400):
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body[P.F_ERROR_MESSAGE], str) and body[P.F_ERROR_MESSAGE]


def open_position(trader, volume="0.10"):
    r = trader.post(trader.base + P.P_POSITION_OPEN,
                    json={"instrument": "EURUSD", "orderSide": "BUY", "volume": volume})
    assert r.json()["status"] == "OK", r.text
    return trader.get(trader.base + P.P_OPEN_POSITIONS).json()["positions"][0]


DEEP = "[" * 1000 + "]" * 1000  # 2 KB


@pytest.mark.parametrize("path", [P.PATH_LOGIN, P.PATH_LOGIN_ALIAS])
def test_unauthenticated_login_paths_refuse_hostile_bodies(sim, path):
    assert_refused(requests.post(sim.url + path, data=DEEP, headers=JSON))
    assert_refused(requests.post(sim.url + path, data='{"email": {"a": ' * 300 + "1" + "}" * 301, headers=JSON))
    assert_refused(requests.post(sim.url + path, data=b'{"email": "\xff\xfe", "password": "x"}', headers=JSON))
    assert_refused(requests.post(sim.url + path, data=b'{"email": "a@b", "password": "x"}',
                                 headers={"Content-Type": "application/json; charset=klingon"}), 415)
    assert_refused(requests.post(sim.url + path, data='{"email": NaN, "password": 1}', headers=JSON))


@pytest.mark.parametrize("path,body", [
    (P.P_POSITION_OPEN, DEEP),
    (P.P_POSITION_OPEN, '{"instrument": "EURUSD", "orderSide": "BUY", "volume": NaN}'),
    (P.P_POSITION_OPEN, '{"instrument": "EURUSD", "orderSide": "BUY", "volume": 0.1, "slPrice": -1}'),
    (P.P_POSITION_OPEN, '{"instrument": "EURUSD", "orderSide": "BUY", "volume": 0.1, "tpPrice": 1e308}'),
    (P.P_POSITION_OPEN, '{"instrument": "EURUSD", "orderSide": "BUY", "volume": 0.1, "tpPrice": 15.5}'),
    (P.P_POSITION_OPEN, '{"instrument": "EURUSD", "orderSide": "BUY", "volume": "1E-1000027"}'),
    (P.P_PENDING_CREATE, '{"instrument": "EURUSD", "orderSide": "BUY", "type": "LIMIT", "volume": 0.1, '
                         '"price": "1E-999999999"}'),
    (P.P_PENDING_CREATE, '{"instrument": "EURUSD", "orderSide": "BUY", "type": "STOP", "volume": 0.1, '
                         '"price": "1E+999999999"}'),
    (P.P_PENDING_CREATE, '{"instrument": "EURUSD", "orderSide": "BUY", "type": "STOP", "volume": 0.1, '
                         '"price": 1E+999999999}'),
    (P.P_CLOSED_POSITIONS, '{"from": NaN, "to": 1}'),
    (P.P_CLOSED_POSITIONS, '{"from": Infinity, "to": 1}'),
    (P.P_CLOSED_POSITIONS, '{"from": 1e400, "to": 1}'),
    (P.P_CLOSED_POSITIONS, '{"from": "NaN", "to": "1"}'),
    (P.P_CLOSED_POSITIONS, '{"from": 0, "to": 1, "symbols": [[["EURUSD"]]]}'),
    (P.P_LAST_FINANCE, '{"types": 5}'),
    (P.P_LAST_FINANCE, '{"types": [1, {"a": 2}]}'),
    (P.P_LAST_FINANCE, '{"types": "DEPOSIT"}'),
    (P.P_LAST_FINANCE, '{"resultSize": "10"}'),
    (P.P_LAST_FINANCE, '{"resultSize": 1e300}'),
    (P.P_POSITIONS_CLOSE, json.dumps([f"W{i}" for i in range(P.MAX_CLOSE_IDS + 1)])),
    (P.P_POSITIONS_CLOSE, '[{"positionId": {"x": 1}}]'),
    (P.P_PENDING_CANCEL, '{"id": [1]}'),
])
def test_hostile_trading_bodies_get_a_4xx(trader, path, body):
    assert_refused(trader.post(trader.base + path, data=body, headers=JSON))


def test_non_utf8_and_unknown_charsets_are_refused(trader):
    body = '{"from": 0, "to": 1, "symbols": ["é"]}'.encode("latin-1")
    assert_refused(trader.post(trader.base + P.P_CLOSED_POSITIONS, data=body, headers=JSON))
    assert_refused(trader.post(trader.base + P.P_CLOSED_POSITIONS, data=b'{"from": 0, "to": 1}',
                               headers={"Content-Type": "application/json; charset=x-unknown"}), 415)


@pytest.mark.parametrize("value", ["²", "١٢", "1e3", "-5", "99999999999999999999", "2026-13-45T00:00:00Z"])
def test_candles_refuse_times_that_are_not_times(trader, value):
    r = trader.get(trader.base + P.P_CANDLES, params={"symbol": "EURUSD", "interval": "M1", "from": value})
    assert_refused(r)


def test_a_close_of_a_volume_with_absurd_precision_executes_nothing(trader):
    pos = open_position(trader)
    for body in ({"positionId": pos["id"], "volume": "1E-1000027"},
                 {"positionId": pos["id"], "volume": "0.000000000001"}):
        assert_refused(trader.post(trader.base + P.P_POSITION_CLOSE_PARTIALLY, json=body))
        assert_refused(trader.post(trader.base + P.P_POSITION_CLOSE, json=body))
    after = trader.get(trader.base + P.P_OPEN_POSITIONS).json()["positions"]
    assert [(p["id"], p["volume"]) for p in after] == [(pos["id"], pos["volume"])]


def test_stops_of_an_edit_are_checked_against_the_positions_market(trader):
    pos = open_position(trader)
    assert_refused(trader.post(trader.base + P.P_POSITION_EDIT, json={"id": pos["id"], "slPrice": "0.0001"}))
    assert_refused(trader.post(trader.base + P.P_POSITION_EDIT, json={"id": pos["id"], "tpPrice": -3}))
    ok = trader.post(trader.base + P.P_POSITION_EDIT, json={"id": pos["id"], "slPrice": "1.0", "tpPrice": 0})
    assert ok.status_code == 200 and ok.json()["status"] == "OK"


def test_a_huge_body_gets_413_in_the_documented_shape_and_others_are_not_blocked(sim, trader):
    ids = json.dumps([f"W{i}" for i in range(400_000)])  # ~4.4 MB: refused on its Content-Length
    with ThreadPoolExecutor(2) as pool:
        big = pool.submit(trader.post, trader.base + P.P_POSITIONS_CLOSE, data=ids, headers=JSON)
        started = time.monotonic()
        assert requests.get(sim.url + "/_sim/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
        assert_refused(big.result(), 413)
    r = trader.post(trader.base + P.P_POSITIONS_CLOSE, data=b"[" + b" " * (10 * 1024 * 1024) + b"]", headers=JSON)
    assert_refused(r, 413)


def test_an_unknown_uuid_is_answered_exactly_like_a_wrong_token(sim, trader, account):
    wrong_token = trader.get(trader.base + P.P_BALANCE, headers={P.HDR_TRADING_TOKEN: "not-the-token"})
    unknown = trader.get(sim.url + P.trading_path("00000000-0000-0000-0000-000000000000", P.P_BALANCE))
    assert (wrong_token.status_code, wrong_token.text) == (unknown.status_code, unknown.text)
    assert unknown.status_code == 401
    # authentication comes before validation: a hostile body without a valid token learns nothing more
    r = requests.post(sim.url + P.trading_path("nobody", P.P_POSITION_OPEN), data=DEEP, headers=JSON)
    assert (r.status_code, r.text) == (unknown.status_code, unknown.text)


def test_failed_logins_are_rate_limited_per_account(sim, account):
    for _ in range(P.AUTH_FAILURES_MAX):
        assert login(sim, account["email"], "wrong").status_code == 401
    locked = login(sim, account["email"])  # even the right password, for the window
    assert locked.status_code == 429 and int(locked.headers[P.HDR_RETRY_AFTER]) > 0
    assert_refused(locked, 429)
    other = sim.control.create_account(f"other-{time.monotonic_ns()}@sim.test", "pw")
    assert login(sim, other["email"]).status_code == 200  # same address, another account: unaffected


def test_bad_tokens_are_rate_limited_per_uuid(sim, trader, account):
    for _ in range(P.AUTH_FAILURES_MAX):
        assert trader.get(trader.base + P.P_BALANCE, headers={P.HDR_TRADING_TOKEN: "guess"}).status_code == 401
    r = trader.get(trader.base + P.P_BALANCE, headers={P.HDR_TRADING_TOKEN: "guess"})
    assert r.status_code == 429 and P.HDR_RETRY_AFTER in r.headers
    other = sim.control.create_account(f"other-{time.monotonic_ns()}@sim.test", "pw")
    token = login(sim, other["email"]).json()["tradingAccounts"][0]["tradingApiToken"]
    assert requests.get(sim.url + P.trading_path(other["systemUuid"], P.P_BALANCE),
                        headers={P.HDR_TRADING_TOKEN: token}).status_code in (200, 401)  # 401: strict cookie


def test_many_accounts_log_in_from_one_address(sim):
    accounts = [sim.control.create_account(f"many-{i}-{time.monotonic_ns()}@sim.test", "pw") for i in range(60)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda a: (login(sim, a["email"], "typo").status_code,
                                            login(sim, a["email"]).status_code), accounts))
    assert statuses == [(401, 200)] * len(accounts)


# --- slow clients -------------------------------------------------------------------------------
def _read_response(sock, deadline_s) -> bytes:
    """Bytes until one whole HTTP response (headers + Content-Length body) or the deadline."""
    sock.settimeout(deadline_s)
    data = b""
    try:
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), b"0"))
                if len(body) >= length:
                    return data
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
    except TimeoutError:
        return data


@pytest.mark.slow
def test_slow_clients_are_timed_out_and_do_not_block_others(sim):
    host, port = "127.0.0.1", int(sim.url.rsplit(":", 1)[1])
    headers_only = socket.create_connection((host, port))
    headers_only.sendall(b"POST /manager/mtr-login HTTP/1.1\r\nHost: sim\r\nContent-Type: appl")
    partial_body = socket.create_connection((host, port))
    partial_body.sendall(b"POST /manager/mtr-login HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"email\": ")
    started = time.monotonic()
    # everyone else is served meanwhile
    assert requests.get(sim.url + "/_sim/health", timeout=2).status_code == 200
    limit = max(P.REQUEST_HEADER_TIMEOUT_S, P.REQUEST_BODY_TIMEOUT_S) + 5
    for sock in (headers_only, partial_body):
        answer = _read_response(sock, limit)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"connection: close" in answer.lower()
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])[P.F_ERROR_MESSAGE]
    assert time.monotonic() - started < limit


# --- fuzz: no 500, server still answering --------------------------------------------------------
NASTY_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "1E-1000027", "1E+999999999", "²", "١٢", "0.01",
                     "0.1", "1.08", "EURUSD", "BUY", "SELL", "LIMIT", "STOP", "W1", "", "2026-01-01T00:00:00Z",
                     "\x00", "🚀", "-1", "0"]),
    st.text(max_size=12),
)
VALUES = st.recursive(NASTY_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
KEYS = [P.F_INSTRUMENT, P.F_ORDER_SIDE, P.F_VOLUME, P.F_SL_PRICE, P.F_TP_PRICE, P.F_POSITION_ID, P.F_ID, P.F_PRICE,
        P.F_PRICE_ORDER, P.F_TYPE, P.F_FROM, P.F_TO, P.F_SYMBOLS, "types", "resultSize", "ids", P.F_EMAIL,
        P.F_PASSWORD, P.F_BROKER_ID]
OBJECTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6)
BODIES = st.one_of(
    OBJECTS.map(lambda o: json.dumps(o, allow_nan=True).encode()),
    st.lists(st.one_of(OBJECTS, NASTY_SCALARS), max_size=5).map(lambda o: json.dumps(o, allow_nan=True).encode()),
    st.binary(max_size=40),
    st.integers(1, 600).map(lambda n: ("[" * n + "]" * n).encode()),
)
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                                 "application/json; charset=latin-1", "application/json; charset=nope", ""])
BROKER_POSTS = [path for (method, path) in CHECKS if method == "POST"]
BROKER_GETS = [P.P_BALANCE, P.P_INSTRUMENTS, P.P_QUOTATIONS, P.P_CANDLES, P.P_OPEN_POSITIONS, P.P_ACTIVE_ORDERS]
QUERY = st.dictionaries(st.sampled_from([P.F_SYMBOL, P.F_SYMBOLS, P.F_INTERVAL, P.F_FROM, P.F_TO]),
                        st.one_of(st.text(max_size=12), st.sampled_from(["EURUSD", "M1", "H1", "0", "²", "NaN"])),
                        max_size=4)


@pytest.mark.slow
@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_every_broker_path_no_500_and_still_answering(sim, trader, data):
    kind = data.draw(st.sampled_from(["post", "get", "login", "refresh"]))
    if kind == "post":
        path = data.draw(st.sampled_from(BROKER_POSTS))
        r = trader.post(trader.base + path, data=data.draw(BODIES), headers={"Content-Type": data.draw(CONTENT_TYPES)})
    elif kind == "get":
        r = trader.get(trader.base + data.draw(st.sampled_from(BROKER_GETS)), params=data.draw(QUERY))
    elif kind == "login":
        r = requests.post(sim.url + data.draw(st.sampled_from([P.PATH_LOGIN, P.PATH_LOGIN_ALIAS])),
                          data=data.draw(BODIES), headers={"Content-Type": data.draw(CONTENT_TYPES)}, timeout=10)
    else:
        r = trader.post(sim.url + P.PATH_REFRESH, data=data.draw(BODIES), headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.json()[P.F_ERROR_MESSAGE]
    assert trader.get(trader.base + P.P_BALANCE, timeout=5).status_code == 200  # still answering


@pytest.mark.parametrize("frame", ['{"from": 1e400, "to": 1}', '{"from": NaN, "to": 1}', '{"from": "²", "to": 1}',
                                   "[" * 900 + "]" * 900, "\udcff"])
def test_the_closed_snapshot_websocket_answers_hostile_frames_with_an_error_frame(sim, trader, frame):
    import websocket

    ws = websocket.create_connection(sim.url.replace("http", "ws") + P.PATH_WS_CLOSED_SNAPSHOT, timeout=5,
                                     header=[f"{P.HDR_TRADING_TOKEN}: {trader.headers[P.HDR_TRADING_TOKEN]}",
                                             f"Cookie: co-auth={trader.cookies.get('co-auth')}"])
    try:
        ws.send(frame.encode("utf-8", "surrogatepass"), opcode=websocket.ABNF.OPCODE_TEXT)
        received = ws.recv()
    except websocket.WebSocketConnectionClosedException:
        received = ""
    finally:
        ws.close()
    # an invalid UTF-8 text frame is the WebSocket layer's to refuse (RFC 6455: it closes, code 1007)
    if frame != "\udcff":
        answer = json.loads(received)
        assert answer[P.WS_TYPE] == P.WS_T_ERROR and answer["code"] == P.WS_ERR_BAD_REQUEST
    assert requests.get(trader.base + P.P_BALANCE, headers=dict(trader.headers), cookies=trader.cookies,
                        timeout=5).status_code == 200
