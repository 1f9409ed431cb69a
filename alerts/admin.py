from django import forms
from django.contrib import admin, messages

from .models import AlertState, Channel, Delivery


class ChannelForm(forms.ModelForm):
    """The secret (webhook HMAC key, Telegram bot token) is write-only: never rendered back,
    left empty keeps the stored one."""

    new_secret = forms.CharField(
        label="Secret", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhook: HMAC-SHA256 key of the X-Tradeops-Signature header. Telegram: the bot token. "
                  "Stored encrypted; leave empty to keep the current one.",
    )

    base_url = forms.URLField(
        assume_scheme="https", required=False,
        help_text="Telegram only: Bot API base URL (empty: ALERTS_TELEGRAM_API_URL, https://api.telegram.org).")

    class Meta:
        model = Channel
        exclude = ("secret",)

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        has_secret = bool(cleaned.get("new_secret") or (self.instance.pk and self.instance.secret))
        if kind == Channel.Kind.TELEGRAM and not has_secret:
            self.add_error("new_secret", "A Telegram channel needs its bot token.")
        return cleaned

    def save(self, commit=True):
        channel = super().save(commit=False)
        if self.cleaned_data.get("new_secret"):
            channel.secret = self.cleaned_data["new_secret"]
        if commit:
            channel.save()
        return channel


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ("name", "kind", "enabled", "target", "created_at")
    list_filter = ("kind", "enabled")
    actions = ["send_test_alert"]

    @admin.action(description="Send test alert")
    def send_test_alert(self, request, queryset):
        from .engine import send_test

        for d in send_test(queryset):
            if d.ok:
                self.message_user(request, f"Test alert delivered to {d.channel.name}.", messages.SUCCESS)
            else:
                self.message_user(request, f"Test alert to {d.channel.name} failed: {d.error}", messages.ERROR)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History: viewable, never edited or deleted by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AlertState)
class AlertStateAdmin(ReadOnlyAdmin):
    list_display = ("key", "title", "active", "severity", "since", "last_sent_at", "resolved_at", "messages_sent")
    list_filter = ("active", "severity")
    search_fields = ("key", "title", "detail")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("at", "key", "kind", "channel", "ok", "error")
    list_filter = ("ok", "kind", "channel")
    search_fields = ("key", "text", "error")
