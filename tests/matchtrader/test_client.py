"""MatchTraderClient against the real simulator over sockets: every call and every error class."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import requests

from matchtrader import protocol as P
from matchtrader.client import InMemoryTokenStore, MatchTraderClient
from matchtrader.errors import (
    AuthenticationError,
    BrokerUnavailable,
    InvalidRequest,
    MalformedResponse,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
)
from matchtrader.ratelimit import NoLimit
from tests.waiting import wait_for


def _executions(sim, uuid, action="open"):
    return [e for e in sim.control.ledger(uuid)["executions"] if e["action"] == action]


def test_login_and_reads(sim, client, account):
    assert client.platform_details()["partnerId"] == "0"
    assert client.system_uuid == account["systemUuid"]
    assert client.trading_account_id == account["tradingAccountId"]
    bal = client.balance()
    assert bal.balance == D("10000.00") and bal.currency == "USD"
    inst = {i.symbol: i for i in client.instruments()}
    assert inst["EURUSD"].contract_size == D("100000") and inst["EURUSD"].price_precision == 5
    assert inst["XAUUSD"].contract_size == D("100") and inst["BTCUSD"].contract_size == D("1")
    assert inst["US500"].volume_step == D("0.1")
    quotes = client.quotations(["EURUSD", "USDJPY"])
    assert [q.symbol for q in quotes] == ["EURUSD", "USDJPY"]
    assert all(q.ask > q.bid for q in quotes)
    now = datetime.now(UTC)
    candles = client.candles("EURUSD", "M1", now - timedelta(minutes=30), now)
    assert 28 <= len(candles) <= 32  # pre-generated history is there right after start
    assert all(c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close) for c in candles)
    assert [c.time_ms for c in candles] == sorted(c.time_ms for c in candles)
    assert client.open_positions() == [] and client.active_orders() == []


def test_choose_account_by_uuid_and_unknown_account(sim, account):
    [second] = sim.control.create_accounts([{"email": account["email"], "password": "pw", "balance": 500}])
    # two accounts behind one login and none configured: refused, never "the first one"
    with pytest.raises(AuthenticationError, match="configure which one"):
        MatchTraderClient(sim.url, account["email"], "pw", "0", rate_limiter=NoLimit()).balance()
    c = MatchTraderClient(sim.url, account["email"], "pw", "0", system_uuid=second["systemUuid"], rate_limiter=NoLimit())
    assert c.balance().balance == D("500.00")
    by_id = MatchTraderClient(sim.url, account["email"], "pw", "0", trading_account_id=second["tradingAccountId"],
                              rate_limiter=NoLimit())
    assert by_id.system_uuid == second["systemUuid"]
    by_id.login()  # a later re-login (e.g. the fallback of a refused refresh) finds the same account
    assert by_id.system_uuid == second["systemUuid"]
    c2 = MatchTraderClient(sim.url, account["email"], "pw", "0", system_uuid="nope", rate_limiter=NoLimit())
    with pytest.raises(AuthenticationError):
        c2.balance()


def test_bad_credentials(sim, account):
    c = MatchTraderClient(sim.url, account["email"], "wrong", "0", rate_limiter=NoLimit())
    with pytest.raises(AuthenticationError):
        c.balance()


def test_trading_round_trip(sim, client, account):
    r = client.open_position("USDJPY", "SELL", D("0.10"), sl=None, tp=None)
    assert r.ok and r.order_id.startswith("W")
    [pos] = client.open_positions()  # the position id is read back ([doc §3.6](../../docs/match-trader-api.md))
    assert pos.symbol == "USDJPY" and pos.side == "SELL" and pos.volume == D("0.1") and pos.id != r.order_id
    q = client.quotations(["USDJPY"])[0]
    client.edit_position(pos.id, "USDJPY", "SELL", pos.volume, sl=q.ask + D("1"), tp=q.bid - D("1"))
    [pos] = client.open_positions()
    assert pos.stop_loss == q.ask + D("1")
    client.close_partially(pos.id, "USDJPY", "SELL", D("0.04"))
    assert client.open_positions()[0].volume == D("0.06")
    client.close_position(pos.id, "USDJPY", "SELL", D("0.06"))
    assert client.open_positions() == []
    closed = client.closed_positions(datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1))
    assert [c.close_reason for c in closed] == [P.CLOSE_REASON_PARTIAL, P.CLOSE_REASON_MANUAL]
    assert sum(c.volume for c in closed) == D("0.10")
    # many at once
    client.open_position("EURUSD", "BUY", D("0.01"))
    client.open_position("EURUSD", "SELL", D("0.02"))
    res = client.close_positions(client.open_positions())
    assert res.status == P.STATUS_OK and client.open_positions() == []
    # Decimal sent digit for digit
    client.open_position("EURUSD", "BUY", D("0.07"))
    bodies = [e["body"] for e in sim.control.ledger(account["systemUuid"])["requests"]]
    assert '"volume":0.07' in bodies[-1]


def test_pending_orders(sim, client):
    q = client.quotations(["EURUSD"])[0]
    client.create_pending("EURUSD", "BUY", "LIMIT", D("0.01"), q.ask - D("0.00500"), sl=q.ask - D("0.01"))
    [o] = client.active_orders()
    assert o.type == "LIMIT" and o.activation_price == q.ask - D("0.00500") and o.stop_loss == q.ask - D("0.01")
    client.edit_pending(o.id, "EURUSD", "BUY", "LIMIT", D("0.02"), q.ask - D("0.00600"))
    [o2] = client.active_orders()
    assert o2.volume == D("0.02") and o2.activation_price == q.ask - D("0.00600")
    client.cancel_pending(o.id, "EURUSD", "BUY", "LIMIT")
    assert client.active_orders() == []
    with pytest.raises(OrderRejected) as e:
        client.cancel_pending(o.id, "EURUSD", "BUY", "LIMIT")
    assert e.value.code == P.REJECT_ORDER_NOT_FOUND
    with pytest.raises(OrderRejected) as e:  # BUY LIMIT above the ask is on the wrong side
        client.create_pending("EURUSD", "BUY", "LIMIT", D("0.01"), q.ask + D("0.01"))
    assert e.value.code == P.REJECT_INVALID_STOPS


def test_pending_order_triggers_on_quote(sim, client):
    sim.control.market(paused=True, prices={"GBPUSD": 1.27000})
    try:
        client.create_pending("GBPUSD", "SELL", "STOP", D("0.01"), D("1.26500"))
        sim.control.market(prices={"GBPUSD": 1.26400})
        [pos] = client.open_positions()
        assert pos.symbol == "GBPUSD" and pos.side == "SELL" and pos.open_price == D("1.26400")
        assert client.active_orders() == []
    finally:
        sim.control.market(paused=False)


@pytest.mark.parametrize("kwargs,code", [
    (dict(symbol="EURUSD", side="BUY", volume=D("0.015")), P.REJECT_INVALID_VOLUME),
    (dict(symbol="EURUSD", side="BUY", volume=D("-0.01")), P.REJECT_INVALID_VOLUME),
    (dict(symbol="EURUSD", side="BUY", volume=D("99")), P.REJECT_NOT_ENOUGH_MONEY),
    (dict(symbol="NOPE", side="BUY", volume=D("0.01")), P.REJECT_UNKNOWN_INSTRUMENT),
    (dict(symbol="EURUSD", side="BUY", volume=D("0.01"), sl=D("9")), P.REJECT_INVALID_STOPS),
])
def test_business_rejects_are_order_rejected(sim, client, kwargs, code):
    with pytest.raises(OrderRejected) as e:
        client.open_position(**kwargs)
    assert e.value.code == code and e.value.message


def test_market_closed_and_position_not_found(sim, client):
    sim.control.set_faults(closed_symbols=["XAUUSD"])
    with pytest.raises(OrderRejected) as e:
        client.open_position("XAUUSD", "BUY", D("0.01"))
    assert e.value.code == P.REJECT_MARKET_CLOSED
    with pytest.raises(OrderRejected) as e:
        client.close_position("W1", "EURUSD", "BUY", D("0.01"))
    assert e.value.code == P.REJECT_POSITION_NOT_FOUND


def test_injected_reject(sim, client, account):
    sim.control.set_faults(p_reject=1.0, reject_code="MARKET_CLOSED")
    with pytest.raises(OrderRejected) as e:
        client.open_position("EURUSD", "BUY", D("0.01"))
    assert e.value.code == "MARKET_CLOSED"
    assert _executions(sim, account["systemUuid"]) == []


def test_401_refreshes_then_retries_once(sim, client):
    client.balance()
    before = client._tokens.co_auth
    sim.control.expire_sessions()
    assert client.balance().balance == D("10000.00")
    assert client._tokens.co_auth != before


def test_refresh_limit_falls_back_to_relogin(sim, client, account):
    sim.control.set_faults(refresh_limit_per_hour=1)
    client.balance()
    sim.control.expire_sessions()
    client.balance()  # refresh #1
    token_after_refresh = client._tokens.trading_api_token
    sim.control.expire_sessions()
    client.balance()  # refresh refused with 429 → full login → new trading token
    assert client._tokens.trading_api_token != token_after_refresh
    # a write answered 401 is NOT resent blindly (nothing documents "401 = not executed"): the
    # session is renewed and the outcome is left to the read-back
    sim.control.expire_sessions()
    with pytest.raises(OutcomeUnknown, match="401"):
        client.open_position("EURUSD", "BUY", D("0.01"))
    assert client.open_positions() == [] and _executions(sim, account["systemUuid"]) == []
    client.open_position("EURUSD", "BUY", D("0.01"))  # the renewed session sends it
    assert len(_executions(sim, account["systemUuid"])) == 1


def test_token_ttl_expiry(sim, account):
    sim.control.set_faults(token_ttl_s=0.3)
    c = MatchTraderClient(sim.url, account["email"], "pw", "0", rate_limiter=NoLimit())
    c.balance()
    headers = {P.HDR_TRADING_TOKEN: c._tokens.trading_api_token}
    url = sim.url + P.trading_path(c.system_uuid, P.P_BALANCE)
    wait_for(lambda: requests.get(url, headers=headers, cookies={"co-auth": c._tokens.co_auth}).status_code == 401)
    assert c.balance().balance == D("10000.00")  # refreshed transparently


def test_token_store_shares_a_session(sim, account):
    store = InMemoryTokenStore()
    a = MatchTraderClient(sim.url, account["email"], "pw", "0", rate_limiter=NoLimit(), token_store=store)
    a.balance()
    b = MatchTraderClient(sim.url, account["email"], "wrong-password", "0", rate_limiter=NoLimit(), token_store=store)
    assert b.balance().balance == D("10000.00")  # used the stored tokens, no login


def test_429_with_retry_after(sim, client):
    client.balance()
    sim.control.set_faults(p_429=1.0, retry_after_s=7)
    with pytest.raises(RateLimited) as e:
        client.balance()
    assert e.value.retry_after == 7.0


def test_server_side_rate_limit(sim, client):
    client.balance()
    sim.control.set_faults(rate_limit_per_min=3)
    client.balance()
    client.balance()
    with pytest.raises(RateLimited) as e:
        client.balance()
    assert e.value.retry_after > 0


def test_5xx_on_read_is_broker_unavailable_and_on_write_outcome_unknown(sim, client, account):
    client.balance()
    sim.control.set_faults(p_5xx=1.0)
    with pytest.raises(BrokerUnavailable) as e:
        client.open_positions()
    assert e.value.status == 503
    with pytest.raises(OutcomeUnknown):
        client.open_position("EURUSD", "BUY", D("0.01"))
    sim.control.set_faults(p_5xx=0.0)
    assert _executions(sim, account["systemUuid"]) == []  # that 5xx came before execution


@pytest.mark.parametrize("mode", ["5xx", "timeout", "drop"])
def test_executed_then_lost_is_outcome_unknown_and_executed_once(sim, account, mode):
    c = MatchTraderClient(sim.url, account["email"], "pw", "0", rate_limiter=NoLimit(), timeout=(2, 0.5))
    c.balance()
    sim.control.set_faults(p_lost=1.0, lost_mode=mode, lost_sleep_s=1.5)
    with pytest.raises(OutcomeUnknown):
        c.open_position("EURUSD", "BUY", D("0.01"))
    sim.control.set_faults(p_lost=0.0)
    ledger = sim.control.ledger(account["systemUuid"])
    assert len([r for r in ledger["requests"] if r["path"] == P.P_POSITION_OPEN]) == 1
    assert len(_executions(sim, account["systemUuid"])) == 1
    assert len(c.open_positions()) == 1  # reconciliation by reading back finds it


def test_read_timeout_on_read_is_broker_unavailable(sim, account):
    c = MatchTraderClient(sim.url, account["email"], "pw", "0", rate_limiter=NoLimit(), timeout=(2, 0.3))
    c.balance()
    sim.control.set_faults(latency_ms=1000, scope="read")
    with pytest.raises(BrokerUnavailable):
        c.balance()


def test_connection_refused_is_broker_unavailable_even_for_writes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    c = MatchTraderClient(f"http://127.0.0.1:{port}", "x@y", "pw", "0", rate_limiter=NoLimit(), timeout=(0.5, 0.5))
    with pytest.raises(BrokerUnavailable):
        c.platform_details()
    c._tokens = __import__("matchtrader.client", fromlist=["_Tokens"])._Tokens("a", "b", "c", "u", "1")
    with pytest.raises(BrokerUnavailable):
        c.open_position("EURUSD", "BUY", D("0.01"))


def test_malformed_and_challenge_responses(sim, client, account):
    client.balance()
    sim.control.set_faults(p_garbage=1.0)
    with pytest.raises(MalformedResponse):
        client.balance()
    with pytest.raises(OutcomeUnknown):  # an unreadable answer to a write: outcome unknown
        client.open_position("EURUSD", "BUY", D("0.01"))
    sim.control.set_faults(p_garbage=0.0, p_403=1.0)
    with pytest.raises(BrokerUnavailable) as e:
        client.balance()
    assert e.value.status == 403


def test_invalid_request(sim, client):
    with pytest.raises(InvalidRequest) as e:
        client.candles("NOPE", "M1", datetime.now(UTC) - timedelta(minutes=5))
    assert e.value.status == 400
    with pytest.raises(ValueError):
        client.candles("EURUSD", "M7", datetime.now(UTC))


def test_ok_with_error_code_is_kept_logged_and_left_to_the_read_back(sim, client, account, caplog):
    import logging

    sim.control.set_faults(p_ok_with_error_code=1.0)
    with caplog.at_level(logging.WARNING), pytest.raises(OutcomeUnknown, match="UNKNOWN_ERROR"):
        client.open_position("EURUSD", "BUY", D("0.01"))
    assert "mt_ok_with_error_code" in caplog.text
    assert len(client.open_positions()) == 1  # it did execute: the read-back tells


def test_a_persistent_403_is_a_configuration_error(sim, client):
    from matchtrader.client import PERSISTENT_403_AFTER
    from matchtrader.errors import ConfigurationError

    client.balance()
    sim.control.set_faults(persistent_403=True)
    for _ in range(PERSISTENT_403_AFTER - 1):
        with pytest.raises(BrokerUnavailable):
            client.balance()
    with pytest.raises(ConfigurationError, match="fix the configuration"):
        client.balance()
    sim.control.set_faults(persistent_403=False)
    assert client.balance().balance == D("10000.00")
    sim.control.set_faults(p_403=1.0)  # one challenge after a good answer is still an outage
    with pytest.raises(BrokerUnavailable):
        client.balance()


def test_a_truncated_history_is_paged_or_flagged(sim, client, account):
    ids = []
    for _ in range(5):
        client.open_position("EURUSD", "BUY", D("0.01"))
    # two closes per wall-clock second (the Platform API's from/to have whole seconds)
    for i, p in enumerate(client.open_positions()):
        if i and i % 2 == 0:
            second = int(datetime.now(UTC).timestamp())
            wait_for(lambda s=second: int(datetime.now(UTC).timestamp()) > s, 3, "the next second", interval=0.01)
        ids.append(p.id)
        client.close_position(p.id, p.symbol, p.side, p.volume)
    sim.control.set_faults(closed_history_limit=2)
    now = datetime.now(UTC)
    closed = client.closed_positions(now - timedelta(minutes=10), now + timedelta(minutes=1))
    assert sorted(c.id for c in closed) == sorted(ids)
    sim.control.set_faults(closed_history_limit=1)  # two closes inside one second: cannot be paged
    with pytest.raises(MalformedResponse, match="truncated"):
        client.closed_positions(now - timedelta(minutes=10), now + timedelta(minutes=1))
    raw = requests.post(sim.url + P.trading_path(client.system_uuid, P.P_CLOSED_POSITIONS),
                        json={"from": (now - timedelta(minutes=10)).isoformat(), "to": now.isoformat()},
                        headers={P.HDR_TRADING_TOKEN: client._tokens.trading_api_token},
                        cookies={"co-auth": client._tokens.co_auth}, timeout=5).json()
    assert raw["status"] == "FULL" and len(raw["operations"]) == 1
