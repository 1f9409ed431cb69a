"""TraderApiClient against the real simulator over sockets: every call, the idempotency store,
scopes and revocation, and faults on the Trader API."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import requests

from matchtrader import protocol as P
from matchtrader.errors import (
    IdempotencyKeyInvalid,
    InvalidRequest,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    ScopeForbidden,
    TokenRevoked,
)
from matchtrader.ratelimit import NoLimit
from matchtrader.trader_client import TraderApiClient, idempotency_key, order_tag


def _executions(sim, uuid_, action="open"):
    return [e for e in sim.control.ledger(uuid_)["executions"] if e["action"] == action]


@pytest.fixture
def token(sim, account):
    return sim.control.issue_trader_token(account["systemUuid"])


@pytest.fixture
def tclient(sim, token):
    c = TraderApiClient(sim.url, token, rate_limiter=NoLimit(), timeout=(2, 5), label="t")
    yield c
    c.session.close()


def test_reads(sim, tclient, account):
    bal = tclient.balance()
    assert bal.balance == D("10000.00") and bal.equity == D("10000.00")
    inst = {i.symbol: i for i in tclient.instruments()}
    assert inst["EURUSD"].contract_size == D("100000") and inst["EURUSD"].price_precision == 5
    quotes = tclient.quotations(["EURUSD", "XAUUSD"])
    assert {q.symbol for q in quotes} == {"EURUSD", "XAUUSD"} and all(q.ask > q.bid for q in quotes)
    now = datetime.now(UTC)
    candles = tclient.candles("EURUSD", "M1", now - timedelta(minutes=30), now)
    assert candles and all(isinstance(c.close, D) for c in candles)
    assert [c.time_ms for c in candles] == sorted(c.time_ms for c in candles)
    assert tclient.open_positions() == [] and tclient.active_orders() == []
    assert tclient.account()["currency"] == "USD"


def test_open_edit_partial_close_and_history(sim, tclient, account):
    res = tclient.open_position("EURUSD", "BUY", D("0.20"), intent="sig:1:acc:1")
    pid = res.position_id
    [pos] = tclient.open_positions()
    assert pos.id == pid and pos.volume == D("0.20") and pos.comment == order_tag("sig:1:acc:1")
    q = tclient.quotations(["EURUSD"])[0]
    tclient.edit_position(pid, "EURUSD", "BUY", D("0.20"), q.bid - D("0.0100"), None)
    assert tclient.open_positions()[0].stop_loss == q.bid - D("0.0100")
    tclient.close_partially(pid, "EURUSD", "BUY", D("0.05"), intent="close:1")
    tclient.close_partially(pid, "EURUSD", "BUY", D("0.05"), intent="close:2")  # two intents, two closes
    assert tclient.open_positions()[0].volume == D("0.10")
    tclient.close_position(pid, intent="close:3")
    assert tclient.open_positions() == []
    closed = tclient.closed_positions(datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1))
    assert sorted(c.volume for c in closed) == [D("0.05"), D("0.05"), D("0.10")]
    assert len(_executions(sim, account["systemUuid"], "close_partial")) == 2


def test_pending_orders(sim, tclient):
    q = tclient.quotations(["EURUSD"])[0]
    oid = tclient.create_pending("EURUSD", "BUY", "LIMIT", D("0.1"), q.bid - D("0.0200"), intent="p1").order_id
    [o] = tclient.active_orders()
    assert o.id == oid and o.type == "LIMIT"
    tclient.edit_pending(oid, "EURUSD", "BUY", "LIMIT", D("0.2"), q.bid - D("0.0300"))
    assert tclient.active_orders()[0].volume == D("0.2")
    tclient.cancel_pending(oid)
    assert tclient.active_orders() == []


def test_validation_failure_is_a_reject_with_the_brokers_detail(tclient):
    with pytest.raises(OrderRejected) as e:
        tclient.open_position("EURUSD", "BUY", D("0.013"), intent="bad-step")
    assert e.value.code == P.REJECT_INVALID_VOLUME and e.value.message
    with pytest.raises(OrderRejected) as e:
        tclient.open_position("EURUSD", "BUY", D("50"), intent="too-big")
    assert e.value.code == P.REJECT_NOT_ENOUGH_MONEY


def test_close_of_a_gone_position_reads_back_then_says_not_found(sim, tclient):
    pid = tclient.open_position("EURUSD", "SELL", D("0.1"), intent="o").position_id
    sim.control.close_position(pid)  # closed behind our back (SL, broker)
    with pytest.raises(OrderRejected) as e:
        tclient.close_position(pid, intent="c")
    assert e.value.code == P.REJECT_POSITION_NOT_FOUND


def test_same_key_after_lost_response_executes_once(sim, tclient, account):
    sim.control.set_faults(p_lost=1.0, lost_mode="5xx")
    with pytest.raises(OutcomeUnknown):
        tclient.open_position("EURUSD", "BUY", D("0.1"), intent="sig:9:acc:9")
    sim.control.set_faults(p_lost=0.0)
    first = tclient.open_position("EURUSD", "BUY", D("0.1"), intent="sig:9:acc:9")
    again = tclient.open_position("EURUSD", "BUY", D("0.1"), intent="sig:9:acc:9")
    assert first.position_id == again.position_id
    assert len(_executions(sim, account["systemUuid"])) == 1
    assert len(tclient.open_positions()) == 1
    replays = [e for e in sim.control.ledger(account["systemUuid"])["executions"]]
    assert len(replays) == 1


def test_same_key_different_body_is_refused_and_logged(sim, tclient, account, caplog):
    tclient.open_position("EURUSD", "BUY", D("0.1"), intent="k")
    with caplog.at_level(logging.ERROR), pytest.raises(IdempotencyKeyInvalid):
        tclient.open_position("EURUSD", "BUY", D("0.2"), intent="k")
    assert len(_executions(sim, account["systemUuid"])) == 1


def test_key_must_be_a_uuid_and_keys_expire_after_retention(sim, token, account):
    url = sim.url + P.TA_ROUTES[P.TA_OPEN][1]
    h = {P.TA_HDR_AUTH: P.TA_BEARER + token, P.TA_HDR_IDEMPOTENCY_KEY: "not-a-uuid"}
    r = requests.post(url, json={"symbol": "EURUSD", "side": "BUY", "volume": 0.1}, headers=h, timeout=5)
    assert r.status_code == 400 and r.json()["type"] == P.TA_ERR_IDEMPOTENCY_KEY
    key = str(uuid.uuid4())
    h[P.TA_HDR_IDEMPOTENCY_KEY] = key
    body = {"symbol": "EURUSD", "side": "BUY", "volume": 0.1}
    assert requests.post(url, json=body, headers=h, timeout=5).status_code == 201
    sim.control.set_faults(idempotency_retention_s=0.0)
    assert requests.post(url, json=body, headers=h, timeout=5).status_code == 201  # forgotten: executes again
    assert len(_executions(sim, account["systemUuid"])) == 2


def test_problem_details_shape(sim, token):
    r = requests.get(sim.url + P.TA_ROUTES[P.TA_CANDLES][1], params={"symbol": "EURUSD", "interval": "M2"},
                     headers={P.TA_HDR_AUTH: P.TA_BEARER + token}, timeout=5)
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == P.TA_ERR_CANDLE_INTERVAL and body["status"] == 400
    assert body["path"] == P.TA_ROUTES[P.TA_CANDLES][1] and body["title"] and body["detail"]


def test_read_only_token_and_revocation(sim, account, token):
    ro = TraderApiClient(sim.url, sim.control.issue_trader_token(account["systemUuid"], ["read"]),
                         rate_limiter=NoLimit())
    assert ro.balance().balance == D("10000.00")
    with pytest.raises(ScopeForbidden) as e:
        ro.open_position("EURUSD", "BUY", D("0.1"), intent="ro")
    assert e.value.write
    assert _executions(sim, account["systemUuid"]) == []
    rw = TraderApiClient(sim.url, token, rate_limiter=NoLimit())
    sim.control.revoke_trader_token(token)
    with pytest.raises(TokenRevoked):
        rw.balance()
    assert ro.balance()  # the other token of the account is untouched


def test_faults_429_and_5xx_apply_to_the_trader_api(sim, tclient):
    sim.control.set_faults(p_429=1.0, retry_after_s=2)
    with pytest.raises(RateLimited) as e:
        tclient.balance()
    assert e.value.retry_after == 2
    sim.control.set_faults(p_429=0.0, p_5xx=1.0, scope="write")
    with pytest.raises(OutcomeUnknown):
        tclient.open_position("EURUSD", "BUY", D("0.1"), intent="x")
    assert tclient.open_positions() == []  # an injected 5xx did not execute
    sim.control.set_faults(p_5xx=0.0)


def test_token_never_in_repr_or_errors(sim, account, token):
    c = TraderApiClient(sim.url, token, rate_limiter=NoLimit())
    sim.control.revoke_trader_token(token)
    with pytest.raises(TokenRevoked) as e:
        c.open_positions()
    assert token not in repr(c) and token not in str(e.value)


def test_unknown_endpoint_and_key_derivation(sim, token):
    r = requests.get(sim.url + "/v1/nope", headers={P.TA_HDR_AUTH: P.TA_BEARER + token}, timeout=5)
    assert r.status_code == 404
    assert idempotency_key("sig:1:acc:2") == idempotency_key("sig:1:acc:2") != idempotency_key("sig:1:acc:3")
    assert str(uuid.UUID(idempotency_key("x"))) == idempotency_key("x")
    with pytest.raises(InvalidRequest):
        TraderApiClient(sim.url, token, rate_limiter=NoLimit()).candles("NOPE", "M1",
                                                                        datetime.now(UTC) - timedelta(minutes=1))


def test_the_simulator_rate_limits_each_token_on_its_own(sim, account):
    a = TraderApiClient(sim.url, sim.control.issue_trader_token(account["systemUuid"]), rate_limiter=NoLimit())
    b = TraderApiClient(sim.url, sim.control.issue_trader_token(account["systemUuid"], ["read"]),
                        rate_limiter=NoLimit())
    sim.control.set_faults(rate_limit_per_min=2)
    a.balance()
    a.balance()
    with pytest.raises(RateLimited) as e:
        a.balance()
    assert e.value.retry_after > 0
    assert b.balance()  # another token of the same account has its own budget
