from django.contrib import admin, messages

from accounts.models import AuditLog

from . import publish
from .models import Order, Position, Trade


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "account", "symbol", "side", "purpose", "volume", "status", "reason",
                    "attempts", "fill_price", "broker_order_id")
    list_filter = ("status", "side", "purpose", "order_type", "symbol")
    search_fields = ("account__name", "idempotency_key", "broker_order_id", "broker_position_id")

    def lookup_allowed(self, lookup, value, request=None):
        # the Signal list links to "this signal's orders"
        return lookup == "signal__id__exact" or super().lookup_allowed(lookup, value, request)
    date_hierarchy = "created_at"
    list_select_related = ("account", "symbol")
    readonly_fields = [f.name for f in Order._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):  # history: viewable, never edited by hand
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Position)
class PositionAdmin(admin.ModelAdmin):
    list_display = ("id", "opened_at", "account", "symbol", "side", "volume", "open_price", "status",
                    "close_reason", "unrealized_pnl", "realized_pnl", "commission")
    list_filter = ("status", "side", "close_reason", "symbol")
    search_fields = ("account__name", "broker_position_id")
    date_hierarchy = "opened_at"
    list_select_related = ("account", "symbol")
    readonly_fields = [f.name for f in Position._meta.fields]
    actions = ("close_positions",)

    def has_kill_switch_permission(self, request):
        return request.user.has_perm("accounts.use_kill_switch")  # roles: accounts/roles.py

    @admin.action(description="Close selected open positions at the broker (high priority)",
                  permissions=["kill_switch"])
    def close_positions(self, request, queryset):
        positions = list(queryset.filter(status=Position.Status.OPEN).select_related("account").order_by("pk"))
        for position in positions:
            AuditLog.record(request.user, AuditLog.Action.CLOSE_ALL, account=position.account,
                            position=position.broker_position_id, via="admin")
            publish.close_position(position.pk, Position.CloseReason.MANUAL)
        self.message_user(request, f"Closing {len(positions)} position(s).", messages.WARNING)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):  # history: viewable, never edited by hand
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Trade)
class TradeAdmin(admin.ModelAdmin):
    list_display = ("id", "executed_at", "account", "symbol", "kind", "side", "volume", "price", "realized_pnl",
                    "commission")
    list_filter = ("kind", "side", "symbol")
    search_fields = ("account__name", "broker_trade_id")
    date_hierarchy = "executed_at"
    list_select_related = ("account", "symbol")
    readonly_fields = [f.name for f in Trade._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):  # history: viewable, never edited by hand
        return False

    def has_delete_permission(self, request, obj=None):
        return False
