"""Exits we manage (time stop, opposite signal, kill switch) and balance sync."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from accounts.models import Account, EquitySnapshot
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from orders.models import Order, Position, Trade
from orders.positions import close_position, positions_due
from tests.factories import make_signal
from tests.orders.conftest import eurusd, eurusd_buy_signal, sim_accounts

pytestmark = pytest.mark.django_db


def test_time_stop_is_due_and_closes_with_broker_pnl(sim):
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    pos = Position.objects.get(account=acct)
    assert positions_due() == []
    Position.objects.filter(pk=pos.pk).update(time_stop_at=timezone.now() - timedelta(seconds=1))
    assert positions_due() == [(pos.pk, Position.CloseReason.TIME_STOP)]
    assert close_position(pos.pk, Position.CloseReason.TIME_STOP) == S.FILLED
    pos.refresh_from_db()
    assert pos.status == Position.Status.CLOSED and pos.close_reason == Position.CloseReason.TIME_STOP
    assert pos.realized_pnl == D("-2.00") and pos.close_price == D("1.10000")
    close_order = Order.objects.get(purpose=Order.Purpose.CLOSE, position=pos)
    assert close_order.side == "SELL" and close_order.status == S.FILLED
    assert Trade.objects.filter(position=pos, kind=Trade.Kind.CLOSE).count() == 1
    # a second delivery of the close does nothing
    assert close_position(pos.pk, Position.CloseReason.TIME_STOP) == "already_closed"


def test_opposite_signal_makes_a_position_due(sim):
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal(time_stop_seconds=None).pk) == S.FILLED
    pos = Position.objects.get(account=acct)
    make_signal(symbol=eurusd(), side="BUY")
    assert positions_due() == []
    make_signal(symbol=eurusd(), side="SELL")
    assert positions_due() == [(pos.pk, Position.CloseReason.OPPOSITE_SIGNAL)]


def test_close_of_a_position_already_gone_records_it_from_history(sim):
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    pos = Position.objects.get(account=acct)
    sim.control.close_position(pos.broker_position_id)
    close_position(pos.pk, Position.CloseReason.TIME_STOP)
    pos.refresh_from_db()
    assert pos.status == Position.Status.CLOSED and pos.close_reason == Position.CloseReason.BROKER
    assert pos.realized_pnl == D("-2.00")


def test_sync_balance_snapshots_equity_and_halts_on_daily_loss(sim):
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    # a 1.00 limit would not have let the entry out (worst case 50 at the stop): lowered afterwards
    Account.objects.filter(pk=acct.pk).update(daily_loss_limit=D("1.00"))
    pos = Position.objects.get(account=acct)
    sim.control.close_position(pos.broker_position_id)  # realizes −2.00 − 0.88 commission
    from orders.reconciliation import reconcile_account

    reconcile_account(acct.pk)
    from prop.guard import sync_and_guard

    result = sync_and_guard(acct.pk)  # the balance sync, then the default profile's daily loss rule
    acct.refresh_from_db()
    assert EquitySnapshot.objects.filter(account=acct).count() == 1
    assert acct.balance == D("9997.12")
    assert result["halted"] and acct.halted and "daily loss limit" in acct.halt_reason
    assert Account.objects.get(pk=acct.pk).halted
