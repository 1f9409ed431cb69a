"""Task names and beat entries are part of the contract: renaming strands queued messages."""

import pytest

from tradeops.celery import app

PINNED = {
    "orders.dispatch_signal", "orders.place_orders", "orders.place_order", "orders.link_fills", "orders.link_fill", "orders.close_position", "orders.close_all_positions",
    "orders.modify_position",
    "orders.manage_positions", "orders.sync_accounts", "orders.sync_account_batch", "orders.reconcile_accounts",
    "orders.reconcile_account", "orders.dispatch_pending_signals",
}


def test_task_names_are_pinned():
    import orders.tasks  # noqa: F401

    registered = {name for name in app.tasks if name.startswith("orders.")}
    assert registered == PINNED


def test_order_tasks_ack_late_and_reject_on_worker_lost():
    import orders.tasks as t

    for task in (t.place_orders, t.place_order, t.link_fills, t.dispatch_signal, t.close_position,
                 t.reconcile_account, t.modify_position):
        assert task.acks_late and task.reject_on_worker_lost, task.name
        assert task.queue == "orders"
        assert task.time_limit and task.soft_time_limit
    # the submit step never uses Celery's automatic retry
    assert not getattr(t.place_order, "autoretry_for", ())
    assert not getattr(t.place_orders, "autoretry_for", ())


def test_periodic_tasks_carry_expires():
    import orders.tasks as t

    assert t.manage_positions.expires == t.MANAGE_POSITIONS_EVERY
    assert t.sync_accounts.expires == t.SYNC_ACCOUNTS_EVERY
    assert t.reconcile_accounts.expires == t.RECONCILE_ACCOUNTS_EVERY
    assert t.dispatch_pending_signals.expires == t.DISPATCH_PENDING_EVERY


@pytest.mark.django_db
def test_beat_entries_exist_with_queue_and_expiry():
    """The data migration's function, run twice (transactional tests flush migration data, and
    the migration must be idempotent anyway)."""
    import importlib

    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    import orders.tasks  # noqa: F401 - registers the tasks the entries name

    migration = importlib.import_module("orders.migrations.0002_periodic_tasks")
    migration.create_entries(apps, None)
    migration.create_entries(apps, None)
    sweeper = importlib.import_module("orders.migrations.0004_dispatch_pending_signals")
    sweeper.create_entry(apps, None)
    sweeper.create_entry(apps, None)
    assert PeriodicTask.objects.filter(task__startswith="orders.").count() == 4
    entries = {p.task: p for p in PeriodicTask.objects.filter(task__startswith="orders.")}
    assert set(entries) == {"orders.manage_positions", "orders.sync_accounts", "orders.reconcile_accounts",
                            "orders.dispatch_pending_signals"}
    for p in entries.values():
        period = p.interval.every
        assert p.queue == "orders" and p.enabled
        assert p.expire_seconds is not None and 0 < p.expire_seconds <= period
        assert p.task in app.tasks


@pytest.mark.django_db
def test_routine_maintenance_is_published_behind_order_work(redis_client):
    """Balance syncs and routine reconciliations go to the follow-up priority list of the orders
    queue, so a signal's chunks published meanwhile are served first."""
    import orders.tasks as t
    from tests.factories import make_account

    make_account(needs_reconciliation=True)
    make_account()
    assert t.reconcile_accounts() == 1
    assert t.sync_accounts() == 2  # two accounts, one batch message
    assert redis_client.llen("orders") == 0
    assert redis_client.llen("orders\x06\x169") == 2


def test_visibility_timeout_stays_above_the_chunks_hard_time_limit():
    """A chunk still running when Redis's visibility timeout passes would be handed to a second
    worker while the first sends: the timeout stays above every order task's hard limit. Lost
    workers are found by the fan-out record's sweep, not by lowering this (orders/delivery.py)."""
    from django.conf import settings

    from orders.tasks import place_order, place_orders

    timeout = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert timeout > max(place_orders.time_limit, place_order.time_limit)
