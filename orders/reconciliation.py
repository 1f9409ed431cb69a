"""Reconciliation: make PostgreSQL agree with the broker, or stop trading the account.

Rules (run under the per-account lock, so no order of the account is being sent meanwhile):

1. In-doubt orders. ``unknown`` → matched broker position ⇒ ``filled`` (+ Position/Trade); no
   match ⇒ ``failed`` / ``not_executed`` (never resent from here). ``submitted`` (its sender died)
   is resolved the same way once its signal is too old to trade; while the signal is fresh it is
   left to the task's redelivery, which may still resend it.
2. Filled orders whose position was never linked (the read-back failed) → matched and linked.
3. Open Positions the broker no longer lists → closed with the broker's figures from
   ``/closed-positions`` (close price, realized PnL, commission); reason from the broker (SL/TP) or
   ``broker`` ("closed behind our back").
4. Open Positions still open → unrealized PnL (and a partially closed volume) refreshed.
5. A broker position (or pending order) that no Order/Position of ours explains ⇒ the account is
   HALTED (cause ``reconciliation``), the reason naming each item (id, symbol, side, volume, open
   time). We never "correct" the broker with a trade of our own. A position an order of ours
   still in flight could have opened is ours: a fresh ``submitted`` order is matched and filled
   here (we hold the account's lock, so nobody is sending it), or its outcome is awaited.
5b. An account halted BY reconciliation resumes by itself when a later reconciliation explains
   everything (``ORDERS_AUTO_RESUME_RECONCILED``, audited). Operator, daily-loss, token and
   prop-firm halts are never lifted here.
6. ``needs_reconciliation`` is cleared once no order of the account is left ``unknown``.

Every repair is logged and written to the AuditLog (actor ``reconciliation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, AuditLog
from accounts.states import HaltCause
from matchtrader.errors import BrokerError
from tradeops.logging import get_logger

from . import broker, reads
from .lifecycle import OrderStatus
from .locks import account_lock
from .matching import unexplained
from .models import Order, Position
from .recording import record_close, record_fill
from .submit import BrokerRead, apply_account_consequence, clear_reconciliation_flag_if_resolved, match_open, \
    resolve_in_doubt

log = get_logger(__name__)
S = OrderStatus
ACTOR = "reconciliation"


@dataclass
class ReconcileReport:
    account_id: int
    ok: bool = True
    error: str = ""
    orders_filled: list[int] = field(default_factory=list)
    orders_not_executed: list[int] = field(default_factory=list)
    fills_linked: list[int] = field(default_factory=list)
    positions_closed: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    halted: bool = False
    resumed: bool = False

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _skew() -> timedelta:
    return timedelta(seconds=settings.ORDERS_MATCH_CLOCK_SKEW_S)


def _claimed(account_id: int, exclude_order_id: int | None = None) -> set[str]:
    return reads.claimed_ids([account_id], [exclude_order_id] if exclude_order_id else [])[account_id]


def describe_position(p) -> str:
    """The exact discrepancy, as the halt reason and the audit log name it."""
    opened = p.open_time.isoformat(timespec="seconds") if p.open_time else "?"
    return f"position {p.id} {p.symbol} {p.side} {p.volume} opened {opened}"


def describe_order(o) -> str:
    created = o.creation_time.isoformat(timespec="seconds") if getattr(o, "creation_time", None) else "?"
    return f"pending order {o.id} {o.symbol} {o.side} {o.type} {o.volume} created {created}"


def _orders_in_flight(account_id: int, now) -> list[Order]:
    """Orders of ours, sent and not linked to a position yet, that may have opened one."""
    since = now - timedelta(seconds=settings.ORDERS_SIGNAL_MAX_AGE_S) - _skew()
    return list(Order.objects.select_related("symbol").filter(
        account_id=account_id, purpose=Order.Purpose.OPEN, position__isnull=True, created_at__gte=since,
        status__in=[S.SUBMITTED, S.UNKNOWN, S.ACCEPTED, S.FILLED]))


def _awaits_order(position, in_flight: list[Order], claimed: set[str]) -> bool:
    for order in in_flight:
        if match_open(order, BrokerRead([position], []), claimed):
            log.info("reconcile_position_awaits_order", account_id=order.account_id, position=position.id,
                     order_id=order.pk, status=order.status)
            return True
    return False


# Accounts with open positions are checked every OPEN_POSITIONS_RECHECK_S (not every run: with
# 1,000 accounts that would be 1,000 tasks and 3,000 broker reads a minute).
OPEN_POSITIONS_RECHECK_S = 120


def accounts_needing_reconciliation(include_all_enabled: bool = False) -> list[int]:
    """Flagged accounts, accounts with in-doubt or unlinked orders, and accounts with open
    positions not checked for ``OPEN_POSITIONS_RECHECK_S`` (every enabled one if asked)."""
    in_doubt = Order.objects.filter(status__in=[S.SUBMITTED, S.UNKNOWN]).values("account_id")
    unlinked = Order.objects.filter(status=S.FILLED, purpose=Order.Purpose.OPEN,
                                    position__isnull=True).values("account_id")
    open_pos = Position.objects.filter(status=Position.Status.OPEN).values("account_id")
    stale = Q(last_reconciled_at__isnull=True) | Q(
        last_reconciled_at__lt=timezone.now() - timedelta(seconds=OPEN_POSITIONS_RECHECK_S))
    cond = Q(needs_reconciliation=True) | Q(pk__in=in_doubt) | Q(pk__in=unlinked) | (Q(pk__in=open_pos) & stale)
    if include_all_enabled:
        cond |= Q(enabled=True)
    return list(Account.objects.filter(cond).order_by("pk").values_list("pk", flat=True))


def reconcile_account(account_id: int, actor: str = ACTOR) -> ReconcileReport:
    report = ReconcileReport(account_id)
    with account_lock(account_id, settings.ORDERS_ACCOUNT_LOCK_WAIT_S):
        account = Account.objects.get(pk=account_id)
        now = timezone.now()
        open_positions = list(Position.objects.select_related("symbol").filter(account_id=account_id,
                                                                               status=Position.Status.OPEN))
        in_doubt = list(Order.objects.select_related("symbol", "signal")
                        .filter(account_id=account_id, status__in=[S.SUBMITTED, S.UNKNOWN]).order_by("pk"))
        unlinked = list(Order.objects.select_related("symbol", "signal")
                        .filter(account_id=account_id, status=S.FILLED, purpose=Order.Purpose.OPEN,
                                position__isnull=True, created_at__gte=now - timedelta(days=2)).order_by("pk"))
        since_candidates = [now - timedelta(days=1)] + [p.opened_at for p in open_positions] + [
            (o.submitted_at or o.created_at) for o in in_doubt + unlinked]
        since = min(since_candidates) - _skew()
        client = broker.client_for(account)
        try:
            broker_open = client.open_positions()
            broker_closed = client.closed_positions(since, now + timedelta(minutes=1))
            broker_orders = client.active_orders()
        except BrokerError as exc:
            report.ok, report.error = False, f"{type(exc).__name__}: {exc}"[:300]
            log.warning("reconcile_broker_unreadable", account_id=account_id, error=type(exc).__name__)
            apply_account_consequence(account, exc)  # a revoked token halts the account
            return report

        # 1. in-doubt orders
        max_age = settings.ORDERS_SIGNAL_MAX_AGE_S
        for order in in_doubt:
            signal_age = (now - order.signal.created_at).total_seconds() if order.signal else max_age + 1
            if order.status == S.SUBMITTED and signal_age <= max_age:
                # In flight, but nobody is sending it (we hold the account's lock): a position it
                # opened is ours — record the fill now; no match → wait for its outcome (the
                # chunk's re-drive reads back and may re-send), never call the position a stray.
                match = match_open(order, BrokerRead(broker_open, broker_closed), _claimed(account_id, order.pk))
                if match is not None:
                    order.transition(S.FILLED)
                    record_fill(order, account.pk, order.symbol_id, match, signal=order.signal)
                    report.orders_filled.append(order.pk)
                    AuditLog.record(actor, AuditLog.Action.RECONCILE, account=account,
                                    repair="in_flight_order_filled", order=order.pk, position=match.id)
                continue
            status = resolve_in_doubt(order, account, read=BrokerRead(broker_open, broker_closed),
                                      may_resend=False)
            (report.orders_filled if status == S.FILLED else report.orders_not_executed).append(order.pk)
            AuditLog.record(actor, AuditLog.Action.RECONCILE, account=account, repair="in_doubt_order",
                            order=order.pk, result=status)

        # 2. filled orders never linked to their position
        for order in unlinked:
            match = match_open(order, BrokerRead(broker_open, broker_closed), _claimed(account_id, order.pk))
            if match is not None:
                record_fill(order, account.pk, order.symbol_id, match, signal=order.signal)
                report.fills_linked.append(order.pk)
                AuditLog.record(actor, AuditLog.Action.RECONCILE, account=account, repair="fill_linked",
                                order=order.pk, position=match.id)

        # 3./4. our open positions vs the broker's
        by_id = {p.id: p for p in broker_open}
        closed_by_id: dict[str, object] = {}
        for c in sorted(broker_closed, key=lambda c: c.close_time or now):
            closed_by_id[c.id] = c  # the last close of a position id wins (after partials)
        for pos in Position.objects.select_related("symbol").filter(account_id=account_id,
                                                                    status=Position.Status.OPEN):
            bp = by_id.get(pos.broker_position_id)
            if bp is not None:
                Position.objects.filter(pk=pos.pk).update(
                    unrealized_pnl=Decimal(bp.net_profit).quantize(Decimal("0.01")), volume=bp.volume,
                    updated_at=now)
                continue
            closed = closed_by_id.get(pos.broker_position_id)
            if record_close(pos, closed, reason=Position.CloseReason.BROKER):
                report.positions_closed.append(pos.broker_position_id)
                log.warning("reconcile_position_closed_at_broker", account_id=account_id,
                            position=pos.broker_position_id, close_reason=pos.close_reason,
                            realized=str(pos.realized_pnl), found_in_closed=closed is not None)
                AuditLog.record(actor, AuditLog.Action.RECONCILE, account=account,
                                repair="position_closed_at_broker", position=pos.broker_position_id,
                                close_reason=pos.close_reason, realized_pnl=str(pos.realized_pnl),
                                found_in_closed_positions=closed is not None)

        # 5. anything at the broker we cannot explain → halt, never trade it away. A position that
        # an order of ours still in flight could have opened is ours, not a stray.
        known = _claimed(account_id)
        stray_ids = set(unexplained([p.id for p in broker_open], known))
        in_flight = _orders_in_flight(account_id, now)
        strays = [describe_position(p) for p in broker_open
                  if p.id in stray_ids and not _awaits_order(p, in_flight, known)]
        strays += [describe_order(o) for o in broker_orders]  # we never leave pending orders
        if strays:
            report.unexplained = strays
            reason = (f"reconciliation: {len(strays)} broker item(s) match no order of ours: "
                      + "; ".join(strays[:3]) + (" …" if len(strays) > 3 else ""))
            report.halted = account.halt(reason, actor=actor, cause=HaltCause.RECONCILIATION)
            log.error("reconcile_unexplained_broker_state", account_id=account_id, items=strays[:20])
        elif account.halt_cause == HaltCause.RECONCILIATION and settings.ORDERS_AUTO_RESUME_RECONCILED:
            # everything is explained now (e.g. the fill of an order that was in flight got
            # linked): a halt placed BY reconciliation is lifted, audited; no other cause ever is
            report.resumed = account.resume(actor=actor, only_cause=HaltCause.RECONCILIATION,
                                            why="a later reconciliation explained every broker position and order")
            if report.resumed:
                log.warning("reconcile_auto_resumed", account_id=account_id)

        clear_reconciliation_flag_if_resolved(account)
        Account.objects.filter(pk=account_id).update(last_reconciled_at=timezone.now())
    log.info("reconcile_done", **{k: v for k, v in report.as_dict().items() if v})
    return report
