from django.contrib import admin

from .models import Signal, StrategyConfig


@admin.register(Signal)
class SignalAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "symbol", "side", "strength", "status", "latency", "entry_price",
                    "stop_loss", "take_profit")
    list_filter = ("side", "status", "symbol")
    search_fields = ("symbol__name",)
    date_hierarchy = "created_at"
    list_select_related = ("symbol",)
    readonly_fields = [f.name for f in Signal._meta.fields] + ["latency"]

    @admin.display(description="tick→signal (ms)")
    def latency(self, obj):
        value = obj.latency_ms
        return "-" if value is None else f"{value:.0f}"

    def has_add_permission(self, request):
        return False


@admin.register(StrategyConfig)
class StrategyConfigAdmin(admin.ModelAdmin):
    list_display = ("name", "symbol", "enabled", "params", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("name", "symbol__name")
