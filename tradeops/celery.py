"""The Celery app. Configuration lives in Django settings under the CELERY_ namespace.

Logging: Celery would otherwise replace the root logger's handlers with its own plain-text
format when a worker or beat starts; the ``setup_logging`` hook below makes it apply Django's
``LOGGING`` instead (``tradeops.logging``), so worker and beat logs are the same JSON lines as
every other process's.
"""

import logging.config
import os
from functools import cached_property

from celery import Celery, platforms, signals
from celery.apps.beat import Beat as CeleryBeat

from .queues import Priority, Queues

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradeops.settings")


class Beat(CeleryBeat):
    """``celery beat`` whose SIGTERM / SIGINT stop it at once, with no I/O inside the handler.

    Celery's handler saves the schedule in the handler itself, i.e. in the middle of whatever
    beat was doing. With the DatabaseScheduler that is a query on the connection the interrupted
    frame may be holding (psycopg's connection lock is not re-entrant), or, while the scheduler
    is still being set up, a second scheduler built inside the first: beat hung, the supervisor
    SIGKILLed it, and its last schedule save was lost (CI's smoke run; reproduced by
    tests/operate/test_beat_shutdown.py). Here the handler only raises SystemExit: psycopg
    cancels a query it interrupts, and ``celery.beat.Service.start`` catches the exit and saves
    the schedule in its ``finally``, back on the main frame.
    """

    def install_sync_handler(self, service) -> None:
        def _stop(signum, frame):
            # the flag too (what Service.stop sets, without its log line): the loop ends even if
            # a layer between here and Service.start swallowed the exit
            service._is_shutdown.set()
            raise SystemExit()

        platforms.signals.update(SIGTERM=_stop, SIGINT=_stop)


class App(Celery):
    @cached_property
    def Beat(self):  # noqa: N802 (Celery's name)
        return self.subclass_with_self(Beat)


app = App("tradeops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

__all__ = ["app", "ping", "Priority", "Queues"]


@signals.setup_logging.connect
def configure_logging(**_kwargs) -> None:
    """Connected, this replaces Celery's own logging set-up (worker, beat, flower) with ours."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    logging.captureWarnings(True)  # Python warnings (Celery's own too) as log lines, like Django does


@signals.task_prerun.connect
def _bind_log_context(task=None, args=None, kwargs=None, **_):
    from tradeops.logging import bind_task_context

    bind_task_context(task, args, kwargs)


@signals.task_postrun.connect
def _clear_log_context(**_):
    from tradeops.logging import clear_task_context

    clear_task_context()


@signals.worker_init.connect
def _serve_worker_metrics(**_):
    """The worker's main process serves its children's metrics (tradeops/metrics.py)."""
    from tradeops import metrics

    metrics.serve()


@signals.beat_init.connect
def _serve_beat_metrics(**_):
    from tradeops import metrics

    metrics.serve("beat")


@signals.worker_process_shutdown.connect
def _child_metrics_done(pid=None, **_):
    from tradeops import metrics

    metrics.process_exited(pid or os.getpid())


@app.task(name="tradeops.ping", queue=Queues.DEFAULT)
def ping(value=None):
    """Round-trip check used by the healthcheck and the tests."""
    return {"pong": value}
