"""Signal fan-out: one ``orders.place_orders`` message per chunk of eligible accounts.

A chunk (about ``ORDERS_FANOUT_CHUNK`` accounts, as many chunks as whole rounds of the worker's
``ORDERS_FANOUT_PROCESSES``: :func:`fanout_chunks`) is the unit of work: :mod:`orders.batch` places the
chunk's orders with per-chunk queries and one broker call per order, each order still exactly
once by its own idempotency key. Three queries whatever the number of accounts (signal, eligible
ids, the CAS that marks the signal dispatched) and one pooled producer for all messages, published
in pipelined batches (kombu ``Producer.batch``). Enqueuing twice is harmless (the idempotency keys
make the second delivery a no-op), so the signal is marked dispatched AFTER the messages are out:
a crash in between re-enqueues, never loses.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from prop import fanout
from signals import hops
from signals.models import Signal
from tradeops.celery import app
from tradeops.logging import get_logger

from . import delivery, publish
from .bulk import chunked

log = get_logger(__name__)

PUBLISH_BATCH = 500  # messages per pipelined Redis round trip


def dispatch_signal(signal_id: int) -> dict:
    row = Signal.objects.filter(pk=signal_id).values("symbol_id", "status").first()
    if row is None:
        log.warning("dispatch_unknown_signal", signal_id=signal_id)
        return {"signal_id": signal_id, "enqueued": 0, "status": "missing"}
    if row["status"] != Signal.Status.NEW:
        return {"signal_id": signal_id, "enqueued": 0, "status": row["status"]}
    started = time.perf_counter()
    # the durable record first (one statement): every account of the mode, the excluded ones as
    # skipped with the rule; what is enqueued is the pending pairs (orders/delivery.py)
    pending = delivery.record_fanout(signal_id, row["symbol_id"])
    # the firms' copy-trading rules: the accounts they leave out get a skipped Order, named, and
    # their pairs take that outcome at once
    ids = fanout.apply_copy_rules(signal_id, row["symbol_id"], pending)
    if len(ids) != len(pending):
        delivery.settle([signal_id], sorted(set(pending) - set(ids)))
    dispatched_mono = hops.mono_ms()  # the "dispatch" hop: the chunk tasks are published from here
    chunks = publish_chunks(signal_id, ids)
    marked = Signal.objects.filter(pk=signal_id, status=Signal.Status.NEW).update(
        status=Signal.Status.DISPATCHED, dispatched_at=timezone.now(), hops=hops.merged(dispatch=dispatched_mono)
    )
    log.info("signal_dispatched", signal_id=signal_id, accounts=len(ids), chunks=len(chunks), marked=bool(marked),
             elapsed_ms=round((time.perf_counter() - started) * 1000, 1))
    return {"signal_id": signal_id, "enqueued": len(ids), "chunks": len(chunks), "status": Signal.Status.DISPATCHED}


def publish_chunks(signal_id: int, ids: list[int], *, expires_s: float | None = None) -> list[list[int]]:
    """One ``orders.place_orders`` message per chunk of ``ids`` (dispatch, and the sweep's re-drives).

    One producer and kombu's publish batch: the LPUSHes go out in pipelined round trips of
    PUBLISH_BATCH messages instead of one round trip (and one redis client object) per message.
    An exception discards what was not flushed yet: the dispatch task (acks_late) is redelivered
    and the signal, still ``new``, enqueued again; a re-drive is simply retried by the next sweep.
    Duplicates are no-ops by the idempotency key."""
    chunks = fanout_chunks(ids, settings.ORDERS_FANOUT_CHUNK, settings.ORDERS_FANOUT_PROCESSES)
    with app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH):
        for chunk in chunks:
            publish.place_orders(signal_id, chunk, producer=producer, expires=expires_s)
    return chunks


def fanout_chunks(ids: list[int], chunk: int, processes: int) -> list[list[int]]:
    """Chunks of about ``chunk`` accounts, as many as a whole number of rounds of the worker's
    ``processes``: 100 accounts on 4 processes are 4 chunks of 25 that start together, not 5 of 20
    whose fifth waits for a process to finish its chunk (the last acknowledgement came a whole
    chunk later). A chunk is at most about 1.5 × ``chunk`` (``ORDERS_SEND_CONCURRENCY`` covers it)."""
    if not ids:
        return []
    rounds = max(1, round(len(ids) / (max(1, chunk) * max(1, processes))))
    count = min(len(ids), rounds * max(1, processes))
    return list(chunked(ids, math.ceil(len(ids) / count)))


def sweep(now=None) -> dict:
    """The one sweeper (body of the 10 s beat ``orders.dispatch_pending_signals``): signals whose
    dispatch was lost are dispatched again while fresh (expired after), and (signal, account)
    pairs that stopped progressing — a lost worker, a lost queue, a chunk that gave up — are
    re-driven while the signal is fresh and recorded missed with the cause after
    (:func:`orders.delivery.sweep`)."""
    now = now or timezone.now()
    signals = sweep_pending_signals(now)
    for signal_id in signals["redispatch"]:
        log.warning("signal_redispatched", signal_id=signal_id)
        publish.dispatch_signal(signal_id)
    pairs = delivery.sweep(now)
    created = dict(Signal.objects.filter(pk__in=list(pairs["redrive"])).values_list("pk", "created_at"))
    for signal_id, account_ids in pairs["redrive"].items():
        left_s = settings.ORDERS_SIGNAL_MAX_AGE_S - (now - created[signal_id]).total_seconds()
        log.warning("delivery_redriven", signal_id=signal_id, accounts=len(account_ids), left_s=round(left_s, 1))
        publish_chunks(signal_id, account_ids, expires_s=left_s)
    return {"expired": signals["expired"], "redispatched": len(signals["redispatch"]), "settled": pairs["settled"],
            "redriven": sum(len(v) for v in pairs["redrive"].values()), "missed": pairs["missed"]}


# A signal still ``new`` this long after it was recorded lost its dispatch message (the broker was
# unreachable when analysis published it, or the dispatch task failed): it is dispatched again.
REDISPATCH_AFTER_S = 5
SWEEP_LIMIT = 100


def sweep_pending_signals(now=None) -> dict:
    """Signals left ``new``: dispatch again the fresh ones, mark ``expired`` those older than
    ``ORDERS_SIGNAL_MAX_AGE_S`` (too old to trade; visible as such in the admin)."""
    now = now or timezone.now()
    pending = Signal.objects.filter(status=Signal.Status.NEW)
    expired = pending.filter(created_at__lt=now - timedelta(seconds=settings.ORDERS_SIGNAL_MAX_AGE_S)).update(
        status=Signal.Status.EXPIRED)
    ids = list(pending.filter(created_at__lt=now - timedelta(seconds=REDISPATCH_AFTER_S))
               .order_by("pk").values_list("pk", flat=True)[:SWEEP_LIMIT])
    if expired:
        log.warning("signals_expired_undispatched", count=expired)
    return {"expired": expired, "redispatch": ids}

