"""Operator modifications of an open position: an SL/TP edit or a partial close.

Why here, as orders: a modification is a write to the broker like an open or a close, with the
same dangers (a lost answer, a redelivered task) and, on a prop-firm account, a budget: a firm
counts SL/TP edits, partial closes and cancels against a daily modification cap. So each request
is an ``Order`` row (purpose ``edit`` or ``partial``, key ``mod:pos:<position>:<request>``,
written before any byte leaves) and goes through the engine's own machinery:

1. :func:`request_edit` / :func:`request_partial_close` (the admin action, ``manage.py
   modify_position``): a stop removed on an account under loss rules refused (``no_stop_loss``),
   the input rounded in Decimal (the stop towards the position's side of the
   market and the target to the nearest tick, :func:`orders.pricing.edited_stops`; a partial volume
   DOWN to the lot step, :func:`orders.sizing.partial_close_volume`), the row created ``new`` and
   audited. A firm day whose cap is already used up refuses at once (the row ``skipped`` with the
   rule's name), so the operator sees it without waiting for a worker.
2. :func:`execute` (task ``orders.modify_position``, or inline), under the account's lock: the
   account must allow closing (:func:`accounts.states.why_not_close`); an SL edit that moves the
   stop away from the price must fit the account's loss headroom on live equity, read now
   (:func:`prop.pretrade.stop_edit_check`: this position's remaining risk at the new stop plus the
   other positions' must fit each loss rule's headroom less the flatten margin, as an entry's
   worst case does), else ``skipped`` with the rule's name (``daily_loss_limit``,
   ``max_loss_limit``) and no modification taken; a tightening edit always passes; then, in ONE
   transaction, the firm day's modification counter is taken by compare-and-set
   (:func:`prop.state.try_modify`) and the row moved ``new → submitted`` — the N+1th modification of a day capped at N is ``skipped``
   / ``daily_modifications_cap``, and the count lives in PostgreSQL (a restart changes nothing).
3. The call goes through the engine's retry loop (:func:`orders.submit.send_until_definite`:
   :func:`orders.policy.classify` decides, a lost answer is read back by the one in-doubt resolver,
   which never sends a second partial close on a guess).
4. Filled: the Position takes the new SL/TP, or the smaller volume (compare-and-set) and a
   ``partial`` Trade from the broker's closed history.

A redelivered task finds the row ``submitted`` and reads the broker back before sending again.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Account, AuditLog
from accounts.states import why_not_close
from matchtrader import protocol as MTP
from matchtrader.errors import BrokerError
from prop import pretrade as prop_pretrade
from prop import state as prop_state
from tradeops.logging import get_logger

from . import broker
from .lifecycle import TERMINAL, OrderStatus, StaleTransition
from .locks import account_lock
from .models import Order, Position, Side, Trade
from .pricing import edited_stops
from .reasons import Reason
from .recording import record_close
from .sizing import partial_close_volume
from .submit import RESEND, resolve_in_doubt, send_until_definite

log = get_logger(__name__)
S = OrderStatus


class ModificationRefused(ValueError):
    """Bad operator input (not an open position, a volume that rounds to nothing, …): nothing recorded."""


def modification_key(position_id: int) -> str:
    return f"mod:pos:{position_id}:{uuid.uuid4().hex[:16]}"


def _open_position(position_id: int) -> Position:
    position = Position.objects.select_related("symbol", "account").filter(pk=position_id).first()
    if position is None or position.status != Position.Status.OPEN:
        raise ModificationRefused(f"position {position_id} is not open")
    return position


def _to_dec(value, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError as exc:
        raise ModificationRefused(f"{name}: {value!r} is not a number") from exc


def request_edit(position_id: int, *, stop_loss, take_profit, actor) -> Order:
    """An SL/TP edit of an open position (None = no level). Returns the recorded Order."""
    position = _open_position(position_id)
    try:
        sl, tp = edited_stops(side=position.side, stop_loss=_to_dec(stop_loss, "stop loss"),
                              take_profit=_to_dec(take_profit, "take profit"), tick=position.symbol.tick_size)
    except ValueError as exc:
        raise ModificationRefused(str(exc)) from exc
    if sl is None:
        # the loss rules price every position's worst case at its stop (prop.pretrade): without
        # one it is unbounded, so an account under loss rules keeps a stop on every position
        ar = prop_state.rules_for([position.account], timezone.now())[position.account.pk]
        if ar.has_loss_rules:
            raise ModificationRefused(f"{prop_state.R.Rule.NO_STOP_LOSS}: the loss rules of {ar.profile.name!r} "
                                      "need a stop loss on every position")
    return _record_request(position, Order.Purpose.EDIT, side=position.side, volume=position.volume,
                           stop_loss=sl, take_profit=tp, actor=actor)


def request_partial_close(position_id: int, *, volume, actor) -> Order:
    """Close ``volume`` lots of an open position (floored to the lot step). Returns the Order."""
    position = _open_position(position_id)
    symbol = position.symbol
    requested = _to_dec(volume, "volume")
    if requested is None:
        raise ModificationRefused("a partial close needs a volume")
    part, why = partial_close_volume(requested, position_volume=position.volume, lot_step=symbol.lot_step,
                                     min_volume=symbol.min_volume)
    if why:
        raise ModificationRefused(why)
    return _record_request(position, Order.Purpose.PARTIAL, side=Side.SELL if position.side == Side.BUY else Side.BUY,
                           volume=part, stop_loss=None, take_profit=None, actor=actor, requested=str(requested))


def _record_request(position: Position, purpose: str, *, side, volume, stop_loss, take_profit, actor,
                    **details) -> Order:
    order = Order.objects.create(account=position.account, symbol=position.symbol, position=position, side=side,
                                 volume=volume, stop_loss=stop_loss, take_profit=take_profit, purpose=purpose,
                                 idempotency_key=modification_key(position.pk),
                                 broker_position_id=position.broker_position_id)
    AuditLog.record(actor, AuditLog.Action.MODIFY, account=position.account, order=order.pk, kind=purpose,
                    position=position.broker_position_id, symbol=position.symbol.name, volume=str(volume),
                    stop_loss=None if stop_loss is None else str(stop_loss),
                    take_profit=None if take_profit is None else str(take_profit), **details)
    left = modifications_left(position.account)
    if left is not None and left <= 0:  # early answer for the operator; execute() holds the real gate
        _refuse_cap(order, position.account)
    log.info("position_modification_requested", order_id=order.pk, kind=purpose, position=position.pk,
             status=order.status)
    return order


def modifications_left(account: Account) -> int | None:
    """Modifications the account's firm day still allows (None: no cap). A read, not a reservation."""
    now = timezone.now()
    ar = prop_state.rules_for([account], now)[account.pk]
    cap = ar.caps.modifications_per_day
    if cap is None:
        return None
    row = prop_state.usage_rows({account.pk: ar})[account.pk]
    return cap - row.modifications


def _refuse_cap(order: Order, account: Account) -> None:
    ar = prop_state.rules_for([account], timezone.now())[account.pk]
    order.transition(S.SKIPPED, reason=prop_state.R.Rule.DAILY_MODIFICATIONS,
                     last_error=f"the firm day {ar.day.day} allows {ar.caps.modifications_per_day} modification(s) "
                                f"({ar.profile.name}); all are used")
    log.warning("position_modification_refused", order_id=order.pk, account_id=account.pk,
                reason=order.reason)


def execute(order_id: int) -> str:
    """Send one modification (see the module docstring). Returns the order's final status."""
    order = Order.objects.select_related("symbol", "account", "position").get(pk=order_id)
    account = order.account
    with account_lock(account.pk, settings.ORDERS_ACCOUNT_LOCK_WAIT_S):
        order.refresh_from_db()
        account.refresh_from_db()
        if order.status in TERMINAL:
            return order.status
        position = Position.objects.select_related("symbol").get(pk=order.position_id)
        order.position = position
        if order.status == S.NEW:
            if not _mark_submitted(order, account, position):
                return order.status
        elif order.status == S.SUBMITTED:
            # a previous delivery died after marking it: read the broker back before any resend
            if settings.ORDERS_UNKNOWN_SETTLE_S:
                time.sleep(settings.ORDERS_UNKNOWN_SETTLE_S)
            if resolve_in_doubt(order, account, settle=False) != RESEND:
                _after(order, position, account)
                return order.status
        else:  # unknown: only reconciliation decides
            return order.status
        client = broker.client_for(account)
        send_until_definite(order, account, lambda: _call(client, order, position), on_reject=_not_found)
        _after(order, position, account)
        return order.status


def _mark_submitted(order: Order, account: Account, position: Position) -> bool:
    if position.status != Position.Status.OPEN:
        order.transition(S.SKIPPED, reason=Reason.NOT_NEEDED, last_error="the position is no longer open")
        return False
    blocked = why_not_close(account.state)
    if blocked:
        order.transition(S.SKIPPED, reason=blocked, last_error="the account's state allows no change")
        return False
    if order.purpose == Order.Purpose.EDIT:
        # a stop moved away from the price raises the worst case: it must fit the loss headroom,
        # read now, under the lock; refused before the budget, so it takes no modification
        check = prop_pretrade.stop_edit_check(account, position, order.stop_loss, timezone.now())
        if not check.allowed:
            order.transition(S.SKIPPED, reason=check.rule, last_error=check.detail)
            log.warning("position_modification_refused", order_id=order.pk, account_id=account.pk,
                        reason=order.reason, detail=check.detail)
            return False
    try:
        with transaction.atomic():  # the budget and the right to send, together or not at all
            taken, rule = prop_state.try_modify(account)
            if taken:
                order.transition(S.SUBMITTED, attempts=order.attempts + 1)
    except StaleTransition:
        order.refresh_from_db()
        return False
    if not taken:
        _refuse_cap(order, account)
        return False
    return True


def _call(client, order: Order, position: Position):
    symbol = position.symbol.name
    if order.purpose == Order.Purpose.EDIT:
        return client.edit_position(position.broker_position_id, symbol, position.side, position.volume,
                                    order.stop_loss, order.take_profit)
    return client.close_partially(position.broker_position_id, symbol, position.side, order.volume,
                                  intent=order.idempotency_key)


def _not_found(order: Order, reject) -> bool:
    """The broker no longer has the position (closed by SL/TP meanwhile): nothing to modify."""
    if reject.code != MTP.REJECT_POSITION_NOT_FOUND:
        return False
    order.transition(S.CANCELLED, reason=Reason.NOT_NEEDED, last_error=reject.message[:500])
    return True


def _after(order: Order, position: Position, account: Account) -> None:
    """A filled modification into the Position (compare-and-set, so a repeat changes nothing)."""
    log.info("position_modification_done", order_id=order.pk, kind=order.purpose, status=order.status,
             reason=order.reason)
    if order.status != S.FILLED:
        return
    if order.purpose == Order.Purpose.EDIT:
        Position.objects.filter(pk=position.pk, status=Position.Status.OPEN).update(
            stop_loss=order.stop_loss, take_profit=order.take_profit, updated_at=timezone.now())
        return
    before = position.volume
    Position.objects.filter(pk=position.pk, status=Position.Status.OPEN, volume=before).update(
        volume=before - order.volume, updated_at=timezone.now())
    try:
        since = (order.submitted_at or order.created_at) - timedelta(seconds=settings.ORDERS_MATCH_CLOCK_SKEW_S)
        rows = broker.client_for(account).closed_positions(since, timezone.now() + timedelta(minutes=1))
    except BrokerError as exc:
        log.info("partial_close_history_unavailable", order_id=order.pk, error=type(exc).__name__)
        return
    mine = [c for c in rows if c.id == position.broker_position_id and c.close_reason == MTP.CLOSE_REASON_PARTIAL
            and Decimal(c.volume) == order.volume
            and (not order.broker_order_id or c.closing_order_id in ("", order.broker_order_id))]
    if mine:
        position.volume = before  # the Trade's kind is judged against the volume before the close
        row = mine[-1]
        record_close(position, row, reason=Position.CloseReason.MANUAL, order=order)
        # the account stream may have recorded the fill first, without its order: claim it, so the
        # in-doubt resolver of a later partial close never takes this row for its own
        Trade.objects.filter(account_id=account.pk, broker_trade_id=f"close:{row.closing_order_id or row.id}",
                             order__isnull=True).update(order=order)
