from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from tradeops.celery import Queues, app

from .models import RISK_FIELDS, Account, AuditLog, TradingSwitch

# Published by name: accounts never imports the order engine (import contract "accounts-no-orders");
# the name is pinned by tests/orders/test_tasks_pinned.py.
CLOSE_ALL_POSITIONS_TASK = "orders.close_all_positions"


BROKER_FIELDS = ("name", "mode", "api", "platform_url", "broker_id", "email", "trading_account_id", "system_uuid",
                 "currency")
WRITE_ONLY_SECRETS = ("new_password", "new_trader_api_token")


class AccountForm(forms.ModelForm):
    """Credentials are write-only: the form never renders the stored password or Trader API token,
    and leaving the field empty keeps it. Which credentials are needed follows the account's API."""

    platform_url = forms.URLField(assume_scheme="https", help_text="Broker platform origin.")
    new_password = forms.CharField(
        label="Broker password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Platform API only. Stored encrypted. Leave empty to keep the current password.",
    )
    new_trader_api_token = forms.CharField(
        label="Trader API token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Trader API only: the token generated in Match-Trader (API Access). A read-only token makes "
                  "the account monitor-only. Stored encrypted, never displayed. Leave empty to keep it.",
    )

    class Meta:
        model = Account
        exclude = ("password", "session_token", "trading_api_token", "trader_api_token", "token_expires_at")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "restriction" in self.fields:
            self.fields["restriction"].required = False  # empty → trade normally
        if "program_phase" in self.fields:
            self.fields["program_phase"].required = False  # empty → not a prop-firm account
        if "api" in self.fields:
            self.fields["api"].required = False  # empty → the Platform API, as before the choice existed

    def clean(self):
        cleaned = super().clean()
        if "restriction" in self.fields and not cleaned.get("restriction"):
            cleaned["restriction"] = Account._meta.get_field("restriction").default
        if "program_phase" in self.fields and not cleaned.get("program_phase"):
            cleaned["program_phase"] = Account._meta.get_field("program_phase").default
        if "api" in self.fields and not cleaned.get("api"):
            cleaned["api"] = Account.Api.PLATFORM
        if cleaned.get("api") == Account.Api.TRADER:
            if not cleaned.get("new_trader_api_token") and not self.instance.trader_api_token:
                self.add_error("new_trader_api_token", "A Trader API account needs its token.")
        else:
            if not cleaned.get("email"):
                self.add_error("email", "A Platform API account needs the login email.")
            if not cleaned.get("new_password") and not self.instance.password:
                self.add_error("new_password", "A new account needs its broker password.")
        if cleaned.get("halted") and not cleaned.get("halt_reason"):
            self.add_error("halt_reason", "Say why the account is halted.")
        profile = cleaned.get("rule_profile")
        if profile is not None and cleaned.get("initial_balance") is None and (
                profile.daily_loss_pct is not None or profile.max_loss_mode != "none"):
            self.add_error("initial_balance", f"The rule profile '{profile}' measures a limit against the initial "
                                              "balance: give it (no order is sent without it).")
        return cleaned

    def save(self, commit=True):
        account = super().save(commit=False)
        if self.cleaned_data.get("new_password"):
            account.password = self.cleaned_data["new_password"]
            # A new password invalidates the cached broker session.
            account.session_token = account.trading_api_token = ""
            account.token_expires_at = None
        if self.cleaned_data.get("new_trader_api_token"):
            account.trader_api_token = self.cleaned_data["new_trader_api_token"]
        if commit:
            account.save()
            self.save_m2m()
        return account


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    form = AccountForm
    # Fits a 1440 px screen: the e-mail and broker ids are on the change page and searchable.
    list_display = (
        "name", "api", "mode", "enabled", "state", "equity", "risk_per_trade_pct", "max_open_positions", "daily_loss_limit",
        "owner", "rule_profile",
    )
    list_filter = ("api", "mode", "enabled", "restriction", "halted", "halt_cause", "needs_reconciliation", "rule_profile",
                   "program_phase")
    search_fields = ("name", "email", "system_uuid", "trading_account_id")
    readonly_fields = (
        "credentials_status", "halt_cause", "halted_at", "last_reconciled_at", "balance", "equity",
        "balance_updated_at", "created_at", "updated_at",
    )
    filter_horizontal = ("allowed_symbols",)
    actions = ("enable_accounts", "disable_accounts", "halt_accounts", "resume_accounts", "halt_and_close_all")
    fieldsets = (
        (None, {"fields": ("name", "mode", "enabled", "restriction")}),
        ("Broker", {"fields": ("api", "platform_url", "broker_id", "email", "new_password", "new_trader_api_token",
                               "credentials_status",
                               "trading_account_id", "system_uuid", "currency")}),
        ("Risk", {"fields": ("risk_per_trade_pct", "max_open_positions", "max_volume_per_symbol",
                             "daily_loss_limit", "allowed_symbols")}),
        ("Prop-firm program", {"fields": ("owner", "rule_profile", "program_phase", "initial_balance")}),
        ("State", {"fields": ("halted", "halt_cause", "halt_reason", "halted_at", "needs_reconciliation", "last_reconciled_at",
                              "balance", "equity", "balance_updated_at", "created_at", "updated_at")}),
    )

    @admin.display(description="state", ordering="halted")
    def state(self, obj):
        if obj.halted:
            reason = obj.halt_reason if len(obj.halt_reason) <= 60 else obj.halt_reason[:59] + "…"
            return format_html('<span title="cause: {} - {}">halted: {}</span>', obj.get_halt_cause_display(),
                               obj.halt_reason, reason)
        if obj.needs_reconciliation:
            return "awaiting reconciliation"
        if not obj.enabled:
            return "-"
        return "trading" if obj.restriction == "none" else obj.get_restriction_display()
    # Roles (accounts/roles.py): risk fields need edit_risk_limits, the halt fields
    # halt_resume_account; without them they show read-only.
    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.has_perm("accounts.edit_risk_limits"):
            fields += [f for f in (*RISK_FIELDS, "allowed_symbols") if f not in fields]
        if not request.user.has_perm("accounts.halt_resume_account"):
            fields += [f for f in ("halted", "halt_cause", "halt_reason", "enabled", "restriction") if f not in fields]
        if obj is not None and not request.user.has_perm("accounts.add_account"):
            # Broker identity and credentials belong to whoever may add accounts (administrators).
            fields += [f for f in BROKER_FIELDS if f not in fields]
        return fields

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or request.user.has_perm("accounts.add_account"):
            return fieldsets
        return [(name, {**opts, "fields": tuple(f for f in opts["fields"] if f not in WRITE_ONLY_SECRETS)})
                for name, opts in fieldsets]

    def has_halt_resume_permission(self, request):
        return request.user.has_perm("accounts.halt_resume_account")

    def has_kill_switch_permission(self, request):
        return request.user.has_perm("accounts.use_kill_switch")

    @admin.display(description="Credentials")
    def credentials_status(self, obj):
        if not obj.pk:
            return "-"
        if obj.api == Account.Api.TRADER:
            return "Trader API token set" if obj.trader_api_token else "no Trader API token"
        parts = ["password set" if obj.password else "no password"]
        parts.append("session cached" if obj.trading_api_token else "no session")
        return ", ".join(parts)

    def save_model(self, request, obj, form, change):
        before = Account.objects.filter(pk=obj.pk).values(*RISK_FIELDS, "halted", "enabled").first() if change else None
        super().save_model(request, obj, form, change)
        if before:
            changes = {f: [str(before[f]), str(getattr(obj, f))] for f in RISK_FIELDS if before[f] != getattr(obj, f)}
            if changes:
                AuditLog.record(request.user, AuditLog.Action.LIMIT_CHANGE, account=obj, changes=changes)
            if before["halted"] != obj.halted:
                action = AuditLog.Action.HALT if obj.halted else AuditLog.Action.RESUME
                AuditLog.record(request.user, action, account=obj, reason=obj.halt_reason)
            if before["enabled"] != obj.enabled:
                action = AuditLog.Action.ENABLE if obj.enabled else AuditLog.Action.DISABLE
                AuditLog.record(request.user, action, account=obj)
        if "new_password" in form.changed_data or "new_trader_api_token" in form.changed_data:
            AuditLog.record(request.user, AuditLog.Action.CREDENTIALS, account=obj)

    @admin.action(description="Enable selected accounts", permissions=["halt_resume"])
    def enable_accounts(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected accounts", permissions=["halt_resume"])
    def disable_accounts(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled):
        action = AuditLog.Action.ENABLE if enabled else AuditLog.Action.DISABLE
        changed = 0
        for account in queryset.filter(enabled=not enabled).order_by("pk"):
            if Account.objects.filter(pk=account.pk, enabled=not enabled).update(enabled=enabled):
                AuditLog.record(request.user, action, account=account)
                changed += 1
        self.message_user(request, f"{changed} account(s) {'enabled' if enabled else 'disabled'}.", messages.SUCCESS)

    @admin.action(description="Halt selected accounts (no new orders)", permissions=["halt_resume"])
    def halt_accounts(self, request, queryset):
        reason = f"halted from the admin by {request.user.get_username()}"
        halted = sum(account.halt(reason, actor=request.user) for account in queryset.order_by("pk"))
        self.message_user(request, f"{halted} account(s) halted.", messages.WARNING)

    @admin.action(description="Kill: halt selected accounts and close their open positions", permissions=["kill_switch"])
    def halt_and_close_all(self, request, queryset):
        reason = f"kill switch from the admin by {request.user.get_username()}"
        for account in queryset.order_by("pk"):
            account.halt(reason, actor=request.user)
            AuditLog.record(request.user, AuditLog.Action.CLOSE_ALL, account=account, via="admin")
            app.send_task(CLOSE_ALL_POSITIONS_TASK, args=(account.pk, "manual"), queue=Queues.ORDERS)
        self.message_user(request, f"{queryset.count()} account(s) halted; closing their positions.",
                          messages.WARNING)

    @admin.action(description="Resume selected halted accounts", permissions=["halt_resume"])
    def resume_accounts(self, request, queryset):
        resumed = sum(account.resume(actor=request.user) for account in queryset.order_by("pk"))
        self.message_user(request, f"{resumed} account(s) resumed.", messages.SUCCESS)


class ActorKindFilter(admin.SimpleListFilter):
    """People (an actor who is a user of this site) vs the system (reconciliation, commands,
    processes): automatic reconciliation entries would otherwise bury what people did."""

    title = "by"
    parameter_name = "by"

    def lookups(self, request, model_admin):
        return (("people", "People"), ("system", "System"))

    def queryset(self, request, queryset):
        from django.contrib.auth import get_user_model

        User = get_user_model()
        usernames = User.objects.values(User.USERNAME_FIELD)
        if self.value() == "people":
            return queryset.filter(actor__in=usernames)
        if self.value() == "system":
            return queryset.exclude(actor__in=usernames)
        return queryset


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor", "action", "account", "details")
    list_filter = ("action", ActorKindFilter, "actor")
    search_fields = ("actor", "account__name")
    date_hierarchy = "created_at"
    readonly_fields = ("created_at", "actor", "action", "account", "details")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(TradingSwitch)
class TradingSwitchAdmin(admin.ModelAdmin):
    list_display = ("__str__", "reason", "changed_at", "changed_by")
    readonly_fields = ("changed_at", "changed_by")
    fields = ("kill_switch", "reason", "changed_at", "changed_by")

    def has_add_permission(self, request):
        return not TradingSwitch.objects.exists() and request.user.has_perm("accounts.use_kill_switch")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("accounts.use_kill_switch")

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if "kill_switch" in form.changed_data or not change:
            obj.changed_at, obj.changed_by = timezone.now(), request.user.get_username()
            action = AuditLog.Action.KILL_SWITCH_ON if obj.kill_switch else AuditLog.Action.KILL_SWITCH_OFF
            AuditLog.record(request.user, action, reason=obj.reason)
        super().save_model(request, obj, form, change)
