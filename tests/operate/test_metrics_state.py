"""The state part of the web's /metrics (read from PostgreSQL and Redis at scrape time), and the
access rule, in-process: each family carries the numbers the rows and keys hold."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.utils import timezone
from prometheus_client import generate_latest

from accounts.models import Account, AuditLog, TradingSwitch
from marketdata import redis_keys
from orders.broker import BUCKET_KEY
from tests.factories import make_account, make_order, make_signal
from tests.operate.test_metrics import sample
from dashboard.metrics import StateCollector
from tradeops import metrics

pytestmark = pytest.mark.django_db


def scrape() -> str:
    return generate_latest(metrics.registry(StateCollector())).decode()


def test_state_families(redis_client, settings):
    acct = make_account(name="acct-m", daily_loss_limit=Decimal("500"))
    Account.objects.filter(pk=acct.pk).update(balance=Decimal("10000"), equity=Decimal("9900"),
                                              balance_updated_at=timezone.now())
    signal = make_signal()
    make_order(account=acct, signal=signal, status="filled")
    make_order(account=make_account(), signal=signal, status="rejected", reason="NO_MONEY")
    make_order(account=make_account(), signal=signal, status="skipped", reason="kill_switch")
    make_order(account=make_account(), signal=signal, status="unknown")
    AuditLog.record("reconciliation", AuditLog.Action.RECONCILE, account=acct, repair="in_doubt_order")
    TradingSwitch.objects.update_or_create(id=1, defaults=dict(kill_switch=True, reason="x"))
    now_ms = int(time.time() * 1000)
    redis_client.sadd(redis_keys.SYMBOLS, "EURUSD")
    redis_client.hset(redis_keys.HEALTH, mapping={"heartbeat_ms": now_ms, "malformed": 4})
    redis_client.hset(redis_keys.health_symbol("EURUSD"), mapping={
        "last_tick_ms": now_ms - 100, "last_recv_ms": now_ms, "ticks": 10, "lag_ms": 100, "malformed": 3})
    redis_client.lpush("orders", b"{}", b"{}")
    redis_client.hset(BUCKET_KEY.format(credential="abc123"), mapping={"tokens": "0", "ts": str(now_ms)})

    text = scrape()
    assert sample(text, "tradeops_orders_last_24h", status="rejected", reason="NO_MONEY") == 1
    assert sample(text, "tradeops_orders_last_24h", status="skipped", reason="kill_switch") == 1
    assert sample(text, "tradeops_rejects_last_24h", code="NO_MONEY") == 1
    assert sample(text, "tradeops_orders_unknown_outcome") == 1
    assert sample(text, "tradeops_reconcile_repairs_last_24h", repair="in_doubt_order") == 1
    assert sample(text, "tradeops_account_equity", account="acct-m", currency="USD") == 9900
    assert sample(text, "tradeops_account_daily_loss_headroom", account="acct-m") == 400
    assert sample(text, "tradeops_account_daily_loss_limit", account="acct-m") == 500
    assert sample(text, "tradeops_kill_switch") == 1
    assert sample(text, "tradeops_feed_lag_seconds", symbol="EURUSD") == pytest.approx(0.1)
    assert sample(text, "tradeops_feed_malformed_frames_total", symbol="EURUSD") == 3
    assert sample(text, "tradeops_queue_depth", queue="orders") == 2
    used = sample(text, "tradeops_rate_budget_used_ratio", credential="abc123")
    assert 0.9 < used <= 1.0


def test_a_redis_outage_drops_only_the_redis_families(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = settings.BROKER_REDIS_URL = "redis://127.0.0.1:1/0"
    make_account(name="still-here")
    text = scrape()
    assert "tradeops_kill_switch" in text and "tradeops_queue_depth{" not in text


def test_access_rule(settings):
    settings.METRICS_TOKEN = "t0ken"
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert metrics.allowed("10.1.2.3", None)
    assert not metrics.allowed("192.168.1.1", None)
    assert metrics.allowed("192.168.1.1", "Bearer t0ken")
    assert not metrics.allowed("192.168.1.1", "Bearer t0ken2")
    assert not metrics.allowed("not-an-ip", "Basic t0ken")
    settings.METRICS_TOKEN = ""
    assert not metrics.allowed("192.168.1.1", "Bearer ")


def test_endpoint_labels_are_bounded():
    assert metrics.endpoint_of("/mtr-api/3f1c2d4e-aaaa-bbbb-cccc-123456789012/position/open") == \
        "/mtr-api/{id}/position/open"
    assert metrics.endpoint_of("/mtr-api/abc/positions/12345?x=1") == "/mtr-api/abc/positions/{id}"
