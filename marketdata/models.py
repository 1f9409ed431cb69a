from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from tradeops.money import is_on_step


class Symbol(models.Model):
    """A tradable instrument as the broker lists it (``/effective-instruments``).

    ``name`` is the broker's symbol, suffix included (``EURUSD.``): orders always use it.
    """

    class AssetClass(models.TextChoices):
        FOREX = "forex", "Forex"
        METAL = "metal", "Metal"
        CRYPTO = "crypto", "Crypto"
        INDEX = "index", "Index"
        OTHER = "other", "Other"

    name = models.CharField(max_length=32, unique=True, help_text="Broker symbol, exactly as listed.")
    alias = models.CharField(max_length=32, blank=True)
    description = models.CharField(max_length=128, blank=True)
    asset_class = models.CharField(max_length=16, choices=AssetClass.choices, default=AssetClass.FOREX)
    base_currency = models.CharField(max_length=8, blank=True)
    quote_currency = models.CharField(max_length=8, blank=True)
    digits = models.PositiveSmallIntegerField(default=5, help_text="Price precision (decimal places).")
    tick_size = models.DecimalField(
        max_digits=20, decimal_places=10, default=Decimal("0.00001"), validators=[MinValueValidator(Decimal("1e-10"))]
    )
    lot_step = models.DecimalField(
        max_digits=20, decimal_places=8, default=Decimal("0.01"), validators=[MinValueValidator(Decimal("1e-8"))]
    )
    min_volume = models.DecimalField(max_digits=20, decimal_places=8, default=Decimal("0.01"))
    max_volume = models.DecimalField(max_digits=20, decimal_places=8, default=Decimal("100"))
    contract_size = models.DecimalField(
        max_digits=20, decimal_places=8, default=Decimal("100000"), help_text="Units of base per 1 lot."
    )
    enabled = models.BooleanField(default=False, db_index=True, help_text="Streamed by the feed and analysed.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(min_volume__gt=0), name="symbol_min_volume_positive"),
            models.CheckConstraint(
                condition=models.Q(max_volume__gte=models.F("min_volume")), name="symbol_max_volume_gte_min"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        errors = {}
        if self.tick_size and self.tick_size <= 0:
            errors["tick_size"] = "Tick size must be positive."
        if self.lot_step and self.lot_step <= 0:
            errors["lot_step"] = "Lot step must be positive."
        if self.min_volume is not None and self.lot_step and self.lot_step > 0:
            if not is_on_step(self.min_volume, self.lot_step):
                errors["min_volume"] = f"Minimum volume must be a multiple of the lot step {self.lot_step}."
        if self.min_volume is not None and self.max_volume is not None and self.max_volume < self.min_volume:
            errors["max_volume"] = "Maximum volume must not be below the minimum volume."
        if errors:
            raise ValidationError(errors)
