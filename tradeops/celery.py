"""The Celery app. Configuration lives in Django settings under the CELERY_ namespace.

Logging: Celery would otherwise replace the root logger's handlers with its own plain-text
format when a worker or beat starts; the ``setup_logging`` hook below makes it apply Django's
``LOGGING`` instead (``tradeops.logging``), so worker and beat logs are the same JSON lines as
every other process's.
"""

import logging.config
import os

from celery import Celery
from celery.signals import setup_logging

from .queues import Priority, Queues

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradeops.settings")

app = Celery("tradeops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

__all__ = ["app", "ping", "Priority", "Queues"]


@setup_logging.connect
def configure_logging(**_kwargs) -> None:
    """Connected, this replaces Celery's own logging set-up (worker, beat, flower) with ours."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    logging.captureWarnings(True)  # Python warnings (Celery's own too) as log lines, like Django does


@app.task(name="tradeops.ping", queue=Queues.DEFAULT)
def ping(value=None):
    """Round-trip check used by the healthcheck and the tests."""
    return {"pong": value}
