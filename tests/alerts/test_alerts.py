"""Alerts reach a person: each condition is delivered once to a real SMTP server, a webhook
receiver and a Telegram stand-in, not again while it lasts (until the repeat period), and once
more as "resolved" when it clears."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Account, AuditLog, TradingSwitch
from alerts import engine
from alerts.conditions import daily_loss_near_limit
from alerts.models import AlertState, Channel, Delivery
from orders.lifecycle import OrderStatus
from tests.factories import make_account, make_order, make_signal
from tests.operate.test_healthcheck import plant_fresh_heartbeats
from workers import heartbeat

from .conftest import WEBHOOK_SECRET

pytestmark = pytest.mark.django_db


@pytest.fixture
def healthy(redis_client):
    plant_fresh_heartbeats(redis_client)
    return redis_client


def kill_switch(on: bool, reason: str = ""):
    TradingSwitch.objects.update_or_create(id=1, defaults=dict(kill_switch=on, reason=reason, changed_by="alice"))


def test_kill_switch_is_delivered_once_per_channel_then_resolved(channels, smtp, webhook, telegram, healthy):
    kill_switch(True, "broker maintenance")
    assert engine.run_once()["sent"] == ["firing:kill_switch"]
    # each channel got exactly one message, with the reason
    assert len(smtp.messages) == 1 and smtp.messages[0]["subject"] == "[tradeops FIRING] Kill switch ON"
    assert "broker maintenance" in smtp.messages[0]["body"]
    assert sorted(smtp.messages[0]["to"]) == ["desk@example.com", "ops@example.com"]
    assert len(webhook.requests) == 1 and webhook.requests[0]["path"] == "/hook"
    body = webhook.json_bodies()[0]
    assert body["key"] == "kill_switch" and body["status"] == "firing" and "broker maintenance" in body["detail"]
    # the signature is the HMAC-SHA256 of the exact body with the channel's secret
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), webhook.requests[0]["body"], hashlib.sha256).hexdigest()
    assert webhook.requests[0]["headers"]["X-Tradeops-Signature"] == expected
    assert telegram.texts() == ["[tradeops FIRING] Kill switch ON\nKill switch ON: broker maintenance by alice\n"
                                f"since {AlertState.objects.get(key='kill_switch').since:%Y-%m-%d %H:%M:%S} UTC"]
    # deduplicated: evaluating again sends nothing
    for _ in range(3):
        assert engine.run_once()["sent"] == []
    assert (len(smtp.messages), len(webhook.requests), len(telegram.requests)) == (1, 1, 1)
    # cleared: one "resolved" message each, and then silence
    kill_switch(False)
    assert engine.run_once()["sent"] == ["resolved:kill_switch"]
    assert engine.run_once()["sent"] == []
    assert [m["subject"] for m in smtp.messages] == ["[tradeops FIRING] Kill switch ON",
                                                      "[tradeops RESOLVED] Kill switch ON"]
    assert [b["status"] for b in webhook.json_bodies()] == ["firing", "resolved"]
    assert len(telegram.texts()) == 2 and telegram.texts()[1].startswith("[tradeops RESOLVED]")
    assert Delivery.objects.filter(ok=True).count() == 6


def test_still_firing_repeats_once_per_period(channels, webhook, healthy, settings):
    kill_switch(True, "x")
    now = timezone.now()
    engine.run_once(now)
    assert engine.run_once(now + timedelta(seconds=settings.ALERTS_REPEAT_S - 1))["sent"] == []
    assert engine.run_once(now + timedelta(seconds=settings.ALERTS_REPEAT_S))["sent"] == ["repeat:kill_switch"]
    assert [b["status"] for b in webhook.json_bodies()] == ["firing", "repeat"]


def test_a_halted_account_is_named_with_its_reason(channels, smtp, healthy):
    acct = make_account(name="acct-7")
    acct.halt("daily loss limit: loss 512.00 reached 500.00")
    assert engine.run_once()["sent"] == [f"firing:account_halted:{acct.pk}"]
    assert smtp.messages[0]["subject"] == "[tradeops FIRING] Account acct-7 halted"
    assert "daily loss limit: loss 512.00 reached 500.00" in smtp.messages[0]["body"]
    acct.resume()
    assert engine.run_once()["sent"] == [f"resolved:account_halted:{acct.pk}"]


def test_worker_and_beat_missing_and_feed_stale(channels, webhook, healthy):
    healthy.delete(heartbeat.WORKERS_KEY)
    heartbeat.write_beat(healthy, 1)
    healthy.hset("md:health", "heartbeat_ms", 1)
    result = engine.run_once()
    assert sorted(result["sent"]) == ["firing:beat_missing", "firing:feed_stale", "firing:worker_missing"]
    plant_fresh_heartbeats(healthy)
    assert sorted(engine.run_once()["sent"]) == ["resolved:beat_missing", "resolved:feed_stale",
                                                 "resolved:worker_missing"]


def test_reject_and_unknown_rates_over_threshold(channels, webhook, healthy, settings):
    signal = make_signal()
    n = settings.ALERTS_RATE_MIN_ORDERS
    for k in range(n):
        status = OrderStatus.REJECTED if k < n // 2 else OrderStatus.FILLED
        make_order(signal=signal, account=make_account(), status=status, reason="NO_MONEY" if k < n // 2 else "")
    make_order(signal=signal, account=make_account(), status=OrderStatus.UNKNOWN)
    assert sorted(engine.run_once()["sent"]) == ["firing:reject_rate", "firing:unknown_rate"]
    by_key = {b["key"]: b for b in webhook.json_bodies()}
    assert "NO_MONEY × 5" in by_key["reject_rate"]["detail"]
    assert by_key["unknown_rate"]["severity"] == "critical"


def test_too_few_orders_are_no_rate(channels, healthy):
    make_order(status=OrderStatus.REJECTED)
    assert engine.run_once()["sent"] == []


def test_a_reconciliation_repair_is_reported(channels, webhook, healthy, settings):
    acct = make_account(name="acct-r", balance_updated_at=timezone.now())
    AuditLog.record("reconciliation", AuditLog.Action.RECONCILE, account=acct, repair="in_doubt_order", order=1)
    assert engine.run_once()["sent"] == ["firing:reconcile_repair"]
    assert "in_doubt_order" in webhook.json_bodies()[0]["detail"] and "acct-r" in webhook.json_bodies()[0]["detail"]
    later = timezone.now() + timedelta(seconds=settings.ALERTS_RATE_WINDOW_S + 1)
    assert engine.run_once(later)["sent"] == ["resolved:reconcile_repair"]


def test_daily_loss_near_the_limit(channels, webhook, healthy):
    acct = make_account(name="acct-loss", daily_loss_limit=Decimal("500"))
    Account.objects.filter(pk=acct.pk).update(balance=Decimal("10000"), equity=Decimal("9580"),
                                              balance_updated_at=timezone.now())
    assert engine.run_once()["sent"] == [f"firing:daily_loss:{acct.pk}"]
    assert "84 % of the limit 500" in webhook.json_bodies()[0]["detail"]
    Account.objects.filter(pk=acct.pk).update(equity=Decimal("9900"))
    assert engine.run_once()["sent"] == [f"resolved:daily_loss:{acct.pk}"]


def test_daily_loss_rule():
    assert daily_loss_near_limit(Decimal("400"), Decimal("500"), 20.0)
    assert not daily_loss_near_limit(Decimal("399.99"), Decimal("500"), 20.0)
    assert not daily_loss_near_limit(Decimal("-50"), Decimal("500"), 20.0)
    assert not daily_loss_near_limit(Decimal("10"), Decimal("0"), 20.0)


def test_a_failing_channel_is_recorded_and_the_others_still_get_it(channels, smtp, telegram, healthy):
    Channel.objects.filter(kind="webhook").update(target="http://127.0.0.1:9/hook")  # nothing listens on 9
    Channel.objects.filter(kind="telegram").update(secret="wrong-token")
    kill_switch(True, "x")
    engine.run_once()
    assert len(smtp.messages) == 1
    failed = {d.channel.kind: d.error for d in Delivery.objects.filter(ok=False)}
    assert failed["webhook"].startswith("webhook: ConnectionError")
    assert failed["telegram"] == "telegram: HTTP 401 " + json.dumps(
        {"ok": False, "error_code": 401, "description": "Unauthorized"})


def test_plan_is_pure_and_dedups():
    from alerts.conditions import Condition

    now = timezone.now()
    c = Condition("k", "t")
    assert [d.kind for d in engine.plan({}, [c], now, 60)] == ["firing"]
    assert engine.plan({"k": (True, now)}, [c], now + timedelta(seconds=59), 60) == []
    assert [d.kind for d in engine.plan({"k": (True, now)}, [c], now + timedelta(seconds=60), 60)] == ["repeat"]
    assert [d.kind for d in engine.plan({"k": (True, now)}, [], now, 60)] == ["resolved"]
    assert engine.plan({"k": (False, now)}, [], now, 60) == []


def test_admin_send_test_alert(admin_client, channels, smtp, webhook, telegram):
    response = admin_client.post("/admin/alerts/channel/", {
        "action": "send_test_alert", "_selected_action": [c.pk for c in channels]}, follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    for c in channels:
        assert f"Test alert delivered to {c.name}." in text
    assert smtp.messages[0]["subject"] == "[tradeops TEST] Test alert from tradeops"
    assert webhook.json_bodies()[0]["status"] == "test" and len(telegram.texts()) == 1
    assert not AlertState.objects.exists()  # a test is outside dedup


def test_admin_channel_form_validates_and_keeps_the_secret_write_only(admin_client):
    response = admin_client.post("/admin/alerts/channel/add/", {
        "name": "bad", "kind": "email", "target": "not-an-address", "enabled": "on"})
    assert "is not an e-mail address" in response.content.decode()
    response = admin_client.post("/admin/alerts/channel/add/", {
        "name": "tg", "kind": "telegram", "target": "-100", "enabled": "on", "base_url": ""})
    assert "needs its bot token" in response.content.decode()
    admin_client.post("/admin/alerts/channel/add/", {
        "name": "hook", "kind": "webhook", "target": "https://example.com/h", "enabled": "on",
        "new_secret": "s3cr3t-value"})
    hook = Channel.objects.get(name="hook")
    assert hook.secret == "s3cr3t-value"
    page = admin_client.get(f"/admin/alerts/channel/{hook.pk}/change/").content.decode()
    assert "s3cr3t-value" not in page
