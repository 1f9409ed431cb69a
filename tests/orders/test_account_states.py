"""Account states and halt causes as the engine sees them, and the close loop's shared retry rules,
against the simulator over a real socket."""

import time
from decimal import Decimal as D

import pytest

from accounts.models import Account, AuditLog
from accounts.states import HaltCause, Restriction
from orders.broker import client_for
from orders.delivery import eligible_account_ids
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from orders.models import Order, Position
from orders.positions import close_position
from prop.guard import sync_and_guard
from orders.reasons import Reason
from orders.reconciliation import reconcile_account
from tests.orders.conftest import eurusd, eurusd_buy_signal, ledger_counts, sim_accounts

pytestmark = pytest.mark.django_db


def close_requests(sim, account) -> int:
    led = sim.control.ledger(account.system_uuid)
    return len([r for r in led["requests"] if str(r.get("path", "")).endswith("/position/close")])


def test_every_halt_carries_its_cause(sim):
    operator, reconciled, losing = sim_accounts(sim, 3)
    assert operator.halt("halted from the admin by boss", actor="boss")
    client_for(reconciled).open_position("EURUSD", "SELL", D("0.10"), None, None)  # traded by hand
    assert reconcile_account(reconciled.pk).halted
    assert place_signal_order(losing.pk, eurusd_buy_signal().pk) == S.FILLED
    Account.objects.filter(pk=losing.pk).update(daily_loss_limit=D("1.00"))  # lowered after the entry
    sim.control.close_position(Position.objects.get(account=losing).broker_position_id)  # realizes a loss
    reconcile_account(losing.pk)
    assert sync_and_guard(losing.pk)["halted"]  # the balance read, judged by the default rule profile
    causes = dict(Account.objects.filter(pk__in=[operator.pk, reconciled.pk, losing.pk]).values_list("pk", "halt_cause"))
    assert causes == {operator.pk: HaltCause.OPERATOR, reconciled.pk: HaltCause.RECONCILIATION,
                      losing.pk: HaltCause.DAILY_LOSS}
    assert AuditLog.objects.get(account=losing, action=AuditLog.Action.HALT).details["cause"] == "daily_loss"
    operator.resume(actor="boss")
    operator.refresh_from_db()
    assert not operator.halted and operator.halt_cause == ""


def test_a_halt_set_by_hand_is_the_operators_and_a_resume_clears_the_cause():
    from tests.factories import make_account

    acct = make_account(halted=True, halt_reason="checking something")
    assert acct.halt_cause == HaltCause.OPERATOR
    acct.halted, acct.halt_reason = False, ""
    acct.save()
    acct.refresh_from_db()
    assert acct.halt_cause == ""


def test_a_close_only_account_opens_nothing_but_still_closes(sim):
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    Account.objects.filter(pk=acct.pk).update(restriction=Restriction.CLOSE_ONLY)
    assert acct.pk not in eligible_account_ids(eurusd().pk)
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.SKIPPED
    assert Order.objects.get(signal=signal, account=acct).reason == Reason.CLOSE_ONLY
    assert ledger_counts(sim, acct) == (1, 1)
    position = Position.objects.get(account=acct)
    assert close_position(position.pk, Position.CloseReason.MANUAL) == S.FILLED


def test_a_monitor_only_account_sends_not_even_a_close(sim):
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    Account.objects.filter(pk=acct.pk).update(restriction=Restriction.MONITOR_ONLY)
    position = Position.objects.get(account=acct)
    assert close_position(position.pk, Position.CloseReason.MANUAL) == S.SKIPPED
    close = Order.objects.get(position=position, purpose=Order.Purpose.CLOSE)
    assert close.reason == Reason.MONITOR_ONLY and close_requests(sim, acct) == 0
    position.refresh_from_db()
    assert position.status == Position.Status.OPEN


def test_a_close_told_to_wait_longer_than_allowed_fails_rate_limited_at_once(sim, settings):
    # the same classification as the submit loop: a Retry-After beyond ORDERS_MAX_RETRY_AFTER_S is
    # not slept through (the close loop used to sleep 10 s per attempt, then say "close_failed")
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    position = Position.objects.get(account=acct)
    sim.control.set_faults(p_429=1.0, retry_after_s=60.0, scope="write")
    started = time.monotonic()
    assert close_position(position.pk, Position.CloseReason.MANUAL) == S.FAILED
    assert time.monotonic() - started < 5
    close = Order.objects.get(position=position, purpose=Order.Purpose.CLOSE)
    assert close.reason == Reason.RATE_LIMITED and close_requests(sim, acct) == 1


def test_a_close_whose_answers_are_lost_is_read_back_and_resent_while_the_position_is_open(sim, settings):
    settings.ORDERS_MAX_SUBMIT_ATTEMPTS = 3
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    position = Position.objects.get(account=acct)
    sim.control.set_faults(p_5xx=1.0, scope="write")  # 5xx without executing: the read-back finds it open
    assert close_position(position.pk, Position.CloseReason.MANUAL) == S.FAILED
    close = Order.objects.get(position=position, purpose=Order.Purpose.CLOSE)
    assert close.reason == Reason.BROKER_UNAVAILABLE and close_requests(sim, acct) == 3
    position.refresh_from_db()
    assert position.status == Position.Status.OPEN
