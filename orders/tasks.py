"""Celery tasks of the order engine. Thin: ids in, the work is in the modules they call.

Names are explicit and pinned by a test (renaming strands queued messages). Order tasks are
``acks_late`` + ``reject_on_worker_lost``: a worker killed mid-task gets its message redelivered,
and the redelivery resolves the in-doubt order instead of sending blindly (orders/README.md).
``autoretry_for`` is never used: the submit step retries only what surely did not execute
(:func:`orders.policy.classify`).

Nothing imports this module but Celery (import contract ``orders-tasks-only-celery``): follow-up
work is published by name (:mod:`orders.publish`, whose ``TaskName`` holds the names below).
"""

from __future__ import annotations

import random

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from accounts.models import Account
from matchtrader.errors import BrokerError
from prop import guard
from tradeops.celery import Queues
from tradeops.logging import get_logger

from . import batch, dispatch, execution, linking, modify, positions, publish, reconciliation, recovery
from .locks import AccountLockTimeout
from .models import Position
from .publish import TaskName

log = get_logger(__name__)

# Periods of the beat entries (seconds); each run expires within its period.
MANAGE_POSITIONS_EVERY = 5
DISPATCH_PENDING_EVERY = 10
SYNC_ACCOUNTS_EVERY = 30
RECONCILE_ACCOUNTS_EVERY = 60
OPEN_POSITIONS_RECHECK_S = reconciliation.OPEN_POSITIONS_RECHECK_S

ORDER_TASK = dict(acks_late=True, reject_on_worker_lost=True, queue=Queues.ORDERS)


@shared_task(bind=True, name=TaskName.DISPATCH_SIGNAL, soft_time_limit=30, time_limit=45, **ORDER_TASK)
def dispatch_signal(self, signal_id: int) -> dict:
    return dispatch.dispatch_signal(signal_id)


@shared_task(name=TaskName.DISPATCH_PENDING_SIGNALS, expires=DISPATCH_PENDING_EVERY, **ORDER_TASK)
def dispatch_pending_signals() -> dict:
    """Beat, the one sweeper: lost dispatches, and (signal, account) pairs that stopped
    progressing, re-driven while fresh and recorded missed after (:func:`orders.dispatch.sweep`)."""
    return dispatch.sweep()


# ignore_result: the outcome is the Order row; storing a result would be one more Redis write per order
@shared_task(bind=True, name=TaskName.PLACE_ORDER, soft_time_limit=60, time_limit=75, max_retries=5,
             ignore_result=True, **ORDER_TASK)
def place_order(self, account_id: int, signal_id: int) -> str:
    try:
        return recovery.run_chunk(signal_id, [account_id],
                                  lambda _ids: execution.place_signal_order(account_id, signal_id))
    except AccountLockTimeout as exc:
        # nothing was sent; another task holds the account (a long reconciliation): queue again
        raise self.retry(exc=exc, countdown=1 + random.random() * 2) from exc


@shared_task(bind=True, name=TaskName.PLACE_ORDERS, soft_time_limit=120, time_limit=150, ignore_result=True,
             **ORDER_TASK)
def place_orders(self, signal_id: int, account_ids: list[int], requeues: int = 0) -> dict:
    """One signal's orders on a chunk of accounts (the fan-out's unit, :mod:`orders.batch`);
    Redis / PostgreSQL / connection errors are retried by the chunk itself (:mod:`orders.recovery`)."""
    return recovery.run_chunk(signal_id, account_ids,
                              lambda todo: batch.place_signal_orders(signal_id, todo, requeues), skip_settled=True)


@shared_task(bind=True, name=TaskName.LINK_FILLS, soft_time_limit=120, time_limit=150, ignore_result=True,
             max_retries=settings.ORDERS_LINK_FILL_RETRIES, **ORDER_TASK)
def link_fills(self, order_ids: list[int]) -> int:
    """Link a fan-out chunk's fills to their broker positions (:mod:`orders.linking`). What a pass
    leaves unlinked (account busy, read failed) is tried again with just those ids; past the
    retries, reconciliation links it."""
    linked = linking.link_fills(order_ids)
    left = linking.still_unlinked(order_ids) if linked < len(order_ids) else []
    if left and self.request.retries < self.max_retries:
        raise self.retry(args=(left,), countdown=linking.retry_delay_s(self.request.retries))
    return linked


@shared_task(bind=True, name=TaskName.LINK_FILL, soft_time_limit=30, time_limit=45, max_retries=3,
             ignore_result=True, **ORDER_TASK)
def link_fill(self, order_id: int) -> bool:
    """Find the position a filled order opened (the open answer carries an order id only)."""
    try:
        return linking.link_order_fill(order_id)
    except AccountLockTimeout as exc:
        raise self.retry(exc=exc, countdown=1 + random.random() * 2) from exc


@shared_task(bind=True, name=TaskName.CLOSE_POSITION, soft_time_limit=60, time_limit=75, max_retries=5, **ORDER_TASK)
def close_position(self, position_id: int, reason: str = Position.CloseReason.MANUAL) -> str:
    try:
        return positions.close_position(position_id, reason)
    except AccountLockTimeout as exc:
        raise self.retry(exc=exc, countdown=1 + random.random() * 2) from exc


@shared_task(bind=True, name=TaskName.MODIFY_POSITION, soft_time_limit=60, time_limit=75, max_retries=5, **ORDER_TASK)
def modify_position(self, order_id: int) -> str:
    """An operator's SL/TP edit or partial close (orders/modify.py); a redelivery reads back first."""
    try:
        return modify.execute(order_id)
    except AccountLockTimeout as exc:
        raise self.retry(exc=exc, countdown=1 + random.random() * 2) from exc


@shared_task(name=TaskName.CLOSE_ALL_POSITIONS, **ORDER_TASK)
def close_all_positions(account_id: int | None = None, reason: str = Position.CloseReason.MANUAL) -> int:
    qs = Position.objects.filter(status=Position.Status.OPEN)
    if account_id is not None:
        qs = qs.filter(account_id=account_id)
    ids = list(qs.order_by("pk").values_list("pk", flat=True))
    for pid in ids:
        publish.close_position(pid, reason)
    return len(ids)


@shared_task(name=TaskName.MANAGE_POSITIONS, expires=MANAGE_POSITIONS_EVERY, **ORDER_TASK)
def manage_positions() -> int:
    """Beat: time stops and opposite-signal exits (broker-side SL/TP handle price exits)."""
    due = positions.positions_due()
    for pid, reason in due:
        publish.close_position(pid, reason, expires=60)
    return len(due)


@shared_task(name=TaskName.SYNC_ACCOUNTS, expires=SYNC_ACCOUNTS_EVERY, **ORDER_TASK)
def sync_accounts(chunk: int = 25) -> int:
    """Beat: balances for the dashboard and the daily loss limit, only for accounts not read
    recently, at most ORDERS_SYNC_BATCH per run, in chunks."""
    ids = positions.accounts_to_sync()
    for i in range(0, len(ids), chunk):
        publish.sync_account_batch(ids[i:i + chunk], expires=SYNC_ACCOUNTS_EVERY)
    return len(ids)


@shared_task(name=TaskName.SYNC_ACCOUNT_BATCH, soft_time_limit=120, time_limit=150, queue=Queues.ORDERS)
def sync_account_batch(account_ids: list[int]) -> dict:
    done, failed = 0, 0
    for account_id in account_ids:
        try:
            guard.sync_and_guard(account_id)  # the read, then the loss limits judged on it
            done += 1
        except (BrokerError, Account.DoesNotExist) as exc:
            failed += 1
            log.warning("sync_account_failed", account_id=account_id, error=type(exc).__name__)
    return {"synced": done, "failed": failed}


@shared_task(name=TaskName.RECONCILE_ACCOUNTS, expires=RECONCILE_ACCOUNTS_EVERY, **ORDER_TASK)
def reconcile_accounts(include_all_enabled: bool = False) -> int:
    """Beat (and worker start): one reconcile_account per account with something to check."""
    ids = reconciliation.accounts_needing_reconciliation(include_all_enabled)
    for account_id in ids:
        # routine checks wait behind pending order work; the reconciliation right after an unknown
        # outcome (publish.reconcile_soon) is sent at normal priority
        publish.reconcile_account(account_id, expires=RECONCILE_ACCOUNTS_EVERY * 5)
    return len(ids)


@shared_task(bind=True, name=TaskName.RECONCILE_ACCOUNT, soft_time_limit=60, time_limit=75, max_retries=8,
             **ORDER_TASK)
def reconcile_account(self, account_id: int) -> dict:
    """Reconcile one account. Retried (bounded, with jitter) while the account's lock is busy or the
    broker cannot be read, so an account flagged after an unknown outcome is not left waiting for
    the next beat."""
    try:
        report = reconciliation.reconcile_account(account_id)
    except AccountLockTimeout as exc:
        raise self.retry(exc=exc, countdown=2 + random.random() * 3) from exc
    if not report.ok and self.request.retries < self.max_retries:
        raise self.retry(countdown=min(30.0, 2 * 2 ** self.request.retries) * (0.5 + random.random() / 2))
    return report.as_dict()


@worker_ready.connect
def reconcile_on_worker_start(sender=None, **_):
    """An orders worker starting (after a crash, a deploy) reconciles what may have drifted while
    nothing was watching, in the background."""
    if not settings.ORDERS_RECONCILE_ON_WORKER_READY:
        return
    try:
        queues = {q.name for q in sender.task_consumer.queues}
    except AttributeError:
        queues = {Queues.ORDERS}
    if Queues.ORDERS not in queues:
        return
    try:
        publish.reconcile_accounts(expires=RECONCILE_ACCOUNTS_EVERY)
        log.info("reconcile_on_worker_start_enqueued")
    except Exception as exc:  # never stop a worker from starting
        log.warning("reconcile_on_worker_start_failed", error=type(exc).__name__)
