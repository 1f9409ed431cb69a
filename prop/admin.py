"""Admin of the prop-firm rules: owners, rule profiles (every field documented, validated by
``RuleProfile.clean``), the news calendar, and read-only views of the per-firm-day budgets and the
breach guard's state. Strategy owners are edited inline on the strategy configuration
(``signals.admin``)."""

from django.contrib import admin

from .models import DailyUsage, NewsEvent, Owner, RuleProfile, RuleState, StrategyOwner


@admin.register(Owner)
class OwnerAdmin(admin.ModelAdmin):
    list_display = ("name", "contact", "accounts_count")
    search_fields = ("name", "contact")

    @admin.display(description="Accounts")
    def accounts_count(self, obj):
        return obj.accounts.count()


@admin.register(RuleProfile)
class RuleProfileAdmin(admin.ModelAdmin):
    list_display = ("name", "firm", "is_default", "is_example", "describes_date", "daily_loss_basis",
                    "daily_loss_pct", "daily_loss_amount", "reset_time", "reset_timezone", "max_loss_mode",
                    "max_loss_pct", "forbid_copy_across_owners", "forbid_copy_between_evaluations")
    list_filter = ("firm", "is_example", "daily_loss_basis", "max_loss_mode")
    search_fields = ("name", "firm")
    save_as = True  # "save as new": copy an example, then edit it
    fieldsets = (
        (None, {"fields": ("name", "firm", "is_default", "is_example", "describes_date", "notes"),
                "description": "Example profiles describe common program shapes at the date shown; they are "
                               "not any firm's current rules. Use 'Save as new' to start from one."}),
        ("Daily loss", {"fields": ("daily_loss_basis", "daily_loss_pct", "daily_loss_amount", "reset_time",
                                   "reset_timezone"),
                        "description": "Floor = reference (by basis, at the firm day's start) − limit. "
                                       "Neither percent nor amount: each account's own daily loss limit."}),
        ("Maximum loss", {"fields": ("max_loss_mode", "max_loss_pct", "max_loss_amount",
                                     "trailing_stops_at_initial"),
                          "description": "Static: floor = initial balance − limit. Trailing: floor = highest "
                                         "equity observed − limit (only rises)."}),
        ("Caps per firm day", {"fields": ("max_lots_per_day", "max_orders_per_day", "max_modifications_per_day",
                                          "max_open_orders")}),
        ("Timing", {"fields": ("min_hold_seconds", "trading_start", "trading_end", "weekend_holding",
                               "friday_cutoff", "news_scope", "news_min_impact", "news_before_s", "news_after_s",
                               "news_flatten_before")}),
        ("Copy trading", {"fields": ("forbid_copy_across_owners", "forbid_copy_between_evaluations"),
                          "description": "Applied at fan-out; excluded accounts are recorded as skipped with the "
                                         "rule's name. tradeops never hides copying (no random delays or sizes)."}),
        ("Breach guard", {"fields": ("close_only_buffer_pct", "flatten_margin_pct"),
                          "description": "Headroom below the buffer: close-only. At the margin: flatten and halt "
                                         "(cause: firm rule), before the firm's limit."}),
    )


class StrategyOwnerInline(admin.TabularInline):
    model = StrategyOwner
    extra = 1
    autocomplete_fields = ("owner",)
    verbose_name_plural = "Owners this configuration trades for (in order)"


@admin.register(NewsEvent)
class NewsEventAdmin(admin.ModelAdmin):
    list_display = ("at", "currency", "impact", "title", "source")
    list_filter = ("impact", "currency")
    search_fields = ("title", "currency")
    date_hierarchy = "at"


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    list_display = ("account", "day", "day_start", "start_balance", "start_equity", "start_source", "lots", "orders",
                    "modifications")
    list_filter = ("day", "start_source")
    search_fields = ("account__name",)
    readonly_fields = [f.name for f in DailyUsage._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(RuleState)
class RuleStateAdmin(admin.ModelAdmin):
    list_display = ("account", "high_water", "high_water_at", "close_only", "close_only_reason", "last_equity",
                    "last_checked_at")
    list_filter = ("close_only",)
    search_fields = ("account__name",)
    readonly_fields = [f.name for f in RuleState._meta.fields]

    def has_add_permission(self, request):
        return False
