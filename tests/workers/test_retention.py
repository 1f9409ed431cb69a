"""Retention: old history goes, in batches; recent rows, non-terminal orders and signals that
still have orders stay; orders/trades/audit are kept longest."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from accounts.models import AuditLog, EquitySnapshot
from orders.models import Order, Trade
from signals.models import Signal
from tests.factories import make_account, make_order, make_signal

pytestmark = pytest.mark.django_db


def age(obj, days, field="created_at"):
    type(obj).objects.filter(pk=obj.pk).update(**{field: timezone.now() - timedelta(days=days)})


def run(*args) -> str:
    out = StringIO()
    call_command("prune_history", *args, stdout=out)
    return out.getvalue()


def test_prunes_by_age_and_keeps_what_must_stay(settings):
    acct = make_account()
    old_signal_alone = make_signal()
    age(old_signal_alone, settings.RETENTION_SIGNALS_DAYS + 1)
    recent_signal = make_signal()
    # a signal past its age whose order is younger than the orders' age: both stay
    kept_signal = make_signal()
    age(kept_signal, settings.RETENTION_SIGNALS_DAYS + 1)
    kept_order = make_order(account=acct, signal=kept_signal, status="filled")
    age(kept_order, settings.RETENTION_SIGNALS_DAYS + 1)
    # orders past the orders' age: the terminal one goes, the unknown one stays
    very_old = make_signal()
    age(very_old, settings.RETENTION_ORDERS_DAYS + 1)
    old_filled = make_order(account=acct, signal=very_old, status="filled")
    age(old_filled, settings.RETENTION_ORDERS_DAYS + 1)
    old_unknown = make_order(account=make_account(), signal=very_old, status="unknown")
    age(old_unknown, settings.RETENTION_ORDERS_DAYS + 1)
    old_trade = Trade.objects.create(account=acct, symbol=very_old.symbol, order=old_filled, kind="open", broker_trade_id="t-1",
                                     side="BUY", volume=Decimal("0.1"), price=Decimal("1.1"),
                                     executed_at=timezone.now() - timedelta(days=settings.RETENTION_ORDERS_DAYS + 1))
    old_audit = AuditLog.record("alice", AuditLog.Action.HALT, account=acct, reason="x")
    age(old_audit, settings.RETENTION_AUDIT_DAYS + 1)
    recent_audit = AuditLog.record("alice", AuditLog.Action.RESUME, account=acct)
    snap = EquitySnapshot.objects.create(account=acct, balance=1, equity=1)
    age(snap, settings.RETENTION_EQUITY_DAYS + 1, "at")

    dry = run("--dry-run")
    assert "would delete 1 orders" in dry and Order.objects.filter(pk=old_filled.pk).exists()

    out = run()
    assert "deleted 1 trades" in out and "deleted 1 orders" in out and "deleted 1 audit log" in out
    assert not Order.objects.filter(pk=old_filled.pk).exists() and not Trade.objects.filter(pk=old_trade.pk).exists()
    assert Order.objects.filter(pk=old_unknown.pk).exists(), "a non-terminal order is never deleted"
    assert not Signal.objects.filter(pk=old_signal_alone.pk).exists()
    assert Signal.objects.filter(pk__in=[recent_signal.pk, kept_signal.pk, very_old.pk]).count() == 3
    assert Order.objects.filter(pk=kept_order.pk).exists()
    assert list(AuditLog.objects.values_list("pk", flat=True)) == [recent_audit.pk]
    assert not EquitySnapshot.objects.exists()
    assert run() == "nothing to delete\n"


def test_batches_until_done(settings):
    signals = [make_signal() for _ in range(7)]
    Signal.objects.filter(pk__in=[s.pk for s in signals]).update(
        created_at=timezone.now() - timedelta(days=settings.RETENTION_SIGNALS_DAYS + 1))
    assert "deleted 7 signals" in run("--batch", "2")
    with pytest.raises(CommandError, match="at least 1"):
        run("--batch", "0")


def test_zero_days_keeps_forever(settings):
    settings.RETENTION_SIGNALS_DAYS = 0
    s = make_signal()
    age(s, 10_000)
    run()
    assert Signal.objects.filter(pk=s.pk).exists()


def test_scheduled_hourly_on_the_ops_queue_with_expiry():
    import importlib

    from django.apps import apps

    import workers.tasks  # noqa: F401 - registers the task the entry names
    from tradeops.celery import app

    migration = importlib.import_module("workers.migrations.0001_prune_history_schedule")
    migration.create_entry(apps, None)
    migration.create_entry(apps, None)
    assert "ops.prune_history" in app.tasks
    assert app.amqp.router.route({}, "ops.prune_history")["queue"].name == "ops"
    entry = PeriodicTask.objects.get(task="ops.prune_history")
    assert entry.queue == "ops" and entry.expire_seconds == 3600 and entry.interval.every == 3600
