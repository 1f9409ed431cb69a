"""Prop-firm rule profiles, account owners, the news calendar and the per-firm-day budgets.

Why an app of its own (not inside ``accounts``): the rules belong to a firm's program, not to an
account; many accounts share one profile, and the profile is edited by whoever models the firm's
program. ``accounts.Account`` points here (``owner``, ``rule_profile``); the pure rule logic is in
:mod:`prop.rules` and :mod:`prop.copying`, the database reads and writes in :mod:`prop.state`.

The account's rule profile when none is set is the **default profile** (``is_default``; exactly
one). It carries today's tradeops behaviour: daily loss measured on the balance at 00:00 UTC, the
limit being each account's own ``daily_loss_limit`` — the same check, in one place.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from .rules import Basis, MaxLossMode

PCT = dict(max_digits=6, decimal_places=3, null=True, blank=True,
           validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))])
MONEY = dict(max_digits=20, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))])


class Owner(models.Model):
    """A person (or entity) an account belongs to. Account holders are usually not users of the
    system; the record gives "copying across owners" a meaning."""

    name = models.CharField(max_length=120, unique=True)
    contact = models.CharField(max_length=200, blank=True, help_text="E-mail, phone or a note on how to reach them.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RuleProfile(models.Model):
    """The rules of one firm's program (e.g. "FTMO 2-step challenge, phase 1"). Every field is
    documented on the admin page; the default profile is today's tradeops behaviour."""

    class Impact(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    class NewsScope(models.TextChoices):
        NONE = "none", "No news rule"
        FUNDED = "funded", "Funded accounts only"
        ALL = "all", "Every account on the profile"

    name = models.CharField(max_length=120, unique=True)
    firm = models.CharField(max_length=120, blank=True, db_index=True,
                            help_text="Accounts on profiles of the same firm are grouped by the copy rules. "
                                      "Empty: no firm (never grouped).")
    is_default = models.BooleanField(default=False, help_text="Used by accounts without a profile (exactly one).")
    is_example = models.BooleanField(default=False, help_text="An example shipped with tradeops, NOT anyone's "
                                                              "current rules: check the firm's terms.")
    describes_date = models.DateField(null=True, blank=True,
                                      help_text="The date of the published rules this profile describes.")
    notes = models.TextField(blank=True)

    # Daily loss
    daily_loss_basis = models.CharField(max_length=16, choices=Basis.CHOICES, default=Basis.BALANCE,
                                        help_text="What the daily loss is measured from.")
    daily_loss_pct = models.DecimalField(**PCT, help_text="Daily loss limit, percent of the initial balance.")
    daily_loss_amount = models.DecimalField(**MONEY, help_text="Daily loss limit as an amount (account currency). "
                                                               "Neither this nor the percent: the account's own "
                                                               "daily loss limit.")
    reset_time = models.TimeField(default=time(0, 0), help_text="When the firm day starts, in the reset time zone.")
    reset_timezone = models.CharField(max_length=64, default="UTC",
                                      help_text="IANA zone of the reset, e.g. Europe/Prague, America/New_York.")

    # Maximum loss
    max_loss_mode = models.CharField(max_length=16, choices=MaxLossMode.CHOICES, default=MaxLossMode.NONE)
    max_loss_pct = models.DecimalField(**PCT, help_text="Maximum loss, percent of the initial balance.")
    max_loss_amount = models.DecimalField(**MONEY, help_text="Maximum loss as an amount.")
    trailing_stops_at_initial = models.BooleanField(
        default=False, help_text="Trailing: the floor stops rising once it reaches the initial balance.")

    # Caps per firm day
    max_lots_per_day = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True,
                                           validators=[MinValueValidator(Decimal("0"))])
    max_orders_per_day = models.PositiveIntegerField(null=True, blank=True)
    max_modifications_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="SL/TP edits, partial closes and cancels.")
    max_open_orders = models.PositiveIntegerField(null=True, blank=True,
                                                  help_text="Open positions plus pending orders at a time.")

    # Timing
    min_hold_seconds = models.PositiveIntegerField(
        default=0, help_text="Our own exits (time stop, opposite signal) wait this long; loss rules never do.")
    news_scope = models.CharField(max_length=8, choices=NewsScope.choices, default=NewsScope.NONE)
    news_min_impact = models.CharField(max_length=8, choices=Impact.choices, default=Impact.HIGH)
    news_before_s = models.PositiveIntegerField(default=120, help_text="Blackout starts this long before an event.")
    news_after_s = models.PositiveIntegerField(default=120, help_text="… and ends this long after it.")
    news_flatten_before = models.BooleanField(default=False,
                                              help_text="Close positions on the event's currencies before it.")
    trading_start = models.TimeField(null=True, blank=True, help_text="Entries allowed from (reset time zone).")
    trading_end = models.TimeField(null=True, blank=True, help_text="… until (exclusive). Empty: all day.")
    weekend_holding = models.BooleanField(default=True, help_text="Positions may stay open over the weekend.")
    friday_cutoff = models.TimeField(null=True, blank=True,
                                     help_text="Without weekend holding: entries stop and positions close at this "
                                               "time on Fridays (reset time zone).")

    # Copy trading
    forbid_copy_across_owners = models.BooleanField(default=False)
    forbid_copy_between_evaluations = models.BooleanField(default=False)

    # Breach guard
    close_only_buffer_pct = models.DecimalField(
        max_digits=6, decimal_places=3, default=Decimal("20"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Percent of a loss limit: with less headroom than this the account takes no new entries.")
    flatten_margin_pct = models.DecimalField(
        max_digits=6, decimal_places=3, default=Decimal("5"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Percent of a loss limit: at this headroom positions are flattened and the account halted, "
                  "before the firm's limit itself.")

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["firm", "name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=models.Q(is_default=True),
                                    name="one_default_rule_profile"),
        ]

    def __str__(self) -> str:
        label = f"{self.name} (example, {self.describes_date})" if self.is_example else self.name
        return label

    def clean(self):
        errors = {}
        try:
            ZoneInfo(self.reset_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors["reset_timezone"] = f"Unknown IANA time zone {self.reset_timezone!r}."
        if self.daily_loss_pct is not None and self.daily_loss_amount is not None:
            errors["daily_loss_amount"] = "Give the daily loss limit as a percent OR an amount, not both."
        if self.max_loss_mode != MaxLossMode.NONE:
            if (self.max_loss_pct is None) == (self.max_loss_amount is None):
                errors["max_loss_pct"] = "A maximum-loss rule needs exactly one of percent and amount."
        elif self.max_loss_pct is not None or self.max_loss_amount is not None:
            errors["max_loss_mode"] = "Choose static or trailing for the maximum loss given."
        if (self.trading_start is None) != (self.trading_end is None):
            errors["trading_end"] = "Give both ends of the trading hours, or neither."
        elif self.trading_start is not None and self.trading_start == self.trading_end:
            errors["trading_end"] = "Trading hours of zero length: leave both empty for all day."
        if self.flatten_margin_pct is not None and self.close_only_buffer_pct is not None \
                and self.flatten_margin_pct > self.close_only_buffer_pct:
            errors["flatten_margin_pct"] = "The flatten margin must not exceed the close-only buffer."
        if self.daily_loss_pct == 0 or self.max_loss_pct == 0:
            errors["daily_loss_pct"] = "A limit of 0 % forbids all trading; leave it empty for no limit."
        if errors:
            raise ValidationError(errors)

    @classmethod
    def default(cls) -> RuleProfile:
        obj = cls.objects.filter(is_default=True).first()
        if obj is None:  # the data migration creates it; recreated with the same values if deleted
            obj, _ = cls.objects.update_or_create(name=DEFAULT_PROFILE["name"], defaults=DEFAULT_PROFILE)
        return obj


# The tradeops default profile: today's per-account daily loss limit (the account's own amount),
# measured on the balance at 00:00 UTC, halting (and flattening) exactly at the limit.
DEFAULT_PROFILE = dict(
    name="tradeops default", is_default=True, firm="", daily_loss_basis=Basis.BALANCE, daily_loss_pct=None,
    daily_loss_amount=None, reset_time=time(0, 0), reset_timezone="UTC", max_loss_mode=MaxLossMode.NONE,
    close_only_buffer_pct=Decimal("0"), flatten_margin_pct=Decimal("0"),
    notes="Today's per-account limit: loss since 00:00 UTC (realized + unrealized, i.e. equity against the "
          "day's opening balance) reaching the account's daily loss limit halts the account and flattens it.",
)


class StrategyOwner(models.Model):
    """The owners a strategy configuration trades for, in order (the copy rules pick the first
    listed owner with eligible accounts at a firm that forbids copying across owners)."""

    strategy = models.ForeignKey("signals.StrategyConfig", on_delete=models.CASCADE, related_name="owners")
    owner = models.ForeignKey(Owner, on_delete=models.CASCADE, related_name="strategies")
    position = models.PositiveIntegerField(default=0, help_text="Lower first.")

    class Meta:
        ordering = ["strategy", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["strategy", "owner"], name="strategy_owner_once")]

    def __str__(self) -> str:
        return f"{self.strategy}: {self.position}. {self.owner}"


class NewsEvent(models.Model):
    """One listed economic-calendar event (``manage.py import_news``). Unique by (time, currency,
    title) so importing the same file twice adds nothing."""

    at = models.DateTimeField(db_index=True)
    currency = models.CharField(max_length=8, help_text="ISO currency it moves, or ALL.")
    impact = models.CharField(max_length=8, choices=RuleProfile.Impact.choices, default=RuleProfile.Impact.HIGH)
    title = models.CharField(max_length=200)
    source = models.CharField(max_length=200, blank=True)
    imported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at"]
        constraints = [models.UniqueConstraint(fields=["at", "currency", "title"], name="news_event_once")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.currency} {self.title}"


class DailyUsage(models.Model):
    """One account's firm day: its day-start snapshot and what it used. A row per (account, firm
    day), updated with compare-and-set increments, so budgets survive restarts and two workers
    cannot both spend the last lot."""

    class Source(models.TextChoices):
        OBSERVED = "observed", "Observed at the reset"
        SNAPSHOT = "snapshot", "Last snapshot before the reset"
        REBUILT = "rebuilt", "Rebuilt from the broker's history"

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="daily_usage")
    day = models.DateField(help_text="Local date (firm zone) on which the firm day starts.")
    day_start = models.DateTimeField()
    start_balance = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    start_equity = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    start_source = models.CharField(max_length=16, choices=Source.choices, blank=True)
    lots = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    orders = models.PositiveIntegerField(default=0)
    modifications = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day", "account_id"]
        constraints = [models.UniqueConstraint(fields=["account", "day"], name="daily_usage_per_firm_day")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day}: {self.lots} lots, {self.orders} orders, {self.modifications} mods"


class RuleState(models.Model):
    """Per account: the trailing high-water mark (only ever raised, on observed equity) and the
    breach guard's last verdict (shown on the dashboard)."""

    account = models.OneToOneField("accounts.Account", on_delete=models.CASCADE, related_name="rule_state")
    high_water = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    high_water_at = models.DateTimeField(null=True, blank=True)
    close_only = models.BooleanField(default=False)
    close_only_reason = models.CharField(max_length=300, blank=True)
    last_equity = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    headroom = models.JSONField(default=dict, blank=True, help_text="Last computed headroom per rule.")

    def __str__(self) -> str:
        return f"rules of {self.account_id}"
