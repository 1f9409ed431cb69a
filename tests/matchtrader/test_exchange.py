"""The simulated broker's books, pure (no server)."""

from decimal import Decimal as D

import pytest

from matchtrader import protocol as P
from matchtrader.simulator.exchange import Exchange, Reject
from matchtrader.simulator.instruments import SPECS


@pytest.fixture
def ex():
    e = Exchange(SPECS, commission_per_lot=D("0"))
    e.on_quote("EURUSD", D("1.10000"), D("1.10010"), 0)
    e.on_quote("USDJPY", D("150.000"), D("150.010"), 0)
    e.on_quote("XAUUSD", D("2300.00"), D("2300.30"), 0)
    acc = e.create_account("a@x", "pw", balance=D("10000"), leverage=100)
    e.uuid = acc.uuid
    return e


def test_market_fills_at_ask_and_bid_and_hedging_allows_both_sides(ex):
    ex.open_position(ex.uuid, "EURUSD", "BUY", D("0.10"), None, None, 1)
    ex.open_position(ex.uuid, "EURUSD", "SELL", D("0.10"), None, None, 2)
    pos = sorted(ex.accounts[ex.uuid].positions.values(), key=lambda p: p.side)
    assert [(p.side, p.open_price) for p in pos] == [("BUY", D("1.10010")), ("SELL", D("1.10000"))]


def test_usdjpy_pnl_converted_to_usd(ex):
    _, pid = ex.open_position(ex.uuid, "USDJPY", "BUY", D("1"), None, None, 1)
    ex.on_quote("USDJPY", D("151.010"), D("151.020"), 2)
    ex.close_position(ex.uuid, pid, None, 3)
    closed = ex.accounts[ex.uuid].closed[-1]
    # (151.010 - 150.010) * 100000 JPY = 100000 JPY / 151.010 = 662.21 USD
    assert closed["profit"] == D("662.21")
    assert ex.accounts[ex.uuid].balance == D("10662.21")


def test_sl_triggers_on_bid_for_buy_and_tp_on_ask_for_sell(ex):
    _, buy = ex.open_position(ex.uuid, "EURUSD", "BUY", D("0.01"), D("1.09900"), None, 1)
    _, sell = ex.open_position(ex.uuid, "EURUSD", "SELL", D("0.01"), None, D("1.09950"), 1)
    ex.on_quote("EURUSD", D("1.09940"), D("1.09950"), 2)  # ask hits the SELL TP; bid above the BUY SL
    reasons = {c["id"]: c["closeReason"] for c in ex.accounts[ex.uuid].closed}
    assert reasons == {sell: P.CLOSE_REASON_TP}
    ex.on_quote("EURUSD", D("1.09900"), D("1.09915"), 3)
    reasons = {c["id"]: c["closeReason"] for c in ex.accounts[ex.uuid].closed}
    assert reasons[buy] == P.CLOSE_REASON_SL


def test_pending_limit_and_stop_trigger_on_quotes(ex):
    lim = ex.create_pending(ex.uuid, "EURUSD", "BUY", "LIMIT", D("0.01"), D("1.09000"), None, None, 1)
    stp = ex.create_pending(ex.uuid, "EURUSD", "SELL", "STOP", D("0.01"), D("1.09500"), None, None, 1)
    ex.on_quote("EURUSD", D("1.09400"), D("1.09410"), 2)  # bid <= 1.095 → SELL STOP fills
    acc = ex.accounts[ex.uuid]
    assert set(acc.orders) == {lim} and len(acc.positions) == 1
    ex.on_quote("EURUSD", D("1.08990"), D("1.09000"), 3)  # ask <= 1.09 → BUY LIMIT fills
    assert not acc.orders and len(acc.positions) == 2
    assert {p.order_id for p in acc.positions.values()} == {lim, stp}


@pytest.mark.parametrize("symbol,volume,sl,code", [
    ("EURUSD", D("0.015"), None, P.REJECT_INVALID_VOLUME),
    ("EURUSD", D("-1"), None, P.REJECT_INVALID_VOLUME),
    ("EURUSD", D("0"), None, P.REJECT_INVALID_VOLUME),
    ("EURUSD", D("101"), None, P.REJECT_INVALID_VOLUME),
    ("EURUSD", D("50"), None, P.REJECT_NOT_ENOUGH_MONEY),
    ("EURUSD", D("0.01"), D("1.2"), P.REJECT_INVALID_STOPS),
    ("NOPE", D("0.01"), None, P.REJECT_UNKNOWN_INSTRUMENT),
])
def test_rejects(ex, symbol, volume, sl, code):
    with pytest.raises(Reject) as e:
        ex.open_position(ex.uuid, symbol, "BUY", volume, sl, None, 1)
    assert e.value.code == code
    assert not ex.accounts[ex.uuid].positions


def test_market_closed_and_not_found(ex):
    ex.closed_symbols = {"XAUUSD"}
    with pytest.raises(Reject) as e:
        ex.open_position(ex.uuid, "XAUUSD", "BUY", D("0.01"), None, None, 1)
    assert e.value.code == P.REJECT_MARKET_CLOSED
    with pytest.raises(Reject) as e:
        ex.close_position(ex.uuid, "W0", None, 1)
    assert e.value.code == P.REJECT_POSITION_NOT_FOUND
    with pytest.raises(Reject) as e:
        ex.cancel_pending(ex.uuid, "W0", 1)
    assert e.value.code == P.REJECT_ORDER_NOT_FOUND


def test_partial_close_and_commission():
    ex = Exchange(SPECS, commission_per_lot=D("7"))
    ex.on_quote("EURUSD", D("1.10000"), D("1.10000"), 0)
    uuid = ex.create_account("b@x", "pw", balance=D("5000")).uuid
    _, pid = ex.open_position(uuid, "EURUSD", "BUY", D("1.00"), None, None, 1)
    ex.close_position(uuid, pid, D("0.40"), 2)
    acc = ex.accounts[uuid]
    assert acc.positions[pid].volume == D("0.60")
    assert acc.closed[-1]["closeReason"] == P.CLOSE_REASON_PARTIAL
    assert acc.balance == D("5000") - D("2.80")  # 40% of the 7.00 commission
    with pytest.raises(Reject):
        ex.close_position(uuid, pid, D("0.595"), 3)  # off-step
