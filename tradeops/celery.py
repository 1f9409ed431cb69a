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


@app.task(name="tradeops.ping", queue=Queues.DEFAULT)
def ping(value=None):
    """Round-trip check used by the healthcheck and the tests."""
    return {"pong": value}
