"""The dashboard: staff only, charts drawn from the database, a bounded number of queries."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from accounts.models import EquitySnapshot
from orders.models import Order, Position
from tests.factories import make_account, make_order, make_signal, make_symbol
from dashboard import data

pytestmark = pytest.mark.django_db


def populate(n_accounts: int, snapshots_per_account: int = 6):
    """n accounts with an equity curve, two symbols, signals, orders and open positions."""
    eur, xau = make_symbol("EURUSD"), make_symbol("XAUUSD", contract_size=Decimal("100"))
    accounts = [make_account(name=f"dash-{i:04d}") for i in range(n_accounts)]
    now = timezone.now()
    EquitySnapshot.objects.bulk_create([
        EquitySnapshot(account=a, at=now - timedelta(seconds=60 * k), balance=Decimal("10000"),
                       equity=Decimal("10000") + Decimal(i % 7) * k)
        for i, a in enumerate(accounts) for k in range(snapshots_per_account)
    ])
    signal = make_signal(symbol=eur, status="dispatched")
    for i, a in enumerate(accounts[:5]):
        make_order(account=a, signal=signal, status="filled",
                   completed_at=signal.created_at + timedelta(seconds=0.25 * (i + 1)))
    make_order(account=accounts[-1], signal=make_signal(symbol=xau, side="SELL"), status="rejected")
    for i, a in enumerate(accounts[:4]):
        Position.objects.create(account=a, symbol=eur if i % 2 else xau, broker_position_id=f"P{i}",
                                side="BUY" if i < 3 else "SELL", volume=Decimal("0.10"),
                                open_price=Decimal("1.08"), opened_at=now, unrealized_pnl=Decimal("-3.5"))
    return accounts


def test_anonymous_is_sent_to_the_login(client):
    for name in ("dashboard", "dashboard-panels"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_non_staff_user_is_refused(client):
    user = get_user_model().objects.create_user("viewer", password="pw-12345-xyz")
    client.force_login(user)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_sees_every_chart_drawn(admin_client, redis_client):
    populate(6)
    html = admin_client.get(reverse("dashboard")).content.decode()
    for panel in ("panel-equity-total", "panel-equity-accounts", "panel-signals", "panel-orders",
                  "panel-exposure", "panel-queues", "panel-feed"):
        assert f'id="{panel}"' in html
    # equity: a path with at least 6 points for the total
    total = re.search(r'id="panel-equity-total".*?<path class="series" d="([^"]+)"', html, re.S).group(1)
    assert total.count("L") >= 5
    # orders and signals: bars; exposure: one bar per symbol
    assert re.search(r'id="panel-orders".*?<rect class="bar"', html, re.S)
    assert re.search(r'id="panel-signals".*?<rect class="bar"', html, re.S)
    exposure = html.split('id="panel-exposure"')[1].split('id="panel-signals"')[0]
    assert exposure.count('<rect class="bar"') == 2 and "EURUSD" in exposure and "XAUUSD" in exposure
    # the latest signals say how their fan-out went: 5 of 5 filled, the last 1.25 s after the
    # signal; the rejected one: 0 of 1, no completion time (a dash)
    latest = html.split("Latest signals")[1]
    assert "5 / 5" in latest and ">1.25<" in latest and "0 / 1" in latest and ">–<" in latest
    # the feed is not running in tests: the page says so instead of failing
    assert "The feed is not running" in html
    assert 'href="/dashboard/"' in html or reverse("dashboard") in html


def test_panels_partial_and_windows(admin_client):
    populate(3)
    for window in ("15m", "1h", "6h", "24h", "bogus"):
        response = admin_client.get(reverse("dashboard-panels"), {"window": window})
        assert response.status_code == 200
        assert b'<svg class="chart' in response.content and b"<html" not in response.content


def test_admin_index_and_header_link_to_the_dashboard(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="dashboard-link"' in html and 'id="dashboard-banner"' in html
    assert "SIMULATION" in html


def test_query_count_is_bounded_with_200_accounts(admin_client, django_assert_max_num_queries):
    populate(200, snapshots_per_account=3)
    admin_client.get(reverse("dashboard"))  # warm-up: session, content types
    # 13 + the prop-firm panel (guarded accounts, their profiles, today's budgets, the guard's alerts)
    # + the latest signals' missed pairs by cause (orders.Delivery) + the tick-to-trade panel (the
    # latest signals' hop documents) + the accounts not trading (at most 20 rows), one query each
    with django_assert_max_num_queries(20):
        response = admin_client.get(reverse("dashboard"))
    assert response.status_code == 200


def test_total_equity_sums_accounts_per_bucket():
    a, b = make_account(), make_account()
    now = timezone.now().replace(second=30, microsecond=0)
    EquitySnapshot.objects.bulk_create([
        EquitySnapshot(account=a, at=now - timedelta(minutes=1), balance=1, equity=Decimal("100")),
        EquitySnapshot(account=b, at=now - timedelta(minutes=1), balance=1, equity=Decimal("50")),
        EquitySnapshot(account=a, at=now, balance=1, equity=Decimal("110")),
        EquitySnapshot(account=b, at=now, balance=1, equity=Decimal("40")),
    ])
    result = data.equity_curves(now - timedelta(minutes=5), bucket_s=60, top_n=1)
    assert [e for _, e in result.total] == [150.0, 150.0]
    assert result.total[1][0] - result.total[0][0] == 60
    # top mover: a moved +10, b moved -10; tie broken by id → a
    assert list(result.accounts) == [a.name]


def test_partial_newest_bucket_is_dropped_from_the_total():
    accounts = [make_account() for _ in range(10)]
    now = timezone.now().replace(second=30, microsecond=0)
    rows = [EquitySnapshot(account=x, at=now - timedelta(minutes=1), balance=1, equity=100) for x in accounts]
    rows += [EquitySnapshot(account=x, at=now, balance=1, equity=100) for x in accounts[:3]]  # sync half way
    EquitySnapshot.objects.bulk_create(rows)
    result = data.equity_curves(now - timedelta(minutes=5), bucket_s=60, top_n=0)
    assert [e for _, e in result.total] == [1000.0]


def test_counts_by_status_fill_empty_buckets_with_zero():
    signal = make_signal()
    order = make_order(signal=signal, status="filled")
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    make_order(signal=signal, status="rejected")
    now = timezone.now()
    series = data.counts_by_status(Order._meta.db_table, now - timedelta(minutes=10), now, 60)
    assert sum(series.by_status["filled"]) == 1 and sum(series.by_status["rejected"]) == 1
    assert len(series.buckets) in (10, 11) and series.total == 2
    assert series.by_status["filled"].index(1) < series.by_status["rejected"].index(1)


def test_healthz_reports_every_check(admin_client, redis_client):
    client = admin_client  # the detailed answer is for staff (tests/security/test_healthz.py)
    response = client.get("/healthz")
    body = response.json()
    assert set(body["checks"]) == {"database", "redis", "feed", "beat", "workers", "analysis", "kill_switch",
                                   "halts", "broker_state", "queue", "clock"}
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"] == "ok"
    # nothing else runs in the test: degraded, but the web process itself is fine → 200
    assert response.status_code == 200 and body["status"] == "degraded"
    assert client.get("/healthz?strict=1").status_code == 503
    assert client.get("/healthz?checks=database,redis").json()["status"] == "ok"
    assert client.get("/healthz?checks=nope").status_code == 400


def test_queue_depth_counts_every_priority_list(redis_client):
    from tradeops.celery import Priority, app
    from dashboard.data import queue_depths

    app.send_task("orders.link_fills", args=[[1]], queue="orders", priority=Priority.FOLLOW_UP)
    app.send_task("orders.place_orders", args=[1, [1]], queue="orders")
    assert redis_client.llen("orders") == 1  # the follow-up waits in its own priority list
    assert queue_depths(redis_client)["orders"] == 2


def test_an_account_halted_for_its_token_says_so_on_the_dashboard(admin_client):
    from accounts.states import HaltCause, Restriction
    from tests.factories import make_account

    revoked = make_account(name="ta-revoked", api="trader", email="", password="", trader_api_token="tok-secret-1")
    revoked.halt("token revoked or expired", cause=HaltCause.TOKEN)
    ro = make_account(name="ta-readonly", api="trader", email="", password="", trader_api_token="tok-secret-2")
    ro.restrict(Restriction.MONITOR_ONLY, "read-only token")
    html = admin_client.get(reverse("dashboard")).content.decode()
    assert "ta-revoked" in html and "token revoked or expired" in html
    assert "ta-readonly" in html and "monitor only" in html
    assert "tok-secret" not in html
