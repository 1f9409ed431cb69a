from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from tradeops.fields import EncryptedTextField

from .states import AccountState, HaltCause, Restriction, may_close, may_open

# The database vocabularies of accounts.states (one definition; these are its choices).
HaltCauseChoices = models.TextChoices("HaltCauseChoices", [(c.name, (c.value, c.label)) for c in HaltCause])
RestrictionChoices = models.TextChoices("RestrictionChoices", [(r.name, (r.value, r.label)) for r in Restriction])


class Account(models.Model):
    """A Match-Trader trading account that the strategy trades.

    Login needs the platform origin, broker id, email and password (see the protocol notes in
    ``matchtrader/``); the login answer gives the ``system_uuid`` scoping every trading call and
    the session/trading tokens. The password and tokens are encrypted at rest and never shown.
    """

    class Mode(models.TextChoices):
        SIMULATION = "simulation", "Simulation"
        LIVE = "live", "Live"

    class ProgramPhase(models.TextChoices):
        NONE = "none", "Not a prop-firm account"
        EVALUATION = "evaluation", "Evaluation (challenge / verification)"
        FUNDED = "funded", "Funded"
    class Api(models.TextChoices):
        """Which Match-Trader API the account is reached through (README "Platform API or Trader API")."""

        PLATFORM = "platform", "Platform API (email, password, broker id)"
        TRADER = "trader", "Trader API (per-account token)"

    name = models.CharField(max_length=64, unique=True)
    api = models.CharField(max_length=16, choices=Api.choices, default=Api.PLATFORM,
                           help_text="Platform API: login with email/password. Trader API: a token the trader "
                                     "generates in Match-Trader (API Access), read or read+trade.")
    platform_url = models.URLField(help_text="Platform API: the broker platform origin, e.g. "
                                             "https://mtr-demo-prod.match-trader.com. Trader API: "
                                             "https://trader-api.match-trader.com")
    broker_id = models.CharField(max_length=32, default="0", blank=True)
    email = models.EmailField(blank=True)
    password = EncryptedTextField(blank=True, help_text="Encrypted at rest; never displayed.")
    trading_account_id = models.CharField(max_length=64, blank=True)
    system_uuid = models.CharField(max_length=64, blank=True, db_index=True, help_text="From the login answer.")
    session_token = EncryptedTextField(blank=True, default="")
    trading_api_token = EncryptedTextField(blank=True, default="")
    trader_api_token = EncryptedTextField(
        blank=True, default="", help_text="Trader API bearer token. Encrypted at rest; never displayed or logged.")
    token_expires_at = models.DateTimeField(null=True, blank=True)
    currency = models.CharField(max_length=8, default="USD")

    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.SIMULATION)
    enabled = models.BooleanField(default=True, db_index=True)
    halted = models.BooleanField(default=False, db_index=True)
    halt_cause = models.CharField(max_length=16, choices=HaltCauseChoices.choices, blank=True, default="",
                                  help_text="Why the account is halted (accounts/states.py); empty when not halted.")
    halt_reason = models.CharField(max_length=500, blank=True)
    halted_at = models.DateTimeField(null=True, blank=True)
    needs_reconciliation = models.BooleanField(
        default=False, help_text="Set after an order outcome was lost; no new order until reconciled."
    )
    last_reconciled_at = models.DateTimeField(null=True, blank=True)
    restriction = models.CharField(
        max_length=16, choices=RestrictionChoices.choices, default=Restriction.NONE.value,
        help_text="Close only: no new positions. Monitor only: nothing is sent, not even closes.",
    )

    # Risk settings
    risk_per_trade_pct = models.DecimalField(
        max_digits=6,
        decimal_places=3,
        default=Decimal("0.5"),
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(Decimal("10"))],
        help_text="Percent of equity risked between entry and stop-loss.",
    )
    max_open_positions = models.PositiveIntegerField(default=5)
    max_volume_per_symbol = models.DecimalField(
        max_digits=20, decimal_places=8, default=Decimal("10"), validators=[MinValueValidator(Decimal("0"))],
        help_text="Lots open at once on one symbol.",
    )
    daily_loss_limit = models.DecimalField(
        max_digits=20, decimal_places=2, default=Decimal("500"), validators=[MinValueValidator(Decimal("0"))],
        help_text="Realized + unrealized loss today (UTC, account currency) that halts the account.",
    )
    # Prop-firm program (prop/): whose account it is, whose rules it trades under.
    owner = models.ForeignKey("prop.Owner", null=True, blank=True, on_delete=models.PROTECT, related_name="accounts")
    rule_profile = models.ForeignKey(
        "prop.RuleProfile", null=True, blank=True, on_delete=models.PROTECT, related_name="accounts",
        help_text="The firm program's rules. Empty: the default profile (daily loss limit above, UTC midnight).",
    )
    program_phase = models.CharField(max_length=16, choices=ProgramPhase.choices, default=ProgramPhase.NONE)
    initial_balance = models.DecimalField(
        max_digits=20, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))],
        help_text="The program's starting balance (percent limits and the static maximum loss use it).",
    )
    allowed_symbols = models.ManyToManyField(
        "marketdata.Symbol", blank=True, related_name="accounts", help_text="Empty means every enabled symbol."
    )

    # Last balance snapshot read from the broker (for sizing and the dashboard).
    balance = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    equity = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    balance_updated_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        # Role permissions (accounts/roles.py groups them): who may stop trading, who may change
        # what a trade risks. Plain "change account" edits broker details only.
        permissions = [
            ("use_kill_switch", "Can use the kill switch (global, per account, close all positions)"),
            ("halt_resume_account", "Can halt and resume accounts"),
            ("edit_risk_limits", "Can edit accounts' risk limits"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(halted=False) | ~models.Q(halt_reason=""), name="account_halt_has_reason"
            ),
            models.CheckConstraint(
                condition=models.Q(halted=False, halt_cause="") | (models.Q(halted=True) & ~models.Q(halt_cause="")),
                name="account_halt_has_cause",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        # the halt flag and its cause move together (constraint account_halt_has_cause); a halt set
        # by hand in the admin without a cause is the operator's
        if self.halted and not self.halt_cause:
            self.halt_cause = HaltCause.OPERATOR
        elif not self.halted:
            self.halt_cause = ""
        super().save(*args, **kwargs)

    @property
    def state(self) -> AccountState:
        return AccountState.of(self)

    @property
    def can_trade(self) -> bool:
        return may_open(self.state)

    @property
    def can_close(self) -> bool:
        return may_close(self.state)

    def halt(self, reason: str, actor: str = "system", cause: HaltCause = HaltCause.OPERATOR) -> bool:
        """Halt the account for ``cause`` (compare-and-set, so only the first halt is recorded).
        Returns True if this call halted it."""
        reason = (reason or "halted")[:500]
        cause = HaltCause(cause)
        changed = Account.objects.filter(pk=self.pk, halted=False).update(
            halted=True, halt_cause=cause.value, halt_reason=reason, halted_at=timezone.now()
        )
        if changed:
            self.halted, self.halt_cause, self.halt_reason = True, cause.value, reason
            AuditLog.record(actor, AuditLog.Action.HALT, account=self, reason=reason, cause=cause.value)
        return bool(changed)

    def restrict(self, restriction: Restriction, reason: str, actor: str = "system") -> bool:
        """Set a standing restriction (compare-and-set: recorded once). Returns True if it changed."""
        restriction = Restriction(restriction)
        changed = Account.objects.filter(pk=self.pk).exclude(restriction=restriction.value).update(
            restriction=restriction.value)
        self.restriction = restriction.value
        if changed:
            AuditLog.record(actor, AuditLog.Action.RESTRICT, account=self, restriction=restriction.value,
                            reason=reason[:500])
        return bool(changed)

    def resume(self, actor: str = "system", *, only_cause: HaltCause | None = None, **details) -> bool:
        """Lift the halt. ``only_cause``: only if the halt has that cause (compare-and-set, so an
        automatic resume never lifts an operator's halt placed meanwhile); ``details`` go to the
        audit log (why it was lifted)."""
        qs = Account.objects.filter(pk=self.pk, halted=True)
        if only_cause is not None:
            qs = qs.filter(halt_cause=HaltCause(only_cause).value)
        changed = qs.update(halted=False, halt_cause="", halt_reason="", halted_at=None)
        if changed:
            cause, previous = self.halt_cause, self.halt_reason
            self.halted, self.halt_cause, self.halt_reason = False, "", ""
            AuditLog.record(actor, AuditLog.Action.RESUME, account=self, cause=cause, previous_reason=previous,
                            **details)
        return bool(changed)


class TradingSwitch(models.Model):
    """The global kill switch: a single row. While ``kill_switch`` is on, no new order leaves."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    kill_switch = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.CharField(max_length=150, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="trading_switch_singleton")]

    def __str__(self) -> str:
        return "KILL SWITCH ON" if self.kill_switch else "trading allowed"

    @classmethod
    def get(cls) -> "TradingSwitch":
        obj, _ = cls.objects.get_or_create(id=1)
        return obj


class AuditLog(models.Model):
    """Who changed what, when: limit changes, halts, resumes, kill-switch use."""

    class Action(models.TextChoices):
        HALT = "halt", "Halt"
        RESUME = "resume", "Resume"
        ENABLE = "enable", "Enable"
        DISABLE = "disable", "Disable"
        LIMIT_CHANGE = "limit_change", "Risk limit change"
        KILL_SWITCH_ON = "kill_switch_on", "Kill switch on"
        KILL_SWITCH_OFF = "kill_switch_off", "Kill switch off"
        CLOSE_ALL = "close_all", "Close all positions"
        RECONCILE = "reconcile", "Reconciliation repair"
        CREDENTIALS = "credentials", "Credentials changed"
        CLOSE_ONLY = "close_only", "Close-only (prop-firm loss buffer)"
        CLOSE_ONLY_LIFTED = "close_only_lifted", "Close-only lifted"
        FIRM_RULE = "firm_rule", "Firm rule: flattened and halted"
        LOGIN = "login", "Login"
        LOGIN_FAILED = "login_failed", "Failed login"
        LOCKOUT = "lockout", "Login lockout"
        RESTRICT = "restrict", "Restriction set"
        MODIFY = "modify", "Position modified (SL/TP edit, partial close)"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=150, help_text="User name, or 'system' / the process name.")
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action}"

    @classmethod
    def record(cls, actor, action, account=None, **details) -> "AuditLog":
        actor_name = getattr(actor, "get_username", lambda: str(actor))()
        return cls.objects.create(actor=actor_name or "system", action=action, account=account, details=details)


RISK_FIELDS = ("risk_per_trade_pct", "max_open_positions", "max_volume_per_symbol", "daily_loss_limit")


class EquitySnapshot(models.Model):
    """Balance and equity of an account at a moment, read from the broker. Feeds the equity chart
    and survives restarts (the daily loss limit is measured against the first snapshot of the day)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="equity_snapshots")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    balance = models.DecimalField(max_digits=20, decimal_places=2)
    equity = models.DecimalField(max_digits=20, decimal_places=2)
    margin = models.DecimalField(max_digits=20, decimal_places=2, default=0)
    open_positions = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["account", "-at"])]

    def __str__(self) -> str:
        return f"{self.account_id} {self.at:%Y-%m-%d %H:%M:%S} equity={self.equity}"
