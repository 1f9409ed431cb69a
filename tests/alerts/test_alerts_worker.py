"""The periodic evaluation runs as ``alerts.evaluate`` on the "ops" queue through a real worker,
with the beat entry the migration created (expiring within its period)."""

from __future__ import annotations

import pytest
from celery.contrib.testing.worker import start_worker
from django_celery_beat.models import PeriodicTask

from accounts.models import TradingSwitch
from alerts.tasks import evaluate_alerts
from tests.operate.test_healthcheck import plant_fresh_heartbeats
from tests.waiting import wait_for
from tradeops.celery import app



@pytest.mark.django_db
def test_beat_entry_is_on_the_ops_queue_with_expiry(settings):
    """The data migration's function, run twice (transactional tests flush migration data, and the
    migration must be idempotent anyway)."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("alerts.migrations.0002_periodic_evaluate")
    migration.create_entry(apps, None)
    migration.create_entry(apps, None)
    entry = PeriodicTask.objects.get(task="alerts.evaluate")
    assert entry.queue == "ops" and entry.expire_seconds == settings.ALERTS_EVALUATE_EVERY_S
    assert app.amqp.router.route({}, "alerts.evaluate")["queue"].name == "ops"
    assert "alerts.evaluate" in app.tasks


@pytest.mark.django_db(transaction=True)
def test_evaluate_through_a_worker_on_the_ops_queue(channels, webhook, redis_client):
    plant_fresh_heartbeats(redis_client)
    TradingSwitch.objects.update_or_create(id=1, defaults=dict(kill_switch=True, reason="from the worker test"))
    with start_worker(app, pool="solo", queues=["ops"], perform_ping_check=False, shutdown_timeout=10,
                      loglevel="WARNING"):
        evaluate_alerts.delay()
        wait_for(lambda: webhook.requests, timeout=30, what="the webhook delivery")
    assert webhook.json_bodies()[0]["detail"].startswith("from the worker test")
