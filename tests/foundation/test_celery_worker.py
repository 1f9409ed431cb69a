"""A task runs through a real Celery worker on Redis and its result comes back."""

import pytest
from celery.contrib.testing.worker import start_worker

from tradeops.celery import Queues, app, ping


@pytest.fixture(scope="module")
def celery_worker_on_redis():
    with start_worker(app, pool="solo", queues=list(Queues.ALL), perform_ping_check=False, shutdown_timeout=10):
        yield


def test_task_round_trips_through_redis(celery_worker_on_redis):
    result = ping.delay("hello")
    assert result.get(timeout=20) == {"pong": "hello"}


def test_routes_split_queues_by_kind_of_work():
    routes = app.conf.task_routes
    assert routes["orders.*"]["queue"] == "orders"
    assert routes["signals.*"]["queue"] == "analysis"
    assert app.conf.task_default_queue == "default"
    assert app.conf.worker_prefetch_multiplier == 1
