"""Celery tasks of the backtest app: thin wrappers, the work is in backtest.sweeps.

``backtest.run_combination`` runs on the ``backtest`` queue only (its own worker, concurrency 1,
``nice``: see the Procfile), late-acked and rejected on a lost worker (a killed run is redelivered;
the (sweep, index) unique key makes the redelivery finish the same row, never a duplicate).
"""

from __future__ import annotations

from celery import shared_task

from . import sweeps


@shared_task(name=sweeps.RUN_TASK, queue=sweeps.QUEUE, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def run_combination(sweep_id: int, index: int) -> str:
    return sweeps.run_combination(sweep_id, index)
