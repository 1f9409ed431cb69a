from django.core.exceptions import ValidationError
from django.db import models

from signals.strategy import SIDE_CHOICES
from signals.strategy import Side as _Side


class Signal(models.Model):
    """One strategy decision to trade, and why. Fans out into one order per eligible account."""

    Side = _Side  # the one side type (signals.strategy.Side)

    class Status(models.TextChoices):
        NEW = "new", "New"
        DISPATCHED = "dispatched", "Dispatched"
        EXPIRED = "expired", "Expired"

    symbol = models.ForeignKey("marketdata.Symbol", on_delete=models.PROTECT, related_name="signals")
    side = models.CharField(max_length=4, choices=SIDE_CHOICES)
    strength = models.DecimalField(max_digits=6, decimal_places=4)
    features = models.JSONField(default=dict, blank=True, help_text="What justified the signal.")
    entry_price = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    stop_loss = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    take_profit = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    time_stop_seconds = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW, db_index=True)
    tick_at = models.DateTimeField(null=True, blank=True, help_text="Venue time of the tick that caused it.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    hops = models.JSONField(default=dict, blank=True,
                            help_text="Hop timestamps from the venue tick to each broker answer (signals.hops).")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(strength__gte=0, strength__lte=1), name="signal_strength_0_1"),
        ]
        indexes = [models.Index(fields=["symbol", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.side} {self.symbol.name} @ {self.created_at:%Y-%m-%d %H:%M:%S}" if self.created_at else self.side

    @property
    def latency_ms(self) -> float | None:
        """Tick → signal latency, measured from the venue time of the causing tick."""
        if self.tick_at and self.created_at:
            return (self.created_at - self.tick_at).total_seconds() * 1000
        return None


class StrategyConfig(models.Model):
    """Strategy parameter overrides, editable in the admin: one default row (symbol empty) and
    optional per-symbol rows. Keys and ranges are validated against ``signals.strategy.StrategyParams``."""

    name = models.CharField(max_length=64, default="volume-surge-scalper")
    symbol = models.OneToOneField(
        "marketdata.Symbol", null=True, blank=True, on_delete=models.CASCADE, related_name="strategy_config"
    )
    enabled = models.BooleanField(default=True)
    strategy = models.CharField(
        max_length=32, default="volume_surge",
        help_text="Which strategy analyses the symbol (signals.strategies.STRATEGIES): 'volume_surge' or 'ma_cross'. "
                  "A symbol row overrides the default row.")
    params = models.JSONField(default=dict, blank=True, help_text="Overrides of the strategy's parameter defaults.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(symbol__isnull=True), name="one_default_strategy_config_per_name"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.symbol or 'all symbols'})"

    def clean(self):
        if not isinstance(self.params, dict):
            raise ValidationError({"params": "Parameters must be a JSON object."})
        from signals.strategies import get_strategy
        from signals.strategy import StrategyParamsError

        try:
            strategy = get_strategy(self.strategy)
        except StrategyParamsError as exc:
            raise ValidationError({"strategy": str(exc)}) from exc
        try:
            strategy.parse_params(self.params)
        except (ValueError, TypeError) as exc:
            raise ValidationError({"params": str(exc)}) from exc
