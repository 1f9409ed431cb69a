"""Celery tasks of the prop rules. Thin: the work is in :mod:`prop.guard`.

``prop.guard_accounts`` (beat, every ``GUARD_EVERY`` seconds, expiring within its period) sends one
``prop.guard_account`` per account that holds positions or is close-only; a balance read
(``orders.sync_account_batch``) also triggers the check of its account. Names are pinned by a test.
Both run on the "orders" queue at normal priority: protecting an account from a breach is order
work, never behind follow-up bookkeeping.
"""

from __future__ import annotations

from celery import shared_task

from accounts.models import Account
from matchtrader.errors import BrokerError
from tradeops.celery import Queues
from tradeops.logging import get_logger

from . import guard

log = get_logger(__name__)

GUARD_EVERY = 2


@shared_task(name="prop.guard_accounts", expires=GUARD_EVERY, acks_late=True, reject_on_worker_lost=True,
             queue=Queues.ORDERS, ignore_result=True)
def guard_accounts() -> int:
    ids = guard.accounts_to_guard()
    for account_id in ids:
        guard_account.apply_async((account_id,), queue=Queues.ORDERS, expires=GUARD_EVERY * 2, ignore_result=True)
    return len(ids)


@shared_task(name="prop.guard_account", soft_time_limit=30, time_limit=45, acks_late=True, reject_on_worker_lost=True,
             queue=Queues.ORDERS, ignore_result=True)
def guard_account(account_id: int) -> dict:
    try:
        return guard.check_account(account_id).as_dict()
    except (BrokerError, Account.DoesNotExist) as exc:
        # the next beat run tries again; a broker that stays unreadable is reconciliation's business
        log.warning("prop_guard_failed", account_id=account_id, error=type(exc).__name__)
        return {"account_id": account_id, "error": type(exc).__name__}
