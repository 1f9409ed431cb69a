from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from accounts.models import AuditLog

from . import modify, publish
from .lifecycle import OrderStatus
from .models import Order, Position, Trade


class ModifyPositionForm(forms.Form):
    """One open position: an SL/TP edit (blank = no level) or a partial close."""

    kind = forms.ChoiceField(choices=[(Order.Purpose.EDIT, "Edit SL/TP"), (Order.Purpose.PARTIAL, "Partial close")],
                             widget=forms.RadioSelect)
    stop_loss = forms.DecimalField(required=False, max_digits=20, decimal_places=10, help_text="blank: no stop loss")
    take_profit = forms.DecimalField(required=False, max_digits=20, decimal_places=10,
                                     help_text="blank: no take profit")
    volume = forms.DecimalField(required=False, max_digits=20, decimal_places=8, min_value=0,
                                help_text="lots to close (partial close)")

    def clean(self):
        data = super().clean()
        if data.get("kind") == Order.Purpose.PARTIAL and not data.get("volume"):
            self.add_error("volume", "a partial close needs a volume")
        return data


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
    actions = ("close_positions", "modify_position")

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

    @admin.action(description="Modify one open position: edit SL/TP or close part (counts against the firm's "
                              "modification cap)", permissions=["kill_switch"])
    def modify_position(self, request, queryset):
        positions = list(queryset.select_related("account", "symbol")[:2])
        if len(positions) != 1 or positions[0].status != Position.Status.OPEN:
            self.message_user(request, "Select exactly one open position to modify.", messages.ERROR)
            return None
        position = positions[0]
        if "apply" in request.POST:
            form = ModifyPositionForm(request.POST)
            if form.is_valid():
                return self._send_modification(request, position, form.cleaned_data)
        else:
            form = ModifyPositionForm(initial={"kind": Order.Purpose.EDIT, "stop_loss": position.stop_loss,
                                               "take_profit": position.take_profit})
        return TemplateResponse(request, "admin/orders/position/modify.html", {
            **self.admin_site.each_context(request), "title": "Modify position", "position": position, "form": form,
            "left": modify.modifications_left(position.account), "opts": self.model._meta})

    def _send_modification(self, request, position, data):
        try:
            if data["kind"] == Order.Purpose.EDIT:
                order = modify.request_edit(position.pk, stop_loss=data.get("stop_loss"),
                                            take_profit=data.get("take_profit"), actor=request.user)
            else:
                order = modify.request_partial_close(position.pk, volume=data["volume"], actor=request.user)
        except modify.ModificationRefused as exc:
            self.message_user(request, f"Refused: {exc}", messages.ERROR)
            return None
        if order.status == OrderStatus.NEW:
            publish.modify_position(order.pk)
            self.message_user(request, f"Modification sent as order {order.pk} ({order.get_purpose_display()}).",
                              messages.SUCCESS)
        else:
            self.message_user(request, f"Refused, order {order.pk}: {order.reason} — {order.last_error}",
                              messages.ERROR)
        return None

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
