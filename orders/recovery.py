"""A chunk survives Redis and PostgreSQL hiccups: infrastructure errors are retried by the chunk.

Why: a ``redis.ConnectionError`` in the send pool (after some calls had executed) or an
``OperationalError`` while PostgreSQL was away used to fail the task, which Celery then
acknowledged: nothing re-ran those accounts and the signal still read "dispatched". Here the
chunk runs again, in the same task, with bounded exponential backoff, for as long as the signal
may still be traded. Running it again is the redelivery path the chunk already has: rows left
``submitted`` are read back at the broker (and matched, or re-sent when proven not executed)
before anything is sent, terminal rows are left alone, so a retry never duplicates an order.

What counts as infrastructure (retried): Redis connection/timeout errors, PostgreSQL
``OperationalError``/``InterfaceError``, kombu's ``OperationalError`` (publishing a follow-up),
and OS-level connection errors (reset, refused, broken pipe). Broker (Match-Trader) errors never
reach here: they are the order's own retry policy (orders/execution.py). A chunk that gives up
notes the cause on its pairs (if the database lets it) and the 10 s sweep re-drives them while
the signal is fresh (orders/delivery.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from tradeops.logging import get_logger

from . import delivery, reads

log = get_logger(__name__)

# Backoff between chunk attempts: full jitter over min(cap, base·2^n): 0.25, 0.5, 1, 2, 2, … s.
CHUNK_BACKOFF_BASE_S = 0.25
CHUNK_BACKOFF_CAP_S = 2.0
# Give up after this long in one task (inside the chunk's 120 s soft time limit) or when the
# signal is too old to trade, whichever comes first; the sweep takes over.
CHUNK_RETRY_BUDGET_S = 60.0


def infrastructure_cause(exc: BaseException) -> str | None:
    """``database_unavailable`` / ``redis_unavailable`` for an error worth retrying the chunk on,
    else None (a bug or a broker error: not retried here)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return delivery.Missed.DATABASE_UNAVAILABLE
    if isinstance(exc, DatabaseError) and connection.connection is None:
        return delivery.Missed.DATABASE_UNAVAILABLE
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, KombuOperationalError)):
        return delivery.Missed.REDIS_UNAVAILABLE
    if isinstance(exc, (ConnectionError, TimeoutError)):  # OS level: reset, refused, broken pipe
        return delivery.Missed.REDIS_UNAVAILABLE if "redis" in repr(exc).lower() else delivery.Missed.WORKER_LOST
    return None


def backoff_s(attempt: int) -> float:
    return random.uniform(0, min(CHUNK_BACKOFF_CAP_S, CHUNK_BACKOFF_BASE_S * 2 ** attempt)) + 0.05


def _signal_deadline(signal_id: int) -> float | None:
    """Monotonic time after which the signal is too old to trade (None: unreadable now)."""
    try:
        created = reads.signal(signal_id).created_at
    except Exception:  # noqa: BLE001 - the database may be the thing that is down
        return None
    left = settings.ORDERS_SIGNAL_MAX_AGE_S - (timezone.now() - created).total_seconds()
    return time.monotonic() + left


def run_chunk(signal_id: int, account_ids: list[int], body: Callable[[list[int]], object], *,
              skip_settled: bool = False):
    """Run ``body`` (a chunk, or one account) on the accounts, retrying it on infrastructure errors.

    ``skip_settled`` (a chunk of the fan-out): accounts whose pair is already settled are left
    out, and a chunk with none left does nothing. A chunk message can be there twice — the sweep
    re-publishes pairs that waited more than ``REDRIVE_AFTER_S`` in a long queue, and Redis
    redelivers — and the copy that runs second then costs one statement, not a chunk's worth."""
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            if attempt:
                settled = delivery.claim(signal_id, account_ids)
            else:
                settled = _claim_quietly(signal_id, account_ids)
                if settled is None:
                    raise OperationalError("claim failed")  # the database is away: same as any other
            todo = [a for a in account_ids if a not in settled] if skip_settled else list(account_ids)
            if not todo:
                log.info("orders_chunk_already_settled", signal_id=signal_id, accounts=len(account_ids))
                return {"already_settled": len(account_ids)}
            return body(todo)
        except Exception as exc:
            cause = infrastructure_cause(exc)
            if cause is None:
                raise
            attempt += 1
            # the session may be dead or in a failed state: drop it (PostgreSQL releases the
            # chunk's advisory locks with it), the next attempt opens a fresh one
            _drop_connection()
            deadline = min(started + CHUNK_RETRY_BUDGET_S, _signal_deadline(signal_id) or float("inf"))
            wait = backoff_s(attempt)
            if time.monotonic() + wait >= deadline:
                log.error("orders_chunk_gave_up", signal_id=signal_id, accounts=len(account_ids), cause=cause,
                          attempts=attempt, error=type(exc).__name__)
                delivery.note_error(signal_id, account_ids, cause)
                return {"gave_up": cause, "attempts": attempt}
            log.warning("orders_chunk_retry", signal_id=signal_id, accounts=len(account_ids), cause=cause,
                        attempt=attempt, wait_s=round(wait, 2), error=f"{type(exc).__name__}: {exc}"[:200])
            time.sleep(wait)


def _claim_quietly(signal_id: int, account_ids: list[int]) -> set[int] | None:
    try:
        return delivery.claim(signal_id, account_ids)
    except (OperationalError, InterfaceError):
        return None


def _drop_connection() -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - already gone
        pass
    close_old_connections()
