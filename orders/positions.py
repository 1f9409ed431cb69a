"""Exits and account reads: closing positions (time stop, opposite signal, kill switch) and
the balance snapshots behind the dashboard and the loss limits (judged by :mod:`prop.guard`).

Exits by price are the broker's job (SL/TP travel with the order). We close for time stops,
opposite signals and the kill switch, as a ``close`` Order keyed ``close:pos:<id>`` (one close
order per position, whatever the number of deliveries). A close is safe to repeat: closing an
already closed position is rejected by the broker (POSITION_NOT_FOUND), never duplicated, so
after a lost answer we read back (:func:`orders.submit.resolve_in_doubt`, the engine's one
read-back) and resend if the position is still open. What to do after each error is the submit
loop's rule too (:func:`orders.policy.classify`). Closes use the "high" rate-limit priority.

A close that was not needed is no failure: when the live quotes show the position's SL or TP as
touched, its state is read from the broker first and a position already gone is closed from the
broker's history (reason TP/SL/stop-out) with the order ``skipped``/``not_needed``, never sent; a
close the broker answers POSITION_NOT_FOUND (it closed the position between our read and our
request) is ``cancelled``/``not_needed``, not rejected.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import Account, EquitySnapshot
from accounts.states import why_not_close
from marketdata.reader import read_quotes
from matchtrader import protocol as MTP
from matchtrader.errors import BrokerError
from prop import state as prop_state
from prop.models import RuleProfile
from signals.models import Signal
from tradeops.logging import get_logger

from . import broker
from .lifecycle import TERMINAL, OrderStatus, StaleTransition
from .locks import account_lock
from .models import Order, Position, Side
from .reasons import Reason
from .recording import record_close
from .state_sync import touched
from .submit import apply_account_consequence, send_until_definite

log = get_logger(__name__)
S = OrderStatus


def close_key(position_id: int) -> str:
    return f"close:pos:{position_id}"


def close_position(position_id: int, reason: str) -> str:
    """Close one position at the broker and record it. Returns the close order's status."""
    position = Position.objects.select_related("symbol", "account").get(pk=position_id)
    account = position.account
    with account_lock(account.pk, settings.ORDERS_ACCOUNT_LOCK_WAIT_S):
        position.refresh_from_db()
        if position.status != Position.Status.OPEN:
            return "already_closed"
        key = close_key(position.pk)
        order = Order.objects.filter(idempotency_key=key).first()
        if order is None:
            try:
                with transaction.atomic():
                    order = Order.objects.create(
                        account=account, symbol=position.symbol, position=position, signal=position.signal,
                        side=Side.SELL if position.side == Side.BUY else Side.BUY, volume=position.volume,
                        purpose=Order.Purpose.CLOSE, idempotency_key=key, reason=reason[:64],
                    )
            except IntegrityError:
                order = Order.objects.get(idempotency_key=key)
        if order.status in TERMINAL and order.status != S.FILLED:
            # an earlier close attempt failed: a new reason (e.g. kill switch) may try again
            return order.status
        blocked = why_not_close(account.state)
        if blocked and order.status == S.NEW:
            order.transition(S.SKIPPED, reason=blocked)
            log.info("close_skipped", position=position.pk, reason=blocked)
            return order.status
        client = broker.client_for(account)
        if order.status == S.NEW and _touched_and_gone(position, client):
            order.transition(S.SKIPPED, reason=Reason.NOT_NEEDED)
            _close_from_history(position, client, Position.CloseReason.BROKER)
            return order.status
        if order.status == S.NEW:
            try:
                order.transition(S.SUBMITTED, attempts=order.attempts + 1)
                prop_state.count_order(account)  # a close is an order of the firm day too (never blocked)
            except StaleTransition:
                return Order.objects.get(pk=order.pk).status
        if order.status == S.SUBMITTED and not _send_close(order, position, account, client):
            return order.status
        _close_from_history(position, client, reason, order=order)
        return order.status


def _send_close(order: Order, position: Position, account: Account, client) -> bool:
    """The close order is SUBMITTED and we hold the account lock: the engine's retry loop
    (:func:`orders.submit.send_until_definite`) until a definite outcome. Returns True when the
    position is closed by us (the order ``filled``)."""

    def not_found(order: Order, reject) -> bool:
        # already gone at the broker (SL/TP, or a previous lost close): not needed, and the
        # position is recorded from the broker's history with the broker's reason
        if reject.code != MTP.REJECT_POSITION_NOT_FOUND:
            return False
        order.transition(S.CANCELLED, reason=Reason.NOT_NEEDED, last_error=reject.message[:500])
        _close_from_history(position, client, Position.CloseReason.BROKER)
        return True

    # closing twice cannot double anything: after a lost answer the loop reads back (no settle
    # wait) and resends while the position is still open
    status = send_until_definite(order, account, lambda: client.close_position(
        position.broker_position_id, position.symbol.name, position.side, position.volume,
        intent=order.idempotency_key), on_reject=not_found, settle=False)
    if status == S.REJECTED:
        log.warning("close_rejected", position=position.pk, code=order.reason)
    elif status == S.FAILED:
        log.warning("close_failed", position=position.pk, reason=order.reason)
    return status == S.FILLED


def _touched_and_gone(position: Position, client) -> bool:
    """True when the live quotes show the position's SL or TP as touched AND the broker no longer
    lists it: the close must not be sent. Any doubt (no quote, a failed read) sends the close,
    which is safe to repeat."""
    if position.stop_loss is None and position.take_profit is None:
        return False
    try:
        quote = read_quotes(broker.get_redis(), [position.symbol.name]).get(position.symbol.name)
        if not quote or not touched(position.side, quote.get("bid"), quote.get("ask"), position.stop_loss,
                                    position.take_profit):
            return False
        return all(p.id != position.broker_position_id for p in client.open_positions())
    except BrokerError:
        return False
    except Exception as exc:  # noqa: BLE001 - Redis away: send the close as before
        log.info("close_touch_check_failed", position=position.pk, error=type(exc).__name__)
        return False


def _close_from_history(position: Position, client, reason: str, order: Order | None = None) -> None:
    closed = None
    try:
        rows = client.closed_positions(position.opened_at - timedelta(minutes=1), timezone.now() + timedelta(minutes=1))
        mine = [c for c in rows if c.id == position.broker_position_id]
        closed = max(mine, key=lambda c: c.close_time or timezone.now()) if mine else None
    except BrokerError as exc:
        log.info("close_history_unavailable", position=position.pk, error=type(exc).__name__)
    if not record_close(position, closed, reason=reason, order=order) and order is not None \
            and order.status == S.FILLED:
        # our close order closed it, but the account stream applied the broker's close first
        # (reason "broker"): the reason is ours (a firm rule's flatten must say so)
        if Position.objects.filter(pk=position.pk, close_reason=Position.CloseReason.BROKER).update(
                close_reason=reason):
            position.close_reason = reason
    log.info("position_closed", position=position.pk, reason=position.close_reason,
             realized=str(position.realized_pnl))


def positions_due(now=None) -> list[tuple[int, str]]:
    """(position id, reason) of open positions our own exit rules close now: time stop passed,
    or a newer signal on the same symbol in the other direction."""
    now = now or timezone.now()
    due: dict[int, str] = {}
    for pid in Position.objects.filter(status=Position.Status.OPEN, time_stop_at__lte=now).values_list("pk", flat=True):
        due[pid] = Position.CloseReason.TIME_STOP
    opposite = Signal.objects.filter(symbol_id=OuterRef("symbol_id"), created_at__gt=OuterRef("opened_at")).exclude(
        side=OuterRef("side"))
    for pid in (Position.objects.filter(status=Position.Status.OPEN).annotate(opp=Exists(opposite))
                .filter(opp=True).values_list("pk", flat=True)):
        due.setdefault(pid, Position.CloseReason.OPPOSITE_SIGNAL)
    return sorted(_held_long_enough(due, now).items())


def _held_long_enough(due: dict[int, str], now) -> dict[int, str]:
    """Our own exits wait for the rule profile's minimum hold time (a firm may void trades closed
    sooner). The loss rules do not wait: the breach guard (:mod:`prop.guard`) closes regardless."""
    if not due:
        return due
    default_hold = RuleProfile.default().min_hold_seconds
    rows = Position.objects.filter(pk__in=list(due)).values_list("pk", "opened_at",
                                                                  "account__rule_profile__min_hold_seconds")
    out = {}
    for pid, opened_at, hold in rows:
        hold = default_hold if hold is None else hold
        if not hold or now >= opened_at + timedelta(seconds=hold):
            out[pid] = due[pid]
    return out


# --- balances -------------------------------------------------------------------------------------------
def sync_account_balance(account_id: int) -> dict:
    """Read /balance, store it on the Account and as an EquitySnapshot."""
    account = Account.objects.get(pk=account_id)
    client = broker.client_for(account)
    try:
        bal = client.balance()
    except BrokerError as exc:
        apply_account_consequence(account, exc)  # a revoked token halts the account here too
        raise
    now = timezone.now()
    n_open = Position.objects.filter(account_id=account_id, status=Position.Status.OPEN).count()
    Account.objects.filter(pk=account_id).update(balance=bal.balance, equity=bal.equity, balance_updated_at=now)
    EquitySnapshot.objects.create(account=account, at=now, balance=bal.balance, equity=bal.equity,
                                  margin=bal.margin, open_positions=n_open)
    account.balance, account.equity, account.balance_updated_at = bal.balance, bal.equity, now
    # the loss limits (the account's rule profile) are judged on this read by prop.guard.sync_and_guard
    return {"account_id": account_id, "balance": bal.balance, "equity": bal.equity, "at": now}


def accounts_to_sync(now=None, limit: int | None = None) -> list[int]:
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.ORDERS_SYNC_MIN_AGE_S)
    qs = (Account.objects.filter(enabled=True).exclude(balance_updated_at__gte=stale_before)
          .order_by("balance_updated_at", "pk").values_list("pk", flat=True))
    return list(qs[: limit or settings.ORDERS_SYNC_BATCH])

