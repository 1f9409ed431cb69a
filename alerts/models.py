"""Where alerts go (``Channel``, configured in the admin), what is firing (``AlertState``, one row
per condition: the deduplication and rate limit live in it) and what was sent (``Delivery``)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils import timezone

from tradeops.fields import EncryptedTextField


class Channel(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail (Django mail settings)"
        WEBHOOK = "webhook", "Webhook (JSON POST, HMAC-SHA256 signature)"
        TELEGRAM = "telegram", "Telegram bot"

    name = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    target = models.CharField(
        max_length=500,
        help_text="E-mail: comma-separated addresses. Webhook: the URL. Telegram: the chat id.",
    )
    secret = EncryptedTextField(
        blank=True, default="",
        help_text="Webhook: the HMAC key of the X-Tradeops-Signature header. Telegram: the bot token. "
                  "Stored encrypted; never displayed.",
    )
    base_url = models.URLField(
        blank=True, default="",
        help_text="Telegram only: Bot API base URL (empty: ALERTS_TELEGRAM_API_URL, https://api.telegram.org).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self):
        if self.kind == self.Kind.EMAIL:
            addresses = [a.strip() for a in self.target.split(",") if a.strip()]
            if not addresses:
                raise ValidationError({"target": "Give at least one e-mail address."})
            for a in addresses:
                try:
                    validate_email(a)
                except ValidationError:
                    raise ValidationError({"target": f"{a!r} is not an e-mail address."}) from None
        elif self.kind == self.Kind.WEBHOOK:
            if not self.target.startswith(("http://", "https://")):
                raise ValidationError({"target": "The webhook target is an http(s):// URL."})
        elif self.kind == self.Kind.TELEGRAM:
            if not self.target.strip().lstrip("-").isdigit() and not self.target.strip().startswith("@"):
                raise ValidationError({"target": "A Telegram chat id is a number (or @channel)."})

    @property
    def telegram_api_url(self) -> str:
        return (self.base_url or settings.ALERTS_TELEGRAM_API_URL).rstrip("/")


class AlertState(models.Model):
    """One row per condition key ("kill_switch", "account_halted:12", "feed_stale", …). A message
    goes out when the condition starts, again at most every ALERTS_REPEAT_S while it lasts, and
    once more ("resolved") when it clears. Sending is claimed by a compare-and-set on this row, so
    two evaluations running at once never send the same message twice."""

    key = models.CharField(max_length=120, unique=True)
    title = models.CharField(max_length=200)
    detail = models.TextField(blank=True)
    severity = models.CharField(max_length=16, default="warning")
    active = models.BooleanField(default=True, db_index=True)
    since = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    messages_sent = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-active", "-last_seen_at"]

    def __str__(self) -> str:
        return f"{self.key} ({'firing' if self.active else 'resolved'})"


class Delivery(models.Model):
    """One message to one channel: what was sent, and whether the channel took it."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    channel = models.ForeignKey(Channel, null=True, on_delete=models.SET_NULL, related_name="deliveries")
    key = models.CharField(max_length=120, db_index=True)
    kind = models.CharField(max_length=16, help_text="firing, repeat, resolved or test")
    text = models.TextField()
    ok = models.BooleanField(default=False)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.key} {self.kind} → {self.channel_id}"
