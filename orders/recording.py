"""Persisting what the broker did: fills → Trade + Position, closes → Position closed.

Every write is idempotent: Trades are deduplicated by ``(account, broker_trade_id)`` and Positions
by ``(account, broker_position_id)``, and a Position is closed by a compare-and-set on its status,
so replaying a broker read (reconciliation, a redelivered task) changes nothing.

Broker trade ids: ``open:<position id>`` for the opening fill and ``close:<closing order id or
position id>`` for a close (the Platform API gives fills no ids of their own).

Money: ``Trade.realized_pnl`` is the broker's gross ``profit``; ``Trade.commission`` on a close is
``netProfit - profit`` (the whole position's commission, as the broker nets it at close), so the
daily loss sums close trades only and never counts a commission twice. The opening trade carries
the commission the broker reports on the open position, for information.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from matchtrader import protocol as MTP
from tradeops.logging import get_logger

from .models import Order, Position, Side, Trade

log = get_logger(__name__)

ZERO = Decimal("0")

CLOSE_REASON_MAP = {
    MTP.CLOSE_REASON_SL: Position.CloseReason.STOP_LOSS,
    MTP.CLOSE_REASON_TP: Position.CloseReason.TAKE_PROFIT,
    MTP.CLOSE_REASON_STOP_OUT: Position.CloseReason.STOP_OUT,
}


def _money(v) -> Decimal:
    return Decimal(v or 0).quantize(Decimal("0.01"))


def _position_fields(symbol_id: int, bp, signal) -> dict:
    opened_at = bp.open_time or timezone.now()
    time_stop_at = None
    if signal is not None and signal.time_stop_seconds:
        time_stop_at = opened_at + timedelta(seconds=signal.time_stop_seconds)
    return dict(
        symbol_id=symbol_id, signal=signal, side=bp.side, volume=bp.volume, open_price=bp.open_price,
        opened_at=opened_at, stop_loss=getattr(bp, "stop_loss", None), take_profit=getattr(bp, "take_profit", None),
        time_stop_at=time_stop_at, unrealized_pnl=_money(getattr(bp, "net_profit", 0)) if hasattr(bp, "current_price") else ZERO,
        commission=_money(getattr(bp, "commission", 0)),
    )


def _open_trade_fields(symbol_id: int, bp, order, position) -> dict:
    return dict(symbol_id=symbol_id, order=order, position=position, kind=Trade.Kind.OPEN, side=bp.side,
                volume=bp.volume, price=bp.open_price, commission=_money(getattr(bp, "commission", 0)),
                executed_at=bp.open_time or position.opened_at)


def record_open(order: Order | None, account_id: int, symbol_id: int, bp, *, signal=None) -> Position:
    """Create (or find) the Position and opening Trade for broker position ``bp`` (an
    OpenPosition or ClosedPosition) and link ``order`` to it."""
    position, _ = _get_or_create(Position, dict(account_id=account_id, broker_position_id=bp.id),
                                 _position_fields(symbol_id, bp, signal))
    _get_or_create(Trade, dict(account_id=account_id, broker_trade_id=f"open:{bp.id}"),
                   _open_trade_fields(symbol_id, bp, order, position))
    if order is not None:
        Order.objects.filter(pk=order.pk).update(
            position=position, broker_position_id=bp.id, fill_price=order.fill_price or bp.open_price
        )
        order.position, order.broker_position_id = position, bp.id
    return position


def record_opens(matches: list[tuple[Order, object]]) -> list[Position]:
    """:func:`record_open` for many (order, open broker position) pairs in four statements, in one
    transaction: Positions and opening Trades inserted (existing ones kept: ``ON CONFLICT DO
    NOTHING`` on their unique keys), Positions read back, Orders linked."""
    if not matches:
        return []
    with transaction.atomic():
        Position.objects.bulk_create(
            [Position(account_id=o.account_id, broker_position_id=bp.id, **_position_fields(o.symbol_id, bp, o.signal))
             for o, bp in matches], ignore_conflicts=True)
        found = Position.objects.filter(account_id__in={o.account_id for o, _ in matches},
                                        broker_position_id__in={bp.id for _, bp in matches})
        by_key = {(p.account_id, p.broker_position_id): p for p in found}
        positions = [by_key[(o.account_id, bp.id)] for o, bp in matches]
        Trade.objects.bulk_create(
            [Trade(account_id=o.account_id, broker_trade_id=f"open:{bp.id}", **_open_trade_fields(o.symbol_id, bp, o, p))
             for (o, bp), p in zip(matches, positions, strict=True)], ignore_conflicts=True)
        for (order, bp), position in zip(matches, positions, strict=True):
            order.position, order.broker_position_id = position, bp.id
            order.fill_price = order.fill_price or bp.open_price
        Order.objects.bulk_update([o for o, _ in matches], ["position", "broker_position_id", "fill_price"])
    return positions


def record_close(position: Position, closed, *, reason: str, order: Order | None = None) -> bool:
    """Close ``position`` from a broker ClosedPosition row (or without one: ``closed=None`` keeps
    the PnL unknown at zero until a later read). Returns True if this call closed it."""
    close_reason = CLOSE_REASON_MAP.get(getattr(closed, "close_reason", ""), reason)
    now = timezone.now()
    if closed is not None:
        partial = closed.close_reason == MTP.CLOSE_REASON_PARTIAL and Decimal(closed.volume) < position.volume
        trade_id = f"close:{closed.closing_order_id or closed.id}"
        gross, net = _money(closed.profit), _money(closed.net_profit)
        _get_or_create(
            Trade, dict(account_id=position.account_id, broker_trade_id=trade_id),
            dict(symbol_id=position.symbol_id, order=order, position=position,
                 kind=Trade.Kind.PARTIAL_CLOSE if partial else Trade.Kind.CLOSE,
                 side=Side.SELL if position.side == Side.BUY else Side.BUY, volume=closed.volume,
                 price=closed.close_price, realized_pnl=gross, commission=net - gross,
                 executed_at=closed.close_time or now),
        )
        if partial:
            return False
    fields = dict(status=Position.Status.CLOSED, closed_at=(closed.close_time if closed else None) or now,
                  close_reason=close_reason, unrealized_pnl=ZERO, updated_at=now)
    if closed is not None:
        fields.update(close_price=closed.close_price, realized_pnl=_money(closed.profit),
                      commission=_money(closed.net_profit) - _money(closed.profit))
    changed = Position.objects.filter(pk=position.pk, status=Position.Status.OPEN).update(**fields)
    if changed:
        for k, v in fields.items():
            setattr(position, k, v)
    return bool(changed)


def _get_or_create(model, lookup: dict, defaults: dict):
    obj = model.objects.filter(**lookup).first()
    if obj is not None:
        return obj, False
    try:
        with transaction.atomic():
            return model.objects.create(**lookup, **defaults), True
    except IntegrityError:  # a concurrent writer (reconciliation vs order task) got there first
        return model.objects.get(**lookup), False


def record_fill(order: Order | None, account_id: int, symbol_id: int, bp, *, signal=None) -> Position:
    """Record a matched broker position; if it is already closed (a ClosedPosition row: the
    order filled and hit its stop before we looked) close it too."""
    position = record_open(order, account_id, symbol_id, bp, signal=signal)
    if not hasattr(bp, "current_price"):  # ClosedPosition
        record_close(position, bp, reason=Position.CloseReason.BROKER, order=None)
    return position
