"""The fan-out as a record, not a hope: every (signal, account) pair ends in exactly one outcome.

Why: a Celery message is not a record. A worker killed with chunks unacknowledged gets them back
only after the broker's visibility timeout (600 s, far beyond a signal's 120 s life); a Redis
restart without persistence loses the queue; a chunk that crashed on a Redis or PostgreSQL error
is acknowledged like a finished one. Each of these left accounts without their order and
without a trace. So the set of accounts is written to PostgreSQL at dispatch, before any message
exists, and the outcome of each pair is derived from that record, not from the queue:

=====================  =========================================================================
``record_fanout``      at dispatch, ONE ``INSERT … SELECT``: every account of the trading mode, the
                       eligible ones ``pending``, the others ``skipped`` with the rule that
                       excluded them (so "delivered N of M" counts everyone)
``claim``              a chunk starting on its accounts (ownership: ``claimed_at``; liveness is the
                       account's advisory lock, which PostgreSQL drops with a dead worker)
``settle``             ONE ``UPDATE … FROM`` maps terminal Order rows onto pending pairs
                       (chunk end, and every sweep)
``sweep``              the 10 s beat ``orders.dispatch_pending_signals`` (one sweeper): pairs that
                       have not progressed and whose account nobody holds are re-driven while the
                       signal is fresh; after, recorded ``missed`` with the cause
=====================  =========================================================================

Outcomes: ``filled``; ``rejected`` (the broker's code); ``skipped`` (the named rule: a risk
limit, halted, kill switch, size zero…); ``missed`` with a cause (:class:`Missed`, or the
reason a send failed: ``broker_unavailable``, ``rate_limited``, ``auth_failed``, ``not_executed``…).
An order in doubt (``submitted``/``unknown``/``accepted``) keeps its pair pending until the
read-back or reconciliation decides it: a pair is never called missed while its order may exist.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone

from accounts.models import Account
from signals.models import Signal
from tradeops.logging import get_logger

from .lifecycle import OrderStatus
from .locks import LOCK_NAMESPACE
from .models import Delivery, Order
from .reasons import Reason

log = get_logger(__name__)
S = OrderStatus
O = Delivery.Outcome


class Missed:
    """Causes of a missed pair (besides the send failures: ``broker_unavailable``, ``not_executed``…),
    all in the one reasons vocabulary (:class:`orders.reasons.Reason`)."""

    WORKER_LOST = Reason.WORKER_LOST.value
    QUEUE_LOST = Reason.BROKER_QUEUE_LOST.value
    DATABASE_UNAVAILABLE = Reason.DATABASE_UNAVAILABLE.value
    REDIS_UNAVAILABLE = Reason.REDIS_UNAVAILABLE.value
    SIGNAL_EXPIRED = Reason.SIGNAL_EXPIRED_BEFORE_DELIVERY.value
    ALL = (WORKER_LOST, QUEUE_LOST, DATABASE_UNAVAILABLE, REDIS_UNAVAILABLE, SIGNAL_EXPIRED)


# A pending pair that nobody holds and that has not moved for this long is re-driven (the sweep
# runs every 10 s, so a lost chunk is back within 10–20 s, well inside a 120 s signal).
REDRIVE_AFTER_S = 8.0
# Order reasons that are rules (skipped), not misses, when an order ends ``failed``.
_FAILED_AS_SKIPPED = (Reason.KILL_SWITCH.value, Reason.ACCOUNT_HALTED.value)


def _tables() -> dict:
    return dict(d=Delivery._meta.db_table, o=Order._meta.db_table, a=Account._meta.db_table,
                allowed=Account.allowed_symbols.through._meta.db_table, s=Signal._meta.db_table)


# Why an account of the trading mode may not open on the symbol, or NULL: accounts.states.why_not_open
# in SQL, plus the symbol rule. The one home of the fan-out's eligibility (the record below, and
# :func:`eligible_account_ids`).
_WHY_NOT_SQL = """
FROM {a} a
CROSS JOIN LATERAL (SELECT CASE
    WHEN NOT a.enabled THEN 'account_disabled'
    WHEN a.halted THEN 'account_halted'
    WHEN a.restriction = 'monitor_only' THEN 'monitor_only'
    WHEN a.restriction = 'close_only' THEN 'close_only'
    WHEN a.needs_reconciliation THEN 'needs_reconciliation'
    WHEN EXISTS (SELECT 1 FROM {allowed} x WHERE x.account_id = a.id)
         AND NOT EXISTS (SELECT 1 FROM {allowed} x WHERE x.account_id = a.id AND x.symbol_id = %(symbol)s)
      THEN 'symbol_not_allowed'
  END AS reason) r
WHERE a.mode = %(mode)s
"""

_RECORD_SQL = """
INSERT INTO {d} (signal_id, account_id, outcome, reason, redrives, last_error, created_at, updated_at, settled_at)
SELECT %(signal)s, a.id, CASE WHEN r.reason IS NULL THEN 'pending' ELSE 'skipped' END, coalesce(r.reason, ''),
       0, '', now(), now(), CASE WHEN r.reason IS NULL THEN NULL ELSE now() END
""" + _WHY_NOT_SQL + """
ON CONFLICT (signal_id, account_id) DO NOTHING
"""


def trading_mode() -> str | None:
    """The account mode that trades now (None: nothing trades — live mode without TRADING_ENABLED)."""
    if settings.SIMULATION_MODE:
        return Account.Mode.SIMULATION
    return Account.Mode.LIVE if settings.TRADING_ENABLED else None


def record_fanout(signal_id: int, symbol_id: int) -> list[int]:
    """Write the fan-out's pairs (idempotent: a re-dispatch inserts nothing new) and return the
    pending account ids, the ones to enqueue."""
    mode = trading_mode()
    with connection.cursor() as cur:
        if mode is not None:
            cur.execute(_RECORD_SQL.format(**_tables()), {"signal": signal_id, "symbol": symbol_id, "mode": mode})
        cur.execute(f"SELECT account_id FROM {Delivery._meta.db_table} WHERE signal_id = %s AND outcome = 'pending' "
                    "ORDER BY account_id", [signal_id])
        return [r[0] for r in cur.fetchall()]


def eligible_account_ids(symbol_id: int) -> list[int]:
    """The accounts a signal on the symbol would fan out to now (the pending pairs
    :func:`record_fanout` would write), without writing anything."""
    mode = trading_mode()
    if mode is None:
        return []
    with connection.cursor() as cur:
        cur.execute("SELECT a.id " + _WHY_NOT_SQL.format(**_tables()) + " AND r.reason IS NULL ORDER BY a.id",
                    {"symbol": symbol_id, "mode": mode})
        return [r[0] for r in cur.fetchall()]


_CLAIM_SQL = """
WITH claimed AS (
  UPDATE {d} SET claimed_at = now(), updated_at = now()
  WHERE signal_id = %(signal)s AND account_id = ANY(%(accounts)s) AND outcome = 'pending')
SELECT account_id FROM {d} WHERE signal_id = %(signal)s AND account_id = ANY(%(accounts)s) AND outcome <> 'pending'
"""


def claim(signal_id: int, account_ids: list[int]) -> set[int]:
    """A chunk starts on these pairs (one statement). Returns the accounts whose pair is already
    settled: their order is terminal (or a rule excluded them at dispatch), nothing is left to do.
    (An account without a pair at all — an operator's order — is not among them.)"""
    if not account_ids:
        return set()
    with connection.cursor() as cur:
        cur.execute(_CLAIM_SQL.format(**_tables()), {"signal": signal_id, "accounts": list(account_ids)})
        return {r[0] for r in cur.fetchall()}


def note_error(signal_id: int, account_ids: list[int], cause: str) -> None:
    """Remember the infrastructure error a chunk gave up on (best effort: the database may be the
    thing that is down; the sweep then calls the miss ``worker_lost``)."""
    try:
        Delivery.objects.filter(signal_id=signal_id, account_id__in=account_ids, outcome=O.PENDING).update(
            last_error=cause)
    except Exception as exc:  # noqa: BLE001 - best effort by design
        log.warning("delivery_note_error_failed", signal_id=signal_id, error=type(exc).__name__)


_SETTLE_SQL = """
UPDATE {d} AS d SET outcome = m.outcome, reason = left(m.reason, 64), settled_at = now(), updated_at = now()
FROM (
  SELECT o.signal_id, o.account_id,
         CASE WHEN o.status = 'filled' THEN 'filled'
              WHEN o.status = 'rejected' THEN 'rejected'
              WHEN o.status = 'skipped' AND o.reason = '{signal_expired}' THEN 'missed'
              WHEN o.status IN ('skipped', 'cancelled') THEN 'skipped'
              WHEN o.status = 'failed' AND o.reason IN ({failed_as_skipped}) THEN 'skipped'
              ELSE 'missed' END AS outcome,
         CASE WHEN o.status = 'skipped' AND o.reason = '{signal_expired}' THEN '{expired}'
              WHEN o.status = 'cancelled' THEN 'cancelled'
              WHEN o.status = 'filled' THEN ''
              WHEN o.reason = '' THEN o.status
              ELSE o.reason END AS reason
  FROM {o} o
  WHERE o.signal_id = ANY(%(signals)s) AND o.purpose = 'open'
    AND o.status IN ('filled', 'rejected', 'skipped', 'failed', 'cancelled') {account_filter}
) AS m
WHERE d.signal_id = m.signal_id AND d.account_id = m.account_id AND d.outcome = 'pending'
"""


def settle_statement(signal_ids: list[int], account_ids: list[int] | None = None) -> tuple[str, dict]:
    """The settle UPDATE and its parameters (a chunk runs it inside its unlock statement,
    :func:`orders.bulk.account_locks`)."""
    sql = _SETTLE_SQL.format(**_tables(), expired=Missed.SIGNAL_EXPIRED, signal_expired=Reason.SIGNAL_EXPIRED.value,
                             failed_as_skipped=", ".join(f"'{r}'" for r in _FAILED_AS_SKIPPED),
                             account_filter="AND o.account_id = ANY(%(accounts)s)" if account_ids is not None else "")
    return sql, {"signals": list(signal_ids), "accounts": list(account_ids or [])}


def settle(signal_ids: list[int], account_ids: list[int] | None = None) -> int:
    """Pending pairs whose Order is terminal take its outcome (one statement). Returns how many."""
    if not signal_ids:
        return 0
    with connection.cursor() as cur:
        cur.execute(*settle_statement(signal_ids, account_ids))
        return cur.rowcount


_STUCK_SQL = """
SELECT d.id, d.signal_id, d.account_id, d.claimed_at, d.last_error, s.created_at, o.id, o.status
FROM {d} d
JOIN {s} s ON s.id = d.signal_id
LEFT JOIN {o} o ON o.signal_id = d.signal_id AND o.account_id = d.account_id AND o.purpose = 'open'
WHERE d.outcome = 'pending' AND d.updated_at < %(before)s
  AND NOT EXISTS (SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
                        SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.classid = %(ns)s AND l.objid = d.account_id AND l.objsubid = 2)
ORDER BY d.signal_id, d.account_id
LIMIT %(limit)s
"""
SWEEP_LIMIT = 5000


def _miss_cause(claimed_at, last_error: str) -> str:
    if last_error:
        return last_error
    return Missed.WORKER_LOST if claimed_at is not None else Missed.QUEUE_LOST


def sweep(now: datetime | None = None) -> dict:
    """Settle, re-drive and close out the pending pairs (body of the 10 s sweep).

    A pair is "stuck" when it is pending, has not changed for ``REDRIVE_AFTER_S`` and no session
    holds its account's advisory lock (a running chunk holds it for as long as it works; a killed
    worker's lock is gone with its connection). Stuck and the signal fresh → its chunk is sent
    again (idempotent: the same key, an order in doubt is read back before anything is re-sent).
    Stuck and the signal expired → ``missed`` with the cause, unless an order of the pair is in
    doubt (its read-back / reconciliation decides it, then ``settle`` records the outcome)."""
    now = now or timezone.now()
    pending_signals = list(Delivery.objects.filter(outcome=O.PENDING).values_list("signal_id", flat=True).distinct())
    settled = settle(pending_signals)
    max_age = timedelta(seconds=settings.ORDERS_SIGNAL_MAX_AGE_S)
    with connection.cursor() as cur:
        cur.execute(_STUCK_SQL.format(**_tables()), {"before": now - timedelta(seconds=REDRIVE_AFTER_S),
                                                     "ns": LOCK_NAMESPACE, "limit": SWEEP_LIMIT})
        stuck = cur.fetchall()
    redrive: dict[int, list[int]] = defaultdict(list)
    redrive_rows: list[int] = []
    missed: dict[str, list[int]] = defaultdict(list)
    new_orders: dict[str, list[int]] = defaultdict(list)
    for row_id, signal_id, account_id, claimed_at, last_error, created_at, order_id, order_status in stuck:
        if order_status in (S.SUBMITTED, S.UNKNOWN, S.ACCEPTED):
            if created_at + max_age >= now:
                redrive[signal_id].append(account_id)  # the chunk's read-back resolves it
                redrive_rows.append(row_id)
            continue  # expired: reconciliation resolves the order; settle then records it
        if created_at + max_age >= now:
            redrive[signal_id].append(account_id)
            redrive_rows.append(row_id)
            continue
        cause = _miss_cause(claimed_at, last_error)
        missed[cause].append(row_id)
        if order_status == S.NEW:
            new_orders[cause].append(order_id)
    for cause, ids in missed.items():
        Delivery.objects.filter(pk__in=ids, outcome=O.PENDING).update(
            outcome=O.MISSED, reason=cause, settled_at=now, updated_at=now)
        log.warning("delivery_missed", cause=cause, pairs=len(ids))
    for cause, ids in new_orders.items():  # never sent, never will be: the Order row says so too
        Order.objects.filter(pk__in=ids, status=S.NEW).update(status=S.FAILED, reason=cause, completed_at=now,
                                                               updated_at=now)
    if redrive_rows:
        Delivery.objects.filter(pk__in=redrive_rows).update(redrives=F("redrives") + 1, updated_at=now)
    return {"settled": settled, "redrive": dict(redrive), "missed": {k: len(v) for k, v in missed.items()}}


def summary(signal_id: int) -> dict:
    """``{"total": M, "delivered": N (filled), "outcomes": {...}, "missed": {cause: n}, "skipped": {reason: n}}``."""
    rows = Delivery.objects.filter(signal_id=signal_id).values_list("outcome", "reason")
    return summarize(rows)


def summarize(rows) -> dict:
    out = {"total": 0, "delivered": 0, "outcomes": defaultdict(int), "missed": defaultdict(int),
           "skipped": defaultdict(int)}
    for outcome, reason in rows:
        out["total"] += 1
        out["outcomes"][outcome] += 1
        if outcome == O.FILLED:
            out["delivered"] += 1
        elif outcome == O.MISSED:
            out["missed"][reason or "unknown"] += 1
        elif outcome == O.SKIPPED:
            out["skipped"][reason or "unknown"] += 1
    return {k: dict(v) if isinstance(v, defaultdict) else v for k, v in out.items()}
