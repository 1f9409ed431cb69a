"""Follow-up work, published BY TASK NAME: nothing in the engine imports :mod:`orders.tasks`.

Why by name: publishing through the task objects made every module that enqueues work import the
task module, which imports every module (the old import circle tasks ↔ batch ↔ execution ↔ linking
↔ positions ↔ dispatch, held together by imports inside functions). A Celery message is a task
name and arguments; :func:`celery.Celery.send_task` needs nothing else. The names below are the
ones ``orders.tasks`` registers (and ``tests/orders/test_tasks_pinned.py`` pins); the task options
a message carries (queue, priority, expiry) are set here, where the message is made.
"""

from __future__ import annotations

from django.conf import settings

from tradeops.celery import Priority, Queues, app
from tradeops.logging import get_logger

log = get_logger(__name__)


class TaskName:
    DISPATCH_SIGNAL = "orders.dispatch_signal"
    DISPATCH_PENDING_SIGNALS = "orders.dispatch_pending_signals"
    PLACE_ORDERS = "orders.place_orders"
    PLACE_ORDER = "orders.place_order"
    LINK_FILLS = "orders.link_fills"
    LINK_FILL = "orders.link_fill"
    CLOSE_POSITION = "orders.close_position"
    CLOSE_ALL_POSITIONS = "orders.close_all_positions"
    MODIFY_POSITION = "orders.modify_position"
    MANAGE_POSITIONS = "orders.manage_positions"
    SYNC_ACCOUNTS = "orders.sync_accounts"
    SYNC_ACCOUNT_BATCH = "orders.sync_account_batch"
    RECONCILE_ACCOUNTS = "orders.reconcile_accounts"
    RECONCILE_ACCOUNT = "orders.reconcile_account"


def place_orders(signal_id: int, account_ids: list[int], *, requeues: int = 0, countdown: float | None = None,
                 producer=None, expires: float | None = None) -> None:
    """One fan-out chunk (``ignore_result``: the outcome is the Order rows). ``expires``: seconds
    the message stays deliverable (default the signal's max age; a re-drive passes what is left)."""
    kwargs = {"requeues": requeues} if requeues else {}
    app.send_task(TaskName.PLACE_ORDERS, args=(signal_id, account_ids), kwargs=kwargs, queue=Queues.ORDERS,
                  countdown=countdown, expires=max(1.0, expires or settings.ORDERS_SIGNAL_MAX_AGE_S),
                  ignore_result=True, producer=producer)


def place_order(account_id: int, signal_id: int) -> None:
    app.send_task(TaskName.PLACE_ORDER, args=(account_id, signal_id), queue=Queues.ORDERS, ignore_result=True,
                  expires=settings.ORDERS_SIGNAL_MAX_AGE_S)


def dispatch_signal(signal_id: int) -> None:
    app.send_task(TaskName.DISPATCH_SIGNAL, args=(signal_id,), queue=Queues.ORDERS,
                  expires=settings.ORDERS_SIGNAL_MAX_AGE_S)


def link_fills(order_ids: list[int]) -> None:
    """Find the positions fills opened off the critical path, at follow-up priority (served after
    every pending order chunk); until then the exposure counts the orders as open positions. One
    order: ``orders.link_fill`` (waits for its account's lock); several: ``orders.link_fills``."""
    name, args = (TaskName.LINK_FILL, (order_ids[0],)) if len(order_ids) == 1 else (TaskName.LINK_FILLS,
                                                                                   (order_ids,))
    try:
        app.send_task(name, args=args, queue=Queues.ORDERS, ignore_result=True, priority=Priority.FOLLOW_UP,
                      countdown=settings.ORDERS_LINK_FILL_DELAY_S or None)
    except Exception as exc:  # Redis hiccup: reconciliation links them later
        log.warning("link_fill_enqueue_failed", orders=len(order_ids), error=type(exc).__name__)


def reconcile_soon(account_id: int) -> None:
    """An unknown outcome is reconciled right away, not at the next beat (normal priority)."""
    app.send_task(TaskName.RECONCILE_ACCOUNT, args=(account_id,), queue=Queues.ORDERS,
                  countdown=settings.ORDERS_RECONCILE_AFTER_UNKNOWN_S)


def reconcile_account(account_id: int, *, expires: float) -> None:
    """Routine check: waits behind pending order work."""
    app.send_task(TaskName.RECONCILE_ACCOUNT, args=(account_id,), queue=Queues.ORDERS, expires=expires,
                  priority=Priority.FOLLOW_UP)


def reconcile_accounts(*, expires: float) -> None:
    app.send_task(TaskName.RECONCILE_ACCOUNTS, queue=Queues.ORDERS, expires=expires)


def close_position(position_id: int, reason: str, *, expires: float | None = None) -> None:
    app.send_task(TaskName.CLOSE_POSITION, args=(position_id, reason), queue=Queues.ORDERS, expires=expires)


def modify_position(order_id: int) -> None:
    """An operator's SL/TP edit or partial close (its Order row exists, ``new``): served like a
    close, no expiry (an operator's request is never silently dropped)."""
    app.send_task(TaskName.MODIFY_POSITION, args=(order_id,), queue=Queues.ORDERS, priority=Priority.NORMAL)


def close_all_positions(account_id: int | None, reason: str) -> None:
    app.send_task(TaskName.CLOSE_ALL_POSITIONS, args=(account_id, reason), queue=Queues.ORDERS)


def reconcile_account_now(account_id: int) -> None:
    """An operator's request (``manage.py reconcile --async``): normal priority, no expiry."""
    app.send_task(TaskName.RECONCILE_ACCOUNT, args=(account_id,), queue=Queues.ORDERS)


def sync_account_batch(account_ids: list[int], *, expires: float) -> None:
    app.send_task(TaskName.SYNC_ACCOUNT_BATCH, args=(account_ids,), queue=Queues.ORDERS, expires=expires,
                  priority=Priority.FOLLOW_UP)
