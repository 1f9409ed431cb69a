from __future__ import annotations

import pytest

from alerts.models import Channel

from .receivers import HTTPReceiver, SMTPReceiver, TelegramStandIn

WEBHOOK_SECRET = "hook-secret-0123456789"
BOT_TOKEN = "123456:TEST-token"


@pytest.fixture
def smtp(settings):
    server = SMTPReceiver()
    # Django's test runner swaps in the locmem backend; alerts use the real SMTP one.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield server
    server.close()


@pytest.fixture
def webhook():
    server = HTTPReceiver()
    yield server
    server.close()


@pytest.fixture
def telegram():
    server = TelegramStandIn(BOT_TOKEN)
    yield server
    server.close()


@pytest.fixture
def channels(smtp, webhook, telegram):
    return [
        Channel.objects.create(name="ops mail", kind="email", target="ops@example.com, desk@example.com"),
        Channel.objects.create(name="ops hook", kind="webhook", target=webhook.url + "/hook", secret=WEBHOOK_SECRET),
        Channel.objects.create(name="ops telegram", kind="telegram", target="-100123", secret=BOT_TOKEN,
                               base_url=telegram.url),
    ]
