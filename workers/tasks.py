"""Housekeeping tasks, on the "ops" queue (never the orders queue)."""

from __future__ import annotations

from celery import shared_task

from tradeops.celery import Queues

PRUNE_EVERY_S = 3600


@shared_task(name="ops.prune_history", queue=Queues.OPS, ignore_result=True, expires=PRUNE_EVERY_S)
def prune_history() -> dict:
    from .retention import prune

    report = prune()
    return {"deleted": report.deleted, "complete": report.complete}
