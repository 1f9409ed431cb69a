"""The single-order driver: one signal's order on ONE account, waiting for the account's lock.

Used for an account whose lock was busy when its chunk ran (a long reconciliation) and by
operators. It is the chunk driver (:mod:`orders.batch`) with a list of one: the same steps of
:mod:`orders.submit`, under a lock that waits (``ORDERS_ACCOUNT_LOCK_WAIT_S``) instead of handing
the account over. Sequence, guarantees and retry rules: :mod:`orders.submit` and orders/README.md.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection

from accounts.models import Account
from signals import hops
from tradeops.logging import get_logger

from . import delivery, reads, submit
from .locks import account_lock

log = get_logger(__name__)


def place_signal_order(account_id: int, signal_id: int) -> str:
    """Run the whole sequence for one (signal, account); returns the order's final status."""
    task_mono = hops.mono_ms()  # the "order task start" hop (signals.hops)
    with account_lock(account_id, settings.ORDERS_ACCOUNT_LOCK_WAIT_S):
        signal = reads.signal(signal_id)
        orders = submit.place_locked(signal, [account_id])
        if not orders:
            raise Account.DoesNotExist(account_id)
    delivery.settle([signal_id], [account_id])  # the pair takes its order's outcome (lock released)
    hop_update = submit.hops_statement(signal_id, task_mono, orders)
    if hop_update is not None:  # the order's timings, best effort: the outcome is recorded already
        try:
            with connection.cursor() as cur:
                cur.execute(*hop_update)
        except DatabaseError as exc:
            log.warning("order_hops_not_recorded", signal_id=signal_id, account_id=account_id, error=str(exc)[:300])
    return orders[0].status
