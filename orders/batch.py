"""The batched fan-out: one task places one signal's orders on a chunk of accounts.

Why batched: a signal must reach 1,000 accounts in about 2 s. One Celery task per order costs a
message, a task dispatch and ~10 queries per order, and the worker tops out well below that rate
(bench/fanout.py). This module keeps every per-order guarantee of :mod:`orders.execution` and
makes the per-order cost one HTTP call to the broker; everything else is done per chunk:

============================  =====================================================================
step                          per chunk (one statement / round trip each)
============================  =====================================================================
account locks                 ``pg_try_advisory_lock`` for every account (busy ones are handed to
                              a single-account ``orders.place_order`` that waits for its lock)
accounts + flags              one query (kill switch, symbol permissions)
existing orders               one query by idempotency key (a redelivery finds its rows)
new orders                    sizing is pure; one INSERT for the chunk, then skips in one UPDATE
exposure                      one query (open positions, in-flight orders, realized PnL today)
risk, eligibility             pure, per account
live quote                    one Redis read for the signal's symbol
``new → submitted``           one compare-and-set UPDATE, committed before anything is sent
tokens + rate budget          one pipelined Redis round trip (:func:`orders.broker.prepare_calls`)
send gate                     one query (kill switch, halt) right before each wave of calls
send                          one HTTP call per order, ``ORDERS_SEND_CONCURRENCY`` in flight together
``submitted → filled``        one compare-and-set UPDATE
fill links                    one ``orders.link_fills`` task, delayed
============================  =====================================================================

An order whose call raised anything at all continues in the single-order loop of
:func:`orders.execution._send_open` (bounded retries only where it surely did not execute, rejects
recorded, unknown outcomes resolved by reading the broker), and an order found ``submitted`` or
``unknown`` (a previous delivery died) is resolved exactly as in the single-order task. A crash at
any point leaves rows that the redelivered chunk resolves: ``new`` (never sent), ``submitted`` (in
doubt: looked up at the broker before anything is sent again) or terminal (left alone).
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Account, TradingSwitch
from matchtrader.errors import BrokerError
from signals.models import Signal
from tradeops.logging import get_logger

from . import broker, execution, linking
from .bulk import account_locks, bulk_transition
from .dispatch import chunked
from .execution import Fail, Gate
from .lifecycle import OrderStatus
from .models import Order, idempotency_key_for

log = get_logger(__name__)
S = OrderStatus


_ACCOUNTS_SQL = """
SELECT a.*,
       coalesce((SELECT kill_switch FROM {switch} WHERE id = 1), false) AS ks,
       EXISTS (SELECT 1 FROM {allowed} s WHERE s.account_id = a.id) AS has_allowed,
       EXISTS (SELECT 1 FROM {allowed} s WHERE s.account_id = a.id AND s.symbol_id = %s) AS sym_allowed
FROM {account} a WHERE a.id = ANY(%s) ORDER BY a.id
"""

_GATES_SQL = """
SELECT a.id, coalesce((SELECT kill_switch FROM {switch} WHERE id = 1), false), a.halted, a.enabled
FROM {account} a WHERE a.id = ANY(%s)
"""


def accounts_with_flags(account_ids: list[int], symbol_id: int) -> dict[int, Account]:
    sql = _ACCOUNTS_SQL.format(switch=TradingSwitch._meta.db_table, account=Account._meta.db_table,
                               allowed=Account.allowed_symbols.through._meta.db_table)
    return {a.pk: a for a in Account.objects.raw(sql, [symbol_id, list(account_ids)])}


def send_gates(account_ids: list[int]) -> dict[int, Gate]:
    """:func:`orders.execution.send_gate` for many accounts in one query."""
    sql = _GATES_SQL.format(switch=TradingSwitch._meta.db_table, account=Account._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(sql, [list(account_ids)])
        rows = {r[0]: r[1:] for r in cur.fetchall()}
    gates = {}
    for account_id in account_ids:
        row = rows.get(account_id)
        if row is None or not row[2]:
            gates[account_id] = Gate(False, Fail.ACCOUNT_HALTED)
        elif row[0]:
            gates[account_id] = Gate(False, Fail.KILL_SWITCH)
        elif row[1]:
            gates[account_id] = Gate(False, Fail.ACCOUNT_HALTED)
        else:
            gates[account_id] = Gate(True)
    return gates


# A chunk whose accounts are partly locked elsewhere (usually another signal's chunk, which holds
# them for a fraction of a second) re-queues those accounts as a smaller chunk this many times,
# after a short jittered delay, before handing each to the single-account task that waits.
BUSY_REQUEUES = 5
BUSY_REQUEUE_DELAY_S = (0.1, 0.4)


def place_signal_orders(signal_id: int, account_ids: list[int], requeues: int = 0) -> dict:
    """Body of ``orders.place_orders``. Returns counts of the orders' final statuses."""
    counts: Counter = Counter()
    signal = execution._signal(signal_id)
    with account_locks(account_ids) as (locked, busy):
        if busy:
            hand_over(signal_id, busy, requeues)
            counts["handed_over"] += len(busy)
        if locked:
            _place_locked(signal, locked, counts)
    log.info("orders_batch_done", signal_id=signal_id, accounts=len(account_ids), **counts)
    return dict(counts)


def hand_over(signal_id: int, account_ids: list[int], requeues: int = 0) -> None:
    """Accounts whose lock another task holds go back to the queue as a chunk of their own, a
    little later; after ``BUSY_REQUEUES`` tries each gets the single-account task, which waits for
    its lock (a long reconciliation). The idempotency keys make any overlap harmless."""
    from tradeops.celery import Queues

    from .tasks import place_order, place_orders

    expires = settings.ORDERS_SIGNAL_MAX_AGE_S
    if requeues < BUSY_REQUEUES:
        place_orders.apply_async((signal_id, account_ids), {"requeues": requeues + 1}, queue=Queues.ORDERS,
                                 countdown=random.uniform(*BUSY_REQUEUE_DELAY_S), expires=expires)
        log.info("orders_batch_requeued_busy", signal_id=signal_id, accounts=account_ids, requeues=requeues + 1)
        return
    for account_id in account_ids:
        place_order.apply_async((account_id, signal_id), queue=Queues.ORDERS, ignore_result=True, expires=expires)
    log.info("orders_batch_handed_over", signal_id=signal_id, accounts=account_ids)


def _place_locked(signal: Signal, account_ids: list[int], counts: Counter) -> None:
    accounts = accounts_with_flags(account_ids, signal.symbol_id)
    missing = set(account_ids) - set(accounts)
    if missing:
        log.warning("orders_batch_unknown_accounts", signal_id=signal.pk, accounts=sorted(missing))
    orders = _orders_for(signal, accounts)
    fresh: list[Order] = []
    settled = False
    for order in orders:
        if order.status == S.NEW:
            fresh.append(order)
        elif order.status in (S.SUBMITTED, S.UNKNOWN):
            # a previous delivery died or lost its answer: resolve before anything is sent again
            if not settled and settings.ORDERS_UNKNOWN_SETTLE_S:
                time.sleep(settings.ORDERS_UNKNOWN_SETTLE_S)  # once for the whole chunk
            settled = True
            log.info("order_in_doubt_on_delivery", order_id=order.pk, status=order.status)
            execution._resolve_in_doubt(order, accounts[order.account_id], signal, settle=False)
    submitted = _check_and_mark_submitted(signal, accounts, fresh)
    if submitted:
        _send(signal, accounts, submitted)
    for order in orders:
        counts[order.status] += 1


def _orders_for(signal: Signal, accounts: dict[int, Account]) -> list[Order]:
    """Every account's order for the signal: the existing row, or a new one (sized, inserted)."""
    keys = {idempotency_key_for(signal.pk, account_id): account_id for account_id in accounts}
    existing = {o.account_id: o for o in Order.objects.filter(idempotency_key__in=list(keys))}
    new_rows: list[tuple[Order, str]] = []
    for key, account_id in keys.items():
        if account_id not in existing:
            new_rows.append(execution.sized_order(accounts[account_id], signal, key))
    created = _insert(new_rows)
    skips = [(order, {"reason": reason}) for order, reason in created if reason]
    bulk_transition(skips, S.SKIPPED)
    for order, fields in skips:
        log.info("order_skipped", order_id=order.pk, account_id=order.account_id, reason=fields["reason"])
    orders = list(existing.values()) + [order for order, _ in created]
    for order in orders:
        order.signal, order.symbol, order.account = signal, signal.symbol, accounts[order.account_id]
    return sorted(orders, key=lambda o: o.account_id)


def _insert(rows: list[tuple[Order, str]]) -> list[tuple[Order, str]]:
    """One INSERT for the chunk. Under the locks no other delivery inserts these keys; if something
    else did (an admin), fall back to row by row and take the existing rows."""
    if not rows:
        return []
    try:
        with transaction.atomic():
            Order.objects.bulk_create([order for order, _ in rows])
        return rows
    except IntegrityError:
        out = []
        for order, reason in rows:
            try:
                with transaction.atomic():
                    order.save(force_insert=True)
                out.append((order, reason))
            except IntegrityError:
                order.pk = None
                out.append((Order.objects.get(idempotency_key=order.idempotency_key), ""))
        return out


def _check_and_mark_submitted(signal: Signal, accounts: dict[int, Account], fresh: list[Order]) -> list[Order]:
    """Eligibility and pre-trade risk (pure, per account) over one exposure query, the live-price
    anchor (one Redis read), then ``new → submitted`` for the survivors in one compare-and-set."""
    if not fresh:
        return []
    now = timezone.now()
    symbol = signal.symbol
    skips: list[tuple[Order, dict]] = []
    candidates: list[Order] = []
    for order in fresh:
        skip = execution._eligibility(accounts[order.account_id], signal, now)
        if skip:
            skips.append((order, {"reason": skip}))
            log.info("order_skipped", order_id=order.pk, account_id=order.account_id, reason=skip)
        else:
            candidates.append(order)
    exposures = execution.load_exposures([accounts[o.account_id] for o in candidates], symbol.pk, now)
    live_trading = execution.live_trading_enabled()
    # one live quote for the whole chunk (same symbol and side), read when the first order needs it
    anchor = functools.cache(lambda: execution._anchor_on_live_price(candidates[0], signal))
    to_submit: list[tuple[Order, dict]] = []
    for order in candidates:
        target, fields = execution.decide_send(order, accounts[order.account_id], signal,
                                               exposures[order.account_id], anchor, live_trading=live_trading)
        (to_submit if target == S.SUBMITTED else skips).append((order, fields))
    bulk_transition(skips, S.SKIPPED)
    moved = bulk_transition(to_submit, S.SUBMITTED)
    return [order for order, _ in to_submit if order.pk in moved]


_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def send_pool() -> ThreadPoolExecutor:
    """The process's pool of broker calls (created lazily, and again after a fork: a prefork child
    must not inherit its parent's threads)."""
    global _pool
    pid = os.getpid()
    if _pool is None or _pool[0] != pid:
        with _pool_lock:
            if _pool is None or _pool[0] != pid:
                _pool = (pid, ThreadPoolExecutor(max_workers=max(1, settings.ORDERS_SEND_CONCURRENCY),
                                                 thread_name_prefix="order-send"))
    return _pool[1]


# A call leaves only this soon after its wave's kill-switch read ("no order leaves within 1 s of
# the kill switch"). A call that waited longer for a pool thread (a threads-pool worker running
# several chunks at once) is not sent by the wave: the single-order loop reads the switch again
# and sends it.
GATE_MAX_AGE_S = 0.5
NOT_SENT = object()


def _call(client, signal: Signal, order: Order, not_after: float):
    """One order's broker call, in a pool thread: HTTP only (no database), the error returned."""
    if time.monotonic() > not_after:
        return NOT_SENT
    try:
        return client.open_position(signal.symbol.name, order.side, order.volume, order.stop_loss, order.take_profit)
    except BrokerError as exc:
        return exc


def _send(signal: Signal, accounts: dict[int, Account], orders: list[Order]) -> None:
    """One broker call per order, ``ORDERS_SEND_CONCURRENCY`` at a time: a fan-out is bound by the
    broker's round trip (tens of ms to a real broker), not by our CPU, so the calls of a wave are in
    flight together. Each wave reads the kill switch and halt flags right before its calls leave,
    and a call leaves at most ``GATE_MAX_AGE_S`` after that read. Definite successes are recorded
    together; anything else continues in the single-order loop, one order at a time."""
    filled: list[tuple[Order, dict]] = []
    troubled: list[tuple[Order, BrokerError]] = []
    clients = broker.prepare_calls([accounts[o.account_id] for o in orders])
    pool = send_pool()
    late: list[Order] = []
    for wave in chunked(orders, max(1, settings.ORDERS_SEND_CONCURRENCY)):
        gates = send_gates([o.account_id for o in wave])
        not_after = time.monotonic() + GATE_MAX_AGE_S
        sendable = []
        for order in wave:
            gate = gates[order.account_id]
            if gate.ok:
                sendable.append(order)
                continue
            order.transition(S.FAILED, reason=gate.reason, last_error="blocked immediately before sending")
            log.warning("order_blocked_before_send", order_id=order.pk, reason=gate.reason)
        if len(sendable) == 1:  # no thread hand-off for a single call
            outcomes = [_call(clients[sendable[0].account_id], signal, sendable[0], not_after)]
        else:
            futures = [pool.submit(_call, clients[o.account_id], signal, o, not_after) for o in sendable]
            outcomes = [f.result() for f in futures]  # a crash (BaseException) propagates: rows stay submitted
        for order, outcome in zip(sendable, outcomes, strict=True):
            if outcome is NOT_SENT:
                late.append(order)
            elif isinstance(outcome, BrokerError):
                troubled.append((order, outcome))
            else:
                filled.append((order, {"broker_order_id": outcome.order_id or ""}))
    moved = bulk_transition(filled, S.FILLED)
    if moved and settings.ORDERS_LINK_FILL_INLINE:
        linking.link_fills(sorted(moved))
    elif moved:
        _enqueue_links(sorted(moved))
    for order, exc in troubled:
        if order.status == S.SUBMITTED:
            execution._send_open(order, accounts[order.account_id], first_attempt_counted=True, first_outcome=exc)
    for order in late:
        log.info("order_send_late_for_gate", order_id=order.pk)
        if order.status == S.SUBMITTED:  # reads the switch again, then sends
            execution._send_open(order, accounts[order.account_id], first_attempt_counted=True)


def _enqueue_links(order_ids: list[int]) -> None:
    """Find the positions the fills opened off the fan-out's critical path: one task per chunk, at
    follow-up priority (served after every pending order chunk); until then the exposure counts
    the orders as open positions."""
    from tradeops.celery import Priority

    from .tasks import link_fills

    try:
        link_fills.apply_async((order_ids,), ignore_result=True, priority=Priority.FOLLOW_UP,
                               countdown=settings.ORDERS_LINK_FILL_DELAY_S or None)
    except Exception as exc:  # Redis hiccup: reconciliation links them later
        log.warning("link_fill_enqueue_failed", orders=len(order_ids), error=type(exc).__name__)

