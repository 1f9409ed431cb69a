"""Trader API accounts in the order engine, against the simulator over a real socket: a mixed fleet
in one fan-out, exactly-once through lost answers (the Idempotency-Key), a revoked token halting
only its account, a read-only token never getting an order, closes with their own keys."""

from __future__ import annotations

import logging

import pytest

from accounts.models import Account, AuditLog
from accounts.states import HaltCause, Restriction
from orders import batch, broker, positions
from orders.lifecycle import OrderStatus as S
from orders.models import Order, Position
from orders.policy import TOKEN_REVOKED_REASON
from orders.reasons import Reason
from tests.orders.conftest import eurusd_buy_signal, ledger_counts, sim_accounts

pytestmark = pytest.mark.django_db


def statuses(signal) -> dict[int, str]:
    return dict(Order.objects.filter(signal=signal).values_list("account_id", "status"))


def test_a_mixed_fleet_trades_in_one_fan_out(sim):
    platform = sim_accounts(sim, 3)
    trader = sim_accounts(sim, 3, api="trader")
    accounts = platform + trader
    signal = eurusd_buy_signal()
    counts = batch.place_signal_orders(signal.pk, [a.pk for a in accounts])
    assert counts == {S.FILLED: 6}, list(Order.objects.filter(signal=signal).values_list("reason", "last_error"))
    assert [ledger_counts(sim, a) for a in accounts] == [(1, 1)] * 6
    assert Position.objects.filter(account__in=accounts).count() == 6
    # the Trader API position carries the order's tag, and the fill is linked by it
    for a in trader:
        order = Order.objects.get(signal=signal, account=a)
        assert order.position_id and order.broker_order_id == order.broker_position_id


def test_lost_answers_on_the_trader_api_execute_once(sim):
    accounts = sim_accounts(sim, 4, api="trader")
    signal = eurusd_buy_signal()
    sim.control.set_faults(p_lost=1.0, lost_mode="5xx", scope="write")
    try:
        # every answer to an open is lost; the in-doubt read-back finds the position by its tag
        counts = batch.place_signal_orders(signal.pk, [a.pk for a in accounts])
    finally:
        sim.control.set_faults(p_lost=0.0)
    assert counts == {S.FILLED: 4}
    assert [ledger_counts(sim, a)[1] for a in accounts] == [1] * 4


def test_a_revoked_token_halts_only_its_account(sim, caplog):
    revoked, fine = sim_accounts(sim, 2, api="trader")
    token = revoked.trader_api_token
    sim.control.revoke_trader_token(token)
    signal = eurusd_buy_signal()
    with caplog.at_level(logging.INFO):
        batch.place_signal_orders(signal.pk, [revoked.pk, fine.pk])
    assert statuses(signal) == {revoked.pk: S.FAILED, fine.pk: S.FILLED}
    assert Order.objects.get(signal=signal, account=revoked).reason == Reason.AUTH_FAILED
    revoked.refresh_from_db()
    fine.refresh_from_db()
    assert revoked.halted and revoked.halt_cause == HaltCause.TOKEN and revoked.halt_reason == TOKEN_REVOKED_REASON
    assert not fine.halted
    assert token not in caplog.text
    # the next signal skips the halted account without a call
    signal2 = eurusd_buy_signal()
    batch.place_signal_orders(signal2.pk, [revoked.pk, fine.pk])
    assert Order.objects.get(signal=signal2, account=revoked).status == S.SKIPPED
    assert ledger_counts(sim, revoked) == (0, 0)  # refused at auth: nothing recorded, nothing executed


def test_a_read_only_account_never_gets_an_order(sim):
    [ro] = sim_accounts(sim, 1, api="trader", scopes=("read",))
    signal = eurusd_buy_signal()
    batch.place_signal_orders(signal.pk, [ro.pk])
    order = Order.objects.get(signal=signal)
    assert order.status == S.FAILED and order.reason == Reason.MONITOR_ONLY
    ro.refresh_from_db()
    assert ro.restriction == Restriction.MONITOR_ONLY and not ro.halted
    assert AuditLog.objects.filter(account=ro, action=AuditLog.Action.RESTRICT).count() == 1
    assert ledger_counts(sim, ro)[1] == 0
    # from now on it is monitor-only: later signals skip it (nothing leaves), reads still work
    signal2 = eurusd_buy_signal()
    batch.place_signal_orders(signal2.pk, [ro.pk])
    assert Order.objects.get(signal=signal2).status == S.SKIPPED
    assert ledger_counts(sim, ro) == (0, 0)  # the one refused call stopped at the scope check
    assert positions.sync_account_balance(ro.pk)["equity"]


def test_close_carries_its_own_key_and_a_gone_position_is_recorded_from_history(sim):
    a, b = sim_accounts(sim, 2, api="trader")
    signal = eurusd_buy_signal()
    batch.place_signal_orders(signal.pk, [a.pk, b.pk])
    pa = Position.objects.get(account=a)
    pb = Position.objects.get(account=b)
    assert positions.close_position(pa.pk, Position.CloseReason.MANUAL) == S.FILLED
    led = sim.control.ledger(a.system_uuid)
    close_reqs = [r for r in led["requests"] if r.get("op") == "close"]
    open_reqs = [r for r in led["requests"] if r.get("op") == "open"]
    assert len(close_reqs) == 1 and close_reqs[0]["idempotencyKey"] != open_reqs[0]["idempotencyKey"]
    # b's position is closed behind our back: the 400 on close → read back → recorded from history
    sim.control.close_position(pb.broker_position_id)
    positions.close_position(pb.pk, Position.CloseReason.MANUAL)
    pb.refresh_from_db()
    assert pb.status == Position.Status.CLOSED and pb.close_price


def test_accounts_are_on_one_api_each(sim):
    [p] = sim_accounts(sim, 1)
    [t] = sim_accounts(sim, 1, api="trader")
    assert type(broker.client_for(p)).__name__ == "MatchTraderClient"
    assert type(broker.client_for(t)).__name__ == "TraderApiClient"
    assert t.trader_api_token not in repr(broker.client_for(t))
    raw = Account.objects.filter(pk=t.pk).values_list("trader_api_token", flat=True)
    assert raw[0] == t.trader_api_token  # decrypted by the field; the column holds a Fernet token
    from django.db import connection
    with connection.cursor() as cur:
        cur.execute("SELECT trader_api_token FROM accounts_account WHERE id = %s", [t.pk])
        assert t.trader_api_token not in cur.fetchone()[0]


def test_a_validation_failure_is_a_recorded_reject_with_the_brokers_detail(sim):
    # the database believes 10,000; the broker account holds 10: the margin check refuses
    [poor] = sim_accounts(sim, 1, api="trader", sim_balance="10")
    signal = eurusd_buy_signal()
    batch.place_signal_orders(signal.pk, [poor.pk])
    order = Order.objects.get(signal=signal)
    assert order.status == S.REJECTED and order.reason == "NOT_ENOUGH_MONEY"
    assert "margin" in order.last_error.lower()  # the broker's detail, verbatim
    assert order.attempts == 1 and ledger_counts(sim, poor) == (1, 0)
    poor.refresh_from_db()
    assert not poor.halted and poor.restriction == Restriction.NONE
