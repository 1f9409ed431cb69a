"""The simulator's HTTP surface: auth rules, bad input answered clearly, control API, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from matchtrader import protocol as P

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def session(sim, account):
    s = requests.Session()
    r = s.post(sim.url + P.PATH_LOGIN, json={"email": account["email"], "password": "pw", "brokerId": "0"})
    assert r.status_code == 200
    body = r.json()
    s.trading_token = body["tradingAccounts"][0]["tradingApiToken"]
    s.base = sim.url + P.trading_path(account["systemUuid"], "")
    s.headers[P.HDR_TRADING_TOKEN] = s.trading_token
    yield s
    s.close()


def test_login_shape_cookies_and_alias(sim, account):
    for path in (P.PATH_LOGIN, P.PATH_LOGIN_ALIAS):
        r = requests.post(sim.url + path, json={"email": account["email"], "password": "pw", "brokerId": "0"})
        assert r.status_code == 200
        assert {"co-auth", "rt"} <= set(r.cookies.keys())
        body = r.json()
        assert body["accounts"] == body["tradingAccounts"]
        acc = body["tradingAccounts"][0]
        assert acc["offer"]["system"]["uuid"] == account["systemUuid"]
        assert acc["tradingAccountId"] == account["tradingAccountId"]
        assert body["selectedTradingAccount"]["leverage"] == 100
    r = requests.post(sim.url + P.PATH_LOGIN, json={"email": account["email"], "password": "x", "brokerId": "0"})
    assert r.status_code == 401 and r.json()["errorMessage"] == "Invalid credentials"


def test_auth_rules(sim, session, account):
    assert session.get(session.base + "/balance").status_code == 200
    # strict mode: header alone is not enough
    r = requests.get(session.base + "/balance", headers={P.HDR_TRADING_TOKEN: session.trading_token})
    assert r.status_code == 401
    # lenient mode accepts the header alone
    sim.control.set_faults(strict_auth=False)
    assert requests.get(session.base + "/balance", headers={P.HDR_TRADING_TOKEN: session.trading_token}).status_code == 200
    # an unknown uuid is answered exactly like a wrong token (no account enumeration)
    unknown = session.get(sim.url + "/mtr-api/not-a-uuid/balance")
    assert unknown.status_code == 401 and unknown.json() == {"errorMessage": "Invalid trading api token"}
    assert session.get(session.base + "/balance", headers={P.HDR_TRADING_TOKEN: "bad"}).status_code == 401


def test_refresh_empty_body_new_cookie_and_4_per_hour(sim, session):
    old = session.cookies.get("co-auth")
    for _ in range(4):
        r = session.post(sim.url + P.PATH_REFRESH)
        assert r.status_code == 200 and r.content == b""
    assert session.cookies.get("co-auth") != old
    assert session.get(session.base + "/balance").status_code == 200  # the new cookie works
    r = session.post(sim.url + P.PATH_REFRESH)
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_numbers_sent_as_strings_like_real_brokers(session):
    bal = session.get(session.base + "/balance").json()
    assert isinstance(bal["balance"], str) and bal["currency"] == "USD"
    inst = session.get(session.base + "/effective-instruments").json()
    assert isinstance(inst, list) and isinstance(inst[0]["volumeMin"], str)


@pytest.mark.parametrize("path,body,expect", [
    ("/position/open", "{not json", 400),
    ("/position/open", "", 400),
    ("/position/open", "[1,2]", 400),
    ("/position/open", '{"instrument":"EURUSD","orderSide":"BUY"}', 400),
    ("/position/open", '{"instrument":"EURUSD","orderSide":"HOLD","volume":0.01}', 400),
    ("/position/open", '{"instrument":"EURUSD","orderSide":"BUY","volume":"lots"}', 400),
    ("/position/open", '{"instrument":"EURUSD","orderSide":"BUY","volume":true}', 400),
    ("/position/open", '{"instrument":"EURUSD","orderSide":"BUY","volume":"NaN"}', 400),
    ("/position/open", '{"instrument":"EURUSD","orderSide":"BUY","volume":-0.01}', "INVALID_VOLUME"),
    ("/position/open", '{"instrument":"EURUSD","orderSide":"BUY","volume":0.013}', "INVALID_VOLUME"),
    ("/position/open", '{"instrument":"XXX","orderSide":"BUY","volume":0.01}', "UNKNOWN_INSTRUMENT"),
    ("/position/open", '{"instrument":12,"orderSide":"BUY","volume":0.01}', "UNKNOWN_INSTRUMENT"),
    ("/position/close", '{"positionId":"W0","instrument":"EURUSD","orderSide":"BUY","volume":"0.01"}',
     "POSITION_NOT_FOUND"),
    ("/positions/close", "[]", 400),
    ("/positions/close", '[{"positionId":"W0"}]', "POSITION_NOT_FOUND"),
    ("/pending-order/create", '{"instrument":"EURUSD","orderSide":"BUY","volume":0.01,"price":1,"type":"ICEBERG"}', 400),
    ("/pending-order/cancel", '{"id":"W0","instrument":"EURUSD","orderSide":"BUY","type":"LIMIT"}', "ORDER_NOT_FOUND"),
    ("/closed-positions", '{"from":"yesterday"}', 400),
    ("/last-finance", '{"resultSize":-1}', 400),
    ("/no-such-endpoint", "{}", 404),
])
def test_bad_input_is_answered_clearly(session, path, body, expect):
    r = session.post(session.base + path, data=body, headers={"Content-Type": "application/json"})
    if isinstance(expect, int):
        assert r.status_code == expect
        assert r.json()["errorMessage"]
    else:
        assert r.status_code == 200
        j = r.json()
        assert j["status"] == "REJECTED" and j["nativeCode"] == expect and j["errorMessage"] and j["orderId"] is None


@pytest.mark.parametrize("query,status", [
    ("symbol=EURUSD&interval=M3&from=2026-01-01T00:00:00Z", 400),
    ("symbol=EURUSD&interval=M1", 400),
    ("symbol=EURUSD&interval=M1&from=soon", 400),
    ("interval=M1&from=0", 400),
    ("symbol=EURUSD&interval=H1&from=0", 200),
])
def test_candles_validation(session, query, status):
    r = session.get(session.base + "/candles?" + query)
    assert r.status_code == status
    if status == 400:
        assert r.json()["errorMessage"]
    else:
        c = r.json()["candles"]
        assert c and all(x["time"] % 3_600_000 == 0 for x in c)


def test_last_finance_and_closed_snapshot_ws(sim, session, account):
    ops = session.post(session.base + "/last-finance", json={"types": ["DEPOSIT"], "resultSize": 10}).json()["operations"]
    assert ops[0]["type"] == "DEPOSIT" and ops[0]["profit"] == "10000.00"
    import json

    import websocket

    session.post(session.base + "/position/open", json={"instrument": "EURUSD", "orderSide": "BUY", "volume": 0.01})
    pid = session.get(session.base + "/open-positions").json()["positions"][0]["id"]
    sim.control.close_position(pid)  # behind the client's back
    assert session.get(session.base + "/open-positions").json()["positions"] == []
    ws = websocket.create_connection(sim.url.replace("http", "ws") + P.PATH_WS_CLOSED_SNAPSHOT, timeout=5,
                                     header=[f"{P.HDR_TRADING_TOKEN}: {session.trading_token}",
                                             f"Cookie: co-auth={session.cookies.get('co-auth')}"])
    ws.send(json.dumps({"symbols": ["EURUSD"], "from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}))
    ops = json.loads(ws.recv())["operations"]
    ws.close()
    assert [o["closeReason"] for o in ops] == [P.CLOSE_REASON_BROKER]


def test_control_api_bulk_accounts_faults_surge_stats(sim):
    t0 = time.monotonic()
    made = sim.control.create_accounts([{"email": f"bulk{i}@x", "password": "pw", "balance": 1000 + i}
                                        for i in range(1000)])
    assert len(made) == 1000 and len({m["systemUuid"] for m in made}) == 1000
    assert time.monotonic() - t0 < 3
    with pytest.raises(RuntimeError, match="400"):
        sim.control.set_faults(p_5xx=2)
    with pytest.raises(RuntimeError, match="400"):
        sim.control.set_faults(nonsense=1)
    with pytest.raises(RuntimeError, match="400"):
        sim.control.create_accounts([{"email": "x"}])
    with pytest.raises(RuntimeError, match="400"):
        sim.control.surge("NOPE")
    assert sim.control.surge("EURUSD", "SELL", 5, 2)["side"] == "SELL"
    assert sim.control.set_faults(latency_ms=5)["latency_ms"] == 5
    stats = sim.control.stats()
    assert stats["accounts"] >= 1000 and stats["ticks"] > 0
    with pytest.raises(RuntimeError, match="404"):
        sim.control.close_position("W0")


def test_cli_help_and_bad_args(capsys):
    from django.core.management import CommandError, call_command

    from matchtrader.simulator.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--fault-5xx" in capsys.readouterr().out
    for argv, text in ((["--fault-5xx", "2"], "probability"), (["--replay", "EURUSD=backtesting:NOPE"], "NOPE"),
                       (["--port", "70000"], "port"), (["--lost-mode", "boom"], "invalid choice")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and text in capsys.readouterr().err
    with pytest.raises(CommandError, match="SYMBOL=SOURCE"):
        call_command("run_simulator", "--replay", "EURUSD")
    with pytest.raises(CommandError, match="probability"):
        call_command("run_simulator", "--ws-malformed", "-1")


@pytest.mark.slow
def test_management_command_serves_and_stops_on_sigterm():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "manage.py", "run_simulator", "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--lost-mode" in r.stdout
    proc = subprocess.Popen([sys.executable, "manage.py", "run_simulator", "--port", "0", "--history-minutes", "5",
                             "--replay", "EURUSD=backtesting:EURUSD", "--symbols", "EURUSD,BTCUSD"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "listening on" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert requests.get(url + P.PATH_PLATFORM_DETAILS, timeout=5).json()["brokerName"] == "Simulator"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
