"""Honest health: /healthz and ``manage.py healthcheck`` are degraded while the kill switch is on,
accounts are halted, the broker-state or feed lag is over its limit, the orders queue backs up or
our clock is off from the broker's; the JSON names the failing checks. The kill switch (and halts)
stay 200 even with ?strict=1: the admin must stay reachable while the operator needs it."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from accounts.models import Account, TradingSwitch
from tests.factories import make_account
from tests.operate.test_healthcheck import now_ms, plant_fresh_heartbeats, run_healthcheck
from dashboard import health

pytestmark = pytest.mark.django_db


@pytest.fixture
def healthy(redis_client):
    plant_fresh_heartbeats(redis_client)
    return redis_client


MONITOR_TOKEN = "health-conditions-monitor-token"


@pytest.fixture(autouse=True)
def monitor_token(settings):
    """The detailed JSON is for monitoring with HEALTH_TOKEN (or staff): these tests read it so."""
    settings.HEALTH_TOKEN = MONITOR_TOKEN


def healthz(client, query=""):
    response = client.get("/healthz" + query, HTTP_AUTHORIZATION=f"Bearer {MONITOR_TOKEN}")
    return response.status_code, response.json()


def test_all_fresh_is_ok(client, healthy):
    code, body = healthz(client)
    assert (code, body["status"], body["failing"]) == (200, "ok", [])


def test_kill_switch_is_degraded_but_never_503(client, healthy):
    TradingSwitch.objects.update_or_create(id=1, defaults=dict(kill_switch=True, reason="broker outage",
                                                               changed_by="alice"))
    code, body = healthz(client)
    assert code == 200 and body["status"] == "degraded" and body["failing"] == ["kill_switch"]
    assert "broker outage" in body["checks"]["kill_switch"] and "alice" in body["checks"]["kill_switch"]
    code, body = healthz(client, "?strict=1")
    assert code == 200 and body["status"] == "degraded"
    exit_code, out = run_healthcheck("--json")
    report = json.loads(out)
    assert exit_code == 0 and report["status"] == "degraded" and report["failing"] == ["kill_switch"]
    assert run_healthcheck("--strict")[0] == 1


def test_halted_accounts_are_named_with_their_reason(client, healthy):
    make_account(name="acct-halted", halted=True, halt_reason="daily loss limit reached",
                 balance_updated_at=timezone.now())
    code, body = healthz(client)
    assert code == 200 and body["failing"] == ["halts"]
    assert "acct-halted: daily loss limit reached" in body["checks"]["halts"]


def test_broker_state_lag(client, healthy):
    acct = make_account(name="acct-lag")
    Account.objects.filter(pk=acct.pk).update(balance_updated_at=timezone.now() - timedelta(minutes=30))
    code, body = healthz(client)
    assert code == 200 and body["failing"] == ["broker_state"]
    assert "oldest broker read" in body["checks"]["broker_state"]
    assert healthz(client, "?strict=1")[0] == 503
    Account.objects.filter(pk=acct.pk).update(balance_updated_at=timezone.now())
    assert healthz(client)[1]["failing"] == []


def test_feed_lag(client, redis_client):
    plant_fresh_heartbeats(redis_client)
    from marketdata import redis_keys

    old = now_ms() - 120_000
    redis_client.hset(redis_keys.health_symbol("EURUSD"), mapping={"last_tick_ms": old, "last_recv_ms": old})
    redis_client.hset(redis_keys.HEALTH, "heartbeat_ms", old)
    code, body = healthz(client)
    assert code == 200 and body["failing"] == ["feed"]


def test_orders_queue_backing_up(client, healthy, settings):
    healthy.lpush("orders", *[b"{}"] * (settings.HEALTH_ORDERS_QUEUE_MAX + 1))
    code, body = healthz(client)
    assert code == 200 and body["failing"] == ["queue"]
    assert f"{settings.HEALTH_ORDERS_QUEUE_MAX + 1} messages waiting" in body["checks"]["queue"]
    healthy.delete("orders")
    assert healthz(client)[1]["failing"] == []


class _DateServer:
    """A real HTTP server whose Date header runs ``offset_s`` ahead of our clock (a broker whose
    clock, or ours, is off)."""

    def __init__(self, offset_s: float):
        offset = offset_s

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response_only(200)
                self.send_header("Date", formatdate(time.time() + offset, usegmt=True))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("offset_s, ok", [(0.0, True), (4.0, False), (-4.0, False)])
def test_clock_against_the_brokers_date_header(client, healthy, settings, offset_s, ok):
    server = _DateServer(offset_s)
    try:
        settings.HEALTH_CLOCK_URL = server.url
        healthy.delete(health.CLOCK_CACHE_KEY)
        code, body = healthz(client)
        assert code == 200 and (body["failing"] == []) is ok, body
        if not ok:
            assert body["checks"]["clock"].startswith("host clock off from the broker's by about " +
                                                      ("+" if offset_s > 0 else "-"))
            assert healthz(client, "?strict=1")[0] == 503
        cached = json.loads(healthy.get(health.CLOCK_CACHE_KEY))
        assert cached["url"] == server.url and abs(cached["offset_s"] - offset_s) < 1.0
    finally:
        server.close()


def test_clock_with_the_broker_unreachable(client, healthy, settings):
    from tests.operate.test_healthcheck import closed_port

    settings.HEALTH_CLOCK_URL = f"http://127.0.0.1:{closed_port()}/"
    healthy.delete(health.CLOCK_CACHE_KEY)
    code, body = healthz(client)
    assert code == 200 and body["failing"] == ["clock"] and "unreadable" in body["checks"]["clock"]
