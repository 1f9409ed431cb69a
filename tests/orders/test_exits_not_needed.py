"""An exit the broker no longer needs is no failure: a time-stop close racing a TP hit ends in ONE
closed position (the broker's reason and figures) and no rejected order."""

from __future__ import annotations

import time
from decimal import Decimal as D

import pytest

from marketdata import redis_keys as keys
from orders import broker
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from orders.models import Order, Position
from orders.positions import close_position
from tests.orders.conftest import eurusd_buy_signal, sim_accounts

pytestmark = pytest.mark.django_db


def close_requests(sim, account) -> int:
    led = sim.control.ledger(account.system_uuid)
    return len([r for r in led["requests"] if str(r.get("path", "")).endswith("/position/close")])


def test_close_answered_position_not_found_is_not_needed_and_takes_the_brokers_reason(sim):
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    pos = Position.objects.get(account=acct)
    broker.get_redis().delete(keys.quote("EURUSD"))  # no live quote: the close is sent
    sim.control.market(prices={"EURUSD": 1.10450})  # the TP (1.10400) closes it at the broker first
    close_position(pos.pk, Position.CloseReason.TIME_STOP)  # the time stop races it
    pos.refresh_from_db()
    order = Order.objects.get(position=pos, purpose=Order.Purpose.CLOSE)
    assert order.status == S.CANCELLED and order.reason == "not_needed"
    assert not Order.objects.filter(account=acct, status=S.REJECTED).exists()
    assert pos.status == Position.Status.CLOSED and pos.close_reason == Position.CloseReason.TAKE_PROFIT
    assert pos.close_price == D("1.10450") and pos.realized_pnl == D("110.50")
    assert Position.objects.filter(account=acct).count() == 1


def test_no_close_is_sent_when_the_quotes_show_the_target_touched_and_the_broker_confirms(sim):
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    pos = Position.objects.get(account=acct)
    sim.control.market(prices={"EURUSD": 1.10450})
    now_ms = int(time.time() * 1000)
    broker.get_redis().hset(keys.quote("EURUSD"), mapping={"bid": "1.1045", "ask": "1.10458", "ts_ms": now_ms,
                                                           "recv_ms": now_ms})
    try:
        close_position(pos.pk, Position.CloseReason.TIME_STOP)
    finally:
        broker.get_redis().delete(keys.quote("EURUSD"))
    order = Order.objects.get(position=pos, purpose=Order.Purpose.CLOSE)
    assert order.status == S.SKIPPED and order.reason == "not_needed"
    assert close_requests(sim, acct) == 0  # verified first, never sent
    pos.refresh_from_db()
    assert pos.close_reason == Position.CloseReason.TAKE_PROFIT


def test_a_touch_the_broker_does_not_confirm_still_closes(sim):
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    pos = Position.objects.get(account=acct)
    now_ms = int(time.time() * 1000)  # a quote says "touched", the broker still holds the position
    broker.get_redis().hset(keys.quote("EURUSD"), mapping={"bid": "1.1041", "ask": "1.10418", "ts_ms": now_ms,
                                                           "recv_ms": now_ms})
    try:
        assert close_position(pos.pk, Position.CloseReason.TIME_STOP) == S.FILLED
    finally:
        broker.get_redis().delete(keys.quote("EURUSD"))
    pos.refresh_from_db()
    assert pos.status == Position.Status.CLOSED and pos.close_reason == Position.CloseReason.TIME_STOP
    assert close_requests(sim, acct) == 1
