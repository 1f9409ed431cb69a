"""Alert tasks: on the "ops" queue (never "orders"), so a slow mail server or webhook never
holds a worker that trades. The periodic run expires within its period (a stopped ops worker
never replays a pile of stale evaluations)."""

from __future__ import annotations

from celery import shared_task

from tradeops.celery import Queues


@shared_task(name="alerts.evaluate", queue=Queues.OPS, ignore_result=True)
def evaluate_alerts() -> dict:
    from .engine import run_once

    return run_once()

