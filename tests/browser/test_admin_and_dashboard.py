"""What a trader does on day one, in a real browser: log in, halt an account, watch the dashboard."""

from __future__ import annotations

import math
import re
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.models import Account, EquitySnapshot
from marketdata import redis_keys
from orders.models import Order, Position, idempotency_key_for
from signals.models import Signal
from tests.factories import make_account, make_symbol

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pass-7431"


@pytest.fixture
def trader(transactional_db):
    return get_user_model().objects.create_superuser("trader", "trader@example.com", PASSWORD)


def log_in(page, live_server):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "trader")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard-link")


def populate_a_trading_hour(redis_client):
    """A believable hour: 12 accounts with drifting equity, signals and orders every few minutes,
    open positions on three symbols, and a running feed's health record."""
    now = timezone.now()
    symbols = [make_symbol(n) for n in ("EURUSD", "XAUUSD", "BTCUSD", "US500")]
    accounts = [make_account(name=f"demo-{i:03d}") for i in range(1, 13)]
    snaps = []
    for i, a in enumerate(accounts):
        base = 10000 * (1 + i % 4)
        for k in range(60):
            drift = (k * (3 if i % 3 else -2)) + 40 * math.sin((k + i * 7) / 6)
            snaps.append(EquitySnapshot(account=a, at=now - timedelta(minutes=59 - k),
                                        balance=Decimal(base), equity=Decimal(base + round(drift, 2))))
    EquitySnapshot.objects.bulk_create(snaps)
    statuses = ["filled", "filled", "filled", "rejected", "skipped"]
    for m in range(0, 60, 3):
        sym = symbols[m % 4]
        sig = Signal.objects.create(symbol=sym, side="BUY" if m % 2 else "SELL", strength=Decimal("0.7"),
                                    status="dispatched", features={"ratio": 4.0})
        Signal.objects.filter(pk=sig.pk).update(created_at=now - timedelta(minutes=m))
        for j, a in enumerate(accounts[: 3 + m % 5]):
            o = Order.objects.create(account=a, signal=sig, symbol=sym, side=sig.side, volume=Decimal("0.10"),
                                     idempotency_key=idempotency_key_for(sig.pk, a.pk),
                                     status=statuses[(j + m) % len(statuses)])
            Order.objects.filter(pk=o.pk).update(created_at=now - timedelta(minutes=m))
    for i, a in enumerate(accounts[:9]):
        Position.objects.create(account=a, symbol=symbols[i % 3], broker_position_id=f"W{i}",
                                side="BUY" if i % 3 != 2 else "SELL", volume=Decimal("0.20"),
                                open_price=Decimal("1.08512"), opened_at=now - timedelta(minutes=i),
                                unrealized_pnl=Decimal(str(12.5 - 4 * i)))
    at = int(time.time() * 1000)
    redis_client.hset(redis_keys.HEALTH, mapping={
        "heartbeat_ms": at, "transport": "websocket", "connection": "connected", "reconnects": 1, "gaps": 1,
        "ingest_rate": 95.0})
    for i, s in enumerate(symbols):
        redis_client.sadd(redis_keys.SYMBOLS, s.name)
        redis_client.hset(redis_keys.health_symbol(s.name), mapping={
            "last_tick_ms": at - 40 - 15 * i, "last_recv_ms": at - 200 * i, "ticks": 5000 + i, "lag_ms": 3 + 9 * i})
    return accounts


def test_log_in_and_halt_an_account_with_the_action(page, live_server, trader):
    make_account(name="alpha")
    target = make_account(name="bravo")
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/accounts/account/")
    row = page.locator("#result_list tbody tr", has_text="bravo")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "halt_accounts")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    assert "1 account(s) halted" in page.locator(".messagelist").inner_text()
    # the changelist shows it halted (the boolean icon) with the reason
    row = page.locator("#result_list tbody tr", has_text="bravo")
    assert "halted: halted from the admin by trader" in row.locator("td.field-state").inner_text()
    target.refresh_from_db()
    assert target.halted and not Account.objects.get(name="alpha").halted


def test_dashboard_draws_the_charts(page, live_server, trader, redis_client, artifacts):
    populate_a_trading_hour(redis_client)
    log_in(page, live_server)
    page.click("#dashboard-link")
    page.wait_for_selector("#panel-equity-total svg.chart")
    assert page.locator(".dash-window a.active").inner_text() == "15m"  # the default window
    page.click(".dash-window a[data-window='1h']")
    page.wait_for_url("**/dashboard/?window=1h")
    page.wait_for_selector("#panel-equity-total svg.chart")
    # equity: the total curve and one curve per top account, each a real path
    total = page.locator("#panel-equity-total path.series")
    assert total.count() == 1
    assert len(re.findall(r"L", total.get_attribute("d"))) >= 50
    curves = page.locator("#panel-equity-accounts path.series")
    assert curves.count() == 8
    # signals and orders: stacked bars with a height
    for panel in ("#panel-signals", "#panel-orders"):
        bars = page.locator(f"{panel} rect.bar")
        assert bars.count() >= 15
        assert float(bars.first.get_attribute("height")) > 0
    # exposure: one bar per symbol with open positions; feed lag: one per symbol
    assert page.locator("#panel-exposure rect.bar").count() == 3
    assert page.locator("#panel-feed rect.bar").count() == 4
    assert page.locator("#panel-queues rect.bar").count() == 3
    # the charts are actually laid out (not zero-sized)
    box = page.locator("#panel-equity-total svg.chart").bounding_box()
    assert box["width"] > 600 and box["height"] > 150
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

    # auto-refresh swaps the panels in place: a new signal shows up without reloading
    Signal.objects.create(symbol=make_symbol("EURUSD"), side="BUY", strength=Decimal("0.9"), status="new")
    page.wait_for_function(
        "() => document.querySelector('#panel-queues table') && "
        "document.querySelector('#panel-queues tbody tr td:nth-child(5)').textContent.trim() === 'new'",
        timeout=15_000,
    )
    assert "updated" in page.locator("#dash-refresh").inner_text()


def test_dashboard_requires_a_login(page, live_server, transactional_db):
    page.goto(f"{live_server.url}/dashboard/")
    assert "/admin/login/" in page.url
