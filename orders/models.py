from __future__ import annotations

from django.db import models
from django.utils import timezone

from signals.strategy import SIDE_CHOICES
from signals.strategy import Side as Side  # the one side type, re-exported for the engine

from .lifecycle import OrderStatus, StaleTransition, check_transition
from .reasons import Reason

DEC = {"max_digits": 20, "decimal_places": 10}
# Sent and possibly holding a position at the broker (the exposure counts them, orders.reads).
IN_FLIGHT_STATUSES = (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN, OrderStatus.ACCEPTED, OrderStatus.FILLED)
VOL = {"max_digits": 20, "decimal_places": 8}
MONEY = {"max_digits": 20, "decimal_places": 2}


# The database vocabulary of orders.reasons.Reason (the one list of why an order was not sent or
# not executed). Order.reason has no choices: a rejected order's reason is the broker's own code.
NotSentReason = models.TextChoices("NotSentReason", [(r.name, (r.value, r.value.replace("_", " ").capitalize()))
                                                     for r in Reason])


def idempotency_key_for(signal_id: int, account_id: int) -> str:
    """The deterministic key of the one order a signal may cause on an account."""
    return f"sig:{signal_id}:acc:{account_id}"


class Order(models.Model):
    class Type(models.TextChoices):
        MARKET = "MARKET", "Market"
        LIMIT = "LIMIT", "Limit"
        STOP = "STOP", "Stop"

    class Purpose(models.TextChoices):
        OPEN = "open", "Open a position"
        CLOSE = "close", "Close a position"
        # an operator's modification of an open position (orders/modify.py); each one counts
        # against the firm day's modification cap (prop.state.try_modify)
        EDIT = "edit", "Edit a position's SL/TP"
        PARTIAL = "partial", "Close part of a position"

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="orders")
    signal = models.ForeignKey("signals.Signal", null=True, blank=True, on_delete=models.PROTECT, related_name="orders")
    symbol = models.ForeignKey("marketdata.Symbol", on_delete=models.PROTECT, related_name="orders")
    position = models.ForeignKey(
        "orders.Position", null=True, blank=True, on_delete=models.SET_NULL, related_name="orders",
        help_text="The position this order opened or closes.",
    )
    side = models.CharField(max_length=4, choices=SIDE_CHOICES)
    order_type = models.CharField(max_length=8, choices=Type.choices, default=Type.MARKET)
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.OPEN)
    volume = models.DecimalField(**VOL)
    price = models.DecimalField(**DEC, null=True, blank=True, help_text="Limit/stop price; reference for market.")
    stop_loss = models.DecimalField(**DEC, null=True, blank=True)
    take_profit = models.DecimalField(**DEC, null=True, blank=True)
    fill_price = models.DecimalField(**DEC, null=True, blank=True)

    idempotency_key = models.CharField(max_length=96, unique=True)
    broker_order_id = models.CharField(max_length=64, blank=True, db_index=True)
    broker_position_id = models.CharField(max_length=64, blank=True, db_index=True)

    status = models.CharField(max_length=16, choices=OrderStatus.CHOICES, default=OrderStatus.NEW, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    reason = models.CharField(max_length=64, blank=True, help_text="Machine-readable reason (skip/reject/fail code).")
    last_error = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(volume__gte=0), name="order_volume_not_negative"),
        ]
        indexes = [
            models.Index(fields=["account", "status"]),
            # The exposure query's "orders sent but not yet linked to a position": a handful of rows
            # per account, whereas position IS NULL alone matches every skipped/failed order ever.
            models.Index(fields=["account"], name="order_unlinked_inflight",
                         condition=models.Q(purpose="open", position__isnull=True,
                                            status__in=list(IN_FLIGHT_STATUSES))),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.side} {self.volume} {self.symbol.name} [{self.status}]"

    def transition(self, target: str, **fields) -> None:
        """Move to ``target`` if the table allows it, as a compare-and-set on the current status.

        Raises ``IllegalTransition`` for a move the table forbids and ``StaleTransition`` when
        another worker changed the row first (the caller lost the race and must not act).
        """
        check_transition(self.status, target)
        now = timezone.now()
        fields.setdefault("updated_at", now)
        if target == OrderStatus.SUBMITTED:
            fields.setdefault("submitted_at", now)
        if target in (OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.FAILED,
                      OrderStatus.CANCELLED, OrderStatus.SKIPPED):
            fields.setdefault("completed_at", now)
        updated = Order.objects.filter(pk=self.pk, status=self.status).update(status=target, **fields)
        if updated != 1:
            raise StaleTransition(self.pk, self.status, target)
        self.status = target
        for name, value in fields.items():
            setattr(self, name, value)

    def save(self, *args, **kwargs):
        """Status changes go through ``transition``; a plain save may not move the status."""
        if self.pk is not None and not kwargs.pop("allow_status_write", False):
            current = Order.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            if current is not None and current != self.status:
                check_transition(current, self.status)
        super().save(*args, **kwargs)


class Position(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    class CloseReason(models.TextChoices):
        STOP_LOSS = "sl", "Stop-loss"
        TAKE_PROFIT = "tp", "Take-profit"
        TIME_STOP = "time", "Time stop"
        OPPOSITE_SIGNAL = "opposite", "Opposite signal"
        MANUAL = "manual", "Manual / kill switch"
        STOP_OUT = "stop_out", "Stop-out (margin call at the broker)"
        BROKER = "broker", "Closed at the broker (found by reconciliation)"
        FIRM_RULE = "firm_rule", "Prop-firm rule (flattened by the breach guard)"

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="positions")
    symbol = models.ForeignKey("marketdata.Symbol", on_delete=models.PROTECT, related_name="positions")
    signal = models.ForeignKey("signals.Signal", null=True, blank=True, on_delete=models.SET_NULL, related_name="positions")
    broker_position_id = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=SIDE_CHOICES)
    volume = models.DecimalField(**VOL)
    open_price = models.DecimalField(**DEC)
    opened_at = models.DateTimeField()
    stop_loss = models.DecimalField(**DEC, null=True, blank=True)
    take_profit = models.DecimalField(**DEC, null=True, blank=True)
    time_stop_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN, db_index=True)
    close_price = models.DecimalField(**DEC, null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=16, choices=CloseReason.choices, blank=True)
    unrealized_pnl = models.DecimalField(**MONEY, default=0)
    realized_pnl = models.DecimalField(**MONEY, default=0)
    commission = models.DecimalField(**MONEY, default=0)
    swap = models.DecimalField(**MONEY, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "broker_position_id"], name="unique_broker_position_per_account"),
        ]
        indexes = [models.Index(fields=["account", "status"])]

    def __str__(self) -> str:
        return f"{self.side} {self.volume} {self.symbol.name} ({self.status})"


class Trade(models.Model):
    """A fill. Deduplicated by the broker's id: a replayed fill changes nothing."""

    class Kind(models.TextChoices):
        OPEN = "open", "Open"
        CLOSE = "close", "Close"
        PARTIAL_CLOSE = "partial", "Partial close"

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="trades")
    symbol = models.ForeignKey("marketdata.Symbol", on_delete=models.PROTECT, related_name="trades")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="trades")
    position = models.ForeignKey(Position, null=True, blank=True, on_delete=models.SET_NULL, related_name="trades")
    broker_trade_id = models.CharField(max_length=96, help_text="Broker id of the fill (dedup key).")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    side = models.CharField(max_length=4, choices=SIDE_CHOICES)
    volume = models.DecimalField(**VOL)
    price = models.DecimalField(**DEC)
    realized_pnl = models.DecimalField(**MONEY, default=0)
    commission = models.DecimalField(**MONEY, default=0)
    swap = models.DecimalField(**MONEY, default=0)
    executed_at = models.DateTimeField(db_index=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-executed_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "broker_trade_id"], name="unique_broker_trade_per_account"),
        ]
        indexes = [models.Index(fields=["account", "executed_at"])]  # today's realized PnL per account

    def __str__(self) -> str:
        return f"{self.kind} {self.side} {self.volume} {self.symbol.name} @ {self.price}"


class Delivery(models.Model):
    """One (signal, account) pair of a fan-out: the durable record of who should get the signal.

    Written at dispatch in one statement for every account of the trading mode: eligible accounts
    as ``pending``, accounts excluded by a rule as ``skipped`` with the rule's name, so "delivered
    N of M" counts everyone. From then on every row ends in exactly one outcome (orders/delivery.py
    maps the Order's terminal status onto it; the sweep re-drives rows that do not progress and
    records the ones that never could as ``missed`` with the cause). The Order row itself is still
    created (sized) by the chunk, when the account is worked on."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        FILLED = "filled", "Filled"
        REJECTED = "rejected", "Rejected by the broker"
        SKIPPED = "skipped", "Skipped (a rule)"
        MISSED = "missed", "Missed"

    signal = models.ForeignKey("signals.Signal", on_delete=models.CASCADE, related_name="deliveries")
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="deliveries")
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING)
    reason = models.CharField(max_length=64, blank=True,
                              help_text="Skip reason, broker reject code, or the cause of a miss.")
    # ownership: when a chunk last started on the pair; the account's advisory lock (orders.locks)
    # says whether that worker is still alive (PostgreSQL drops it with a dead worker's session)
    claimed_at = models.DateTimeField(null=True, blank=True)
    redrives = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=64, blank=True, help_text="Last infrastructure error seen.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["signal", "account"], name="one_delivery_per_signal_account")]
        indexes = [models.Index(fields=["signal"], name="delivery_pending",
                                condition=models.Q(outcome="pending"))]

    def __str__(self) -> str:
        return f"signal {self.signal_id} → account {self.account_id}: {self.outcome} {self.reason}".strip()
