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
fill links                    one ``orders.link_fills`` message, at follow-up priority
============================  =====================================================================

An order whose call raised anything at all continues in the single-order loop of
:func:`orders.submit.send_open` (what to do after each error: :func:`orders.policy.classify`), and
an order found ``submitted`` or ``unknown`` (a previous delivery died) is resolved by the one
in-doubt resolver, :func:`orders.submit.resolve_in_doubt`. The steps themselves are
:mod:`orders.submit`, shared with the single-order driver (:mod:`orders.execution`); this module
is the chunk's driver: the locks of a chunk taken at once, busy accounts handed over. A crash at
any point leaves rows that the redelivered chunk resolves: ``new`` (never sent), ``submitted`` (in
doubt: looked up at the broker before anything is sent again) or terminal (left alone).
"""

from __future__ import annotations

import random
from collections import Counter

from signals import hops
from tradeops.logging import get_logger

from . import delivery, publish, reads, submit
from .bulk import account_locks

log = get_logger(__name__)


# A chunk whose accounts are partly locked elsewhere (usually another signal's chunk, which holds
# them for a fraction of a second) re-queues those accounts as a smaller chunk this many times,
# after a short jittered delay, before handing each to the single-account task that waits.
BUSY_REQUEUES = 5
BUSY_REQUEUE_DELAY_S = (0.1, 0.4)


def place_signal_orders(signal_id: int, account_ids: list[int], requeues: int = 0) -> dict:
    """Body of ``orders.place_orders``. Returns counts of the orders' final statuses."""
    counts: Counter = Counter()
    task_mono = hops.mono_ms()  # the "order task start" hop (signals.hops)
    signal = reads.signal(signal_id)
    closing: list[tuple[str, dict]] = []  # run inside the unlock statement: the chunk's last round trip
    with account_locks(account_ids, release_with=closing) as (locked, busy):
        if busy:
            hand_over(signal_id, busy, requeues)
            counts["handed_over"] += len(busy)
        if locked:
            placed = submit.place_locked(signal, locked)
            for order in placed:
                counts[order.status] += 1
            # the pairs take their orders' outcomes and the signal's hop document gets the orders'
            # timestamps, in the statement that releases the locks (if it fails, the sweep settles
            # the pairs; the timings are lost, logged)
            closing.append(delivery.settle_statement([signal_id], locked))
            hop_update = submit.hops_statement(signal_id, task_mono, placed)
            if hop_update is not None:
                closing.append(hop_update)
    log.info("orders_batch_done", signal_id=signal_id, accounts=len(account_ids), **counts)
    return dict(counts)


def hand_over(signal_id: int, account_ids: list[int], requeues: int = 0) -> None:
    """Accounts whose lock another task holds go back to the queue as a chunk of their own, a
    little later; after ``BUSY_REQUEUES`` tries each gets the single-account task, which waits for
    its lock (a long reconciliation). The idempotency keys make any overlap harmless."""
    if requeues < BUSY_REQUEUES:
        publish.place_orders(signal_id, account_ids, requeues=requeues + 1,
                             countdown=random.uniform(*BUSY_REQUEUE_DELAY_S))
        log.info("orders_batch_requeued_busy", signal_id=signal_id, accounts=account_ids, requeues=requeues + 1)
        return
    for account_id in account_ids:
        publish.place_order(account_id, signal_id)
    log.info("orders_batch_handed_over", signal_id=signal_id, accounts=account_ids)
