"""Retention: delete history older than its configured age, in small batches, oldest first.

What is kept, and for how long (settings, days; 0 keeps forever):

=====================================  ==============================  ==========================
rows                                   setting                         default
=====================================  ==============================  ==========================
orders (terminal only), trades,        RETENTION_ORDERS_DAYS           730 (kept longest: money)
closed positions
audit log                              RETENTION_AUDIT_DAYS            730 (kept longest: who did what)
signals                                RETENTION_SIGNALS_DAYS          90 — a signal that still has
                                                                       orders stays with them
equity snapshots                       RETENTION_EQUITY_DAYS           365
alert deliveries, resolved alerts      RETENTION_ALERTS_DAYS           90
=====================================  ==============================  ==========================

Market data are not in PostgreSQL: Redis keeps them bounded by count (FEED_STREAM_MAXLEN,
FEED_BARS_*_LEN; README "Retention" has the Redis AOF guidance). The project has no backtest-trade
table; backtests run on ``backtesting``'s bundled data and are not stored.

Deletes go in batches of RETENTION_BATCH rows by primary key (short transactions, no long lock on
a table the order engine writes) and stop after RETENTION_MAX_SECONDS; the next run continues.
An order that is not terminal (in flight, unknown) is never deleted, whatever its age.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tradeops.logging import get_logger

log = get_logger(__name__)


@dataclass
class PruneReport:
    deleted: dict[str, int] = field(default_factory=dict)
    complete: bool = True

    def add(self, what: str, n: int) -> None:
        self.deleted[what] = self.deleted.get(what, 0) + n


def _cutoff(days: int):
    return timezone.now() - timedelta(days=days) if days and days > 0 else None


def plan():
    """-> [(label, queryset)] in deletion order (children before parents). Pure of side effects."""
    from accounts.models import AuditLog, EquitySnapshot
    from alerts.models import AlertState, Delivery
    from orders.lifecycle import TERMINAL
    from orders.models import Order, Position, Trade
    from signals.models import Signal

    out = []
    orders_cut = _cutoff(settings.RETENTION_ORDERS_DAYS)
    if orders_cut:
        out += [
            ("trades", Trade.objects.filter(executed_at__lt=orders_cut)),
            ("orders", Order.objects.filter(created_at__lt=orders_cut, status__in=list(TERMINAL))),
            ("positions", Position.objects.filter(status=Position.Status.CLOSED, closed_at__lt=orders_cut)),
        ]
    if cut := _cutoff(settings.RETENTION_AUDIT_DAYS):
        out.append(("audit_log", AuditLog.objects.filter(created_at__lt=cut)))
    if cut := _cutoff(settings.RETENTION_SIGNALS_DAYS):
        out.append(("signals", Signal.objects.filter(created_at__lt=cut, orders__isnull=True)))
    if cut := _cutoff(settings.RETENTION_EQUITY_DAYS):
        out.append(("equity_snapshots", EquitySnapshot.objects.filter(at__lt=cut)))
    if cut := _cutoff(settings.RETENTION_ALERTS_DAYS):
        out += [("alert_deliveries", Delivery.objects.filter(at__lt=cut)),
                ("alert_states", AlertState.objects.filter(active=False, resolved_at__lt=cut))]
    return out


def prune(dry_run: bool = False, batch: int | None = None, max_seconds: float | None = None) -> PruneReport:
    batch = batch or settings.RETENTION_BATCH
    deadline = time.monotonic() + (max_seconds if max_seconds is not None else settings.RETENTION_MAX_SECONDS)
    report = PruneReport()
    for label, qs in plan():
        if dry_run:
            report.add(label, qs.count())
            continue
        while True:
            ids = list(qs.order_by("pk").values_list("pk", flat=True)[:batch])
            if not ids:
                break
            with transaction.atomic():
                n, _ = qs.model.objects.filter(pk__in=ids).delete()
            report.add(label, len(ids))
            if len(ids) < batch:
                break
            if time.monotonic() > deadline:
                report.complete = False
                break
        if not report.complete:
            break
    log.info("retention_pruned", dry_run=dry_run, complete=report.complete, **report.deleted)
    return report
