from django.contrib import admin, messages

from .models import Symbol


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "asset_class", "digits", "tick_size", "lot_step", "min_volume",
                    "max_volume", "contract_size", "updated_at")
    list_filter = ("enabled", "asset_class")
    search_fields = ("name", "alias", "description")
    list_editable = ("enabled",)
    readonly_fields = ("created_at", "updated_at")
    actions = ("enable_symbols", "disable_symbols")

    @admin.action(description="Enable selected symbols (the feed picks them up within seconds)", permissions=["change"])
    def enable_symbols(self, request, queryset):
        n = queryset.update(enabled=True)
        self.message_user(request, f"{n} symbol(s) enabled.", messages.SUCCESS)

    @admin.action(description="Disable selected symbols", permissions=["change"])
    def disable_symbols(self, request, queryset):
        n = queryset.update(enabled=False)
        self.message_user(request, f"{n} symbol(s) disabled.", messages.SUCCESS)
