"""Signal fan-out: one ``orders.place_orders`` message per chunk of eligible accounts.

A chunk (``ORDERS_FANOUT_CHUNK`` accounts) is the unit of work: :mod:`orders.batch` places the
chunk's orders with per-chunk queries and one broker call per order, each order still exactly
once by its own idempotency key. Three queries whatever the number of accounts (signal, eligible
ids, the CAS that marks the signal dispatched) and one pooled producer for all messages, published
in pipelined batches (kombu ``Producer.batch``). Enqueuing twice is harmless (the idempotency keys
make the second delivery a no-op), so the signal is marked dispatched AFTER the messages are out:
a crash in between re-enqueues, never loses.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import Account, openable_accounts_q
from prop import fanout
from signals.models import Signal
from tradeops.celery import app
from tradeops.logging import get_logger

from . import publish
from .bulk import chunked

log = get_logger(__name__)

PUBLISH_BATCH = 500  # messages per pipelined Redis round trip


def eligible_accounts_qs(symbol_id: int):
    """Accounts that may open (:func:`accounts.states.may_open`, as SQL), of the current mode
    (:func:`orders.policy.mode_allowed`), that may trade the symbol."""
    through = Account.allowed_symbols.through.objects
    qs = Account.objects.filter(openable_accounts_q())
    if settings.SIMULATION_MODE:
        qs = qs.filter(mode=Account.Mode.SIMULATION)
    elif settings.TRADING_ENABLED:
        qs = qs.filter(mode=Account.Mode.LIVE)
    else:
        return qs.none()
    return qs.filter(
        ~Exists(through.filter(account_id=OuterRef("pk")))
        | Exists(through.filter(account_id=OuterRef("pk"), symbol_id=symbol_id))
    )


def eligible_account_ids(symbol_id: int) -> list[int]:
    return list(eligible_accounts_qs(symbol_id).order_by("pk").values_list("pk", flat=True))


def dispatch_signal(signal_id: int) -> dict:
    row = Signal.objects.filter(pk=signal_id).values("symbol_id", "status").first()
    if row is None:
        log.warning("dispatch_unknown_signal", signal_id=signal_id)
        return {"signal_id": signal_id, "enqueued": 0, "status": "missing"}
    if row["status"] != Signal.Status.NEW:
        return {"signal_id": signal_id, "enqueued": 0, "status": row["status"]}
    started = time.perf_counter()
    # the firms' copy-trading rules: the accounts they leave out are recorded as skipped, named
    ids = fanout.apply_copy_rules(signal_id, row["symbol_id"], eligible_account_ids(row["symbol_id"]))
    chunks = list(chunked(ids, settings.ORDERS_FANOUT_CHUNK))
    # One producer and kombu's publish batch: the LPUSHes go out in pipelined round trips of
    # PUBLISH_BATCH messages instead of one round trip (and one redis client object) per message.
    # An exception discards what was not flushed yet; the task (acks_late) is redelivered and the
    # signal, still ``new``, is enqueued again — duplicates are no-ops by the idempotency key.
    with app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH):
        for chunk in chunks:
            # ignore_result: the outcome is the Order rows; no result-channel subscribe per message
            publish.place_orders(signal_id, chunk, producer=producer)
    marked = Signal.objects.filter(pk=signal_id, status=Signal.Status.NEW).update(
        status=Signal.Status.DISPATCHED, dispatched_at=timezone.now()
    )
    log.info("signal_dispatched", signal_id=signal_id, accounts=len(ids), chunks=len(chunks), marked=bool(marked),
             elapsed_ms=round((time.perf_counter() - started) * 1000, 1))
    return {"signal_id": signal_id, "enqueued": len(ids), "chunks": len(chunks), "status": Signal.Status.DISPATCHED}


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

