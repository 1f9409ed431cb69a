"""The Celery app. Configuration lives in Django settings under the CELERY_ namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradeops.settings")

app = Celery("tradeops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class Queues:
    """Queues split by kind of work, so a burst of analysis never delays an order."""

    DEFAULT = "default"
    ANALYSIS = "analysis"
    ORDERS = "orders"
    ALL = (DEFAULT, ANALYSIS, ORDERS)


class Priority:
    """Message priorities on the Redis broker, where 0 is served FIRST: kombu keeps one list per
    queue and step (0, 3, 6, 9) and its BRPOP asks for every queue's step-0 list before any step-9
    one. With a prefetch of 1, follow-up bookkeeping (linking fills to positions) published at
    ``FOLLOW_UP`` waits in Redis while a signal's order chunks are pending, instead of taking the
    worker's slots ahead of them."""

    NORMAL = 0
    FOLLOW_UP = 9


@app.task(name="tradeops.ping", queue=Queues.DEFAULT)
def ping(value=None):
    """Round-trip check used by the healthcheck and the tests."""
    return {"pong": value}
