from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from orders.lifecycle import IllegalTransition, OrderStatus, StaleTransition
from orders.models import Order, idempotency_key_for
from tests.factories import make_account, make_order, make_signal, make_symbol

pytestmark = pytest.mark.django_db


def test_duplicate_idempotency_key_is_refused():
    order = make_order()
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.create(
            account=order.account, signal=order.signal, symbol=order.symbol, side="BUY",
            volume=Decimal("0.10"), idempotency_key=order.idempotency_key,
        )
    assert Order.objects.filter(idempotency_key=order.idempotency_key).count() == 1


def test_idempotency_key_is_deterministic_per_signal_and_account():
    assert idempotency_key_for(7, 3) == idempotency_key_for(7, 3)
    assert idempotency_key_for(7, 3) != idempotency_key_for(3, 7)


def test_legal_transition_path_is_recorded():
    order = make_order()
    order.transition(OrderStatus.SUBMITTED, attempts=1)
    order.transition(OrderStatus.FILLED, fill_price=Decimal("1.10012"))
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert order.submitted_at is not None and order.completed_at is not None
    assert order.fill_price == Decimal("1.10012")


@pytest.mark.parametrize(
    "path, illegal",
    [
        ([], OrderStatus.FILLED),  # new -> filled skips submission
        ([OrderStatus.SUBMITTED, OrderStatus.REJECTED], OrderStatus.SUBMITTED),  # terminal
        ([OrderStatus.SKIPPED], OrderStatus.SUBMITTED),
        ([OrderStatus.SUBMITTED, OrderStatus.UNKNOWN], OrderStatus.SUBMITTED),  # never blind resend
    ],
)
def test_illegal_transition_raises_and_changes_nothing(path, illegal):
    order = make_order()
    for status in path:
        order.transition(status)
    before = order.status
    with pytest.raises(IllegalTransition):
        order.transition(illegal)
    order.refresh_from_db()
    assert order.status == before


def test_plain_save_cannot_smuggle_an_illegal_status():
    order = make_order()
    order.status = OrderStatus.FILLED
    with pytest.raises(IllegalTransition):
        order.save()


def test_compare_and_set_lets_only_one_worker_submit():
    order = make_order()
    first = Order.objects.get(pk=order.pk)
    second = Order.objects.get(pk=order.pk)  # a second delivery of the same task
    first.transition(OrderStatus.SUBMITTED)
    with pytest.raises(StaleTransition):
        second.transition(OrderStatus.SUBMITTED)
    assert Order.objects.get(pk=order.pk).attempts == 0


def test_decimals_round_trip_exactly():
    symbol = make_symbol(name="XAUUSD", tick_size=Decimal("0.01"), lot_step=Decimal("0.01"))
    order = make_order(symbol=symbol, volume=Decimal("0.07"), price=Decimal("2345.67"),
                       stop_loss=Decimal("2340.01"), take_profit=Decimal("2351.99"))
    fresh = Order.objects.get(pk=order.pk)
    assert fresh.volume == Decimal("0.07") and isinstance(fresh.volume, Decimal)
    assert (fresh.price, fresh.stop_loss, fresh.take_profit) == (
        Decimal("2345.67"), Decimal("2340.01"), Decimal("2351.99"))
    acc = make_account(name="precise", daily_loss_limit=Decimal("1234.56"))
    acc.refresh_from_db()
    assert acc.daily_loss_limit == Decimal("1234.56")


def test_symbol_validation_rejects_off_step_minimum():
    from django.core.exceptions import ValidationError

    symbol = make_symbol(name="EURUSD", lot_step=Decimal("0.01"))
    symbol.min_volume = Decimal("0.015")
    with pytest.raises(ValidationError) as err:
        symbol.full_clean()
    assert "min_volume" in err.value.message_dict


def test_signal_strength_outside_unit_interval_is_refused():
    with pytest.raises(IntegrityError), transaction.atomic():
        make_signal(strength=Decimal("1.5"))


def test_halt_is_compare_and_set_and_audited():
    from accounts.models import AuditLog

    account = make_account()
    assert account.halt("daily loss limit reached") is True
    assert account.halt("again") is False
    account.refresh_from_db()
    assert account.halted and account.halt_reason == "daily loss limit reached"
    assert AuditLog.objects.filter(account=account, action=AuditLog.Action.HALT).count() == 1
