"""The admin's rough edges a new user hit, fixed and seen in a real browser at 1440 px: symbols by
name, 24-hour times with seconds, read-only history pages, an accounts list that fits the screen,
the audit log split into people and system, a favicon."""

from __future__ import annotations

from datetime import datetime, UTC
from decimal import Decimal

import pytest
import requests

from accounts.models import AuditLog
from orders.models import Order, idempotency_key_for
from signals.models import Signal
from tests.browser.test_admin_and_dashboard import log_in, trader  # noqa: F401 - trader is a fixture
from tests.factories import make_account, make_symbol

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def make_history():
    symbol = make_symbol("EURUSD")
    account = make_account(name="history-acct")
    signal = Signal.objects.create(symbol=symbol, side="SELL", strength=Decimal("0.7"), status="dispatched",
                                   features={})
    at = datetime(2026, 3, 4, 15, 4, 5, tzinfo=UTC)
    Signal.objects.filter(pk=signal.pk).update(created_at=at)
    order = Order.objects.create(account=account, signal=signal, symbol=symbol, side="SELL", volume=Decimal("0.10"),
                                 idempotency_key=idempotency_key_for(signal.pk, account.pk), status="filled")
    Order.objects.filter(pk=order.pk).update(created_at=at)
    return order


def test_orders_show_symbol_names_24h_times_and_no_save_or_delete(page, live_server, trader):  # noqa: F811
    order = make_history()
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/orders/order/")
    row = page.locator("#result_list tbody tr").first
    assert "2026-03-04 15:04:05" in row.inner_text()
    assert "EURUSD" in row.locator("td.field-symbol").inner_text()
    page.goto(f"{live_server.url}/admin/orders/order/{order.pk}/change/")
    body = page.locator("#content").inner_text()
    assert "SELL EURUSD @ 2026-03-04 15:04:05" in body, body[:500]
    assert page.locator("input[name=_save]").count() == 0
    assert page.locator("a.deletelink").count() == 0
    page.goto(f"{live_server.url}/admin/signals/signal/{order.signal_id}/change/")
    assert page.locator("input[name=_save]").count() == 0 and page.locator("a.deletelink").count() == 0
    # no "Delete selected" action either
    page.goto(f"{live_server.url}/admin/orders/order/")
    assert page.locator("select[name=action] option[value=delete_selected]").count() == 0


def test_accounts_list_fits_a_1440_px_screen(page, live_server, trader):  # noqa: F811
    for i in range(15):
        acct = make_account(name=f"prop-firm-challenge-account-{i:03d}",
                            email=f"a.very.long.trader.address.{i}@some-prop-firm.example.com",
                            system_uuid=f"5b0f7a3e-1111-4c2a-9d3e-{i:012d}")
        if i % 3 == 0:
            acct.halt("daily loss limit: loss 512.00 reached 500.00 (equity read at 2026-03-04 15:04:05)")
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/accounts/account/")
    page.wait_for_selector("#result_list")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1440, f"the accounts list is {width} px wide"
    assert "halted: daily loss limit" in page.locator("#result_list").inner_text()


def test_audit_log_filters_people_from_the_system(page, live_server, trader):  # noqa: F811
    acct = make_account(name="audited")
    AuditLog.record(trader, AuditLog.Action.LIMIT_CHANGE, account=acct, changes={"max_open_positions": ["5", "3"]})
    for _ in range(5):
        AuditLog.record("reconciliation", AuditLog.Action.RECONCILE, account=acct, repair="fill_linked")
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/accounts/auditlog/")
    # the limit change, five reconciliation repairs and the admin login itself (audited)
    assert page.locator("#result_list tbody tr").count() == 7
    page.click("#changelist-filter a:text-is('People')")
    page.wait_for_url("**by=people**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2 and all("trader" in rows.nth(i).inner_text() for i in range(2))
    assert "Reconciliation repair" not in page.locator("#result_list").inner_text()
    page.click("#changelist-filter a:text-is('System')")
    page.wait_for_url("**by=system**")
    assert page.locator("#result_list tbody tr").count() == 5


def test_favicon(page, live_server, trader):  # noqa: F811
    log_in(page, live_server)
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href and href.endswith(".svg")
    icon = requests.get(live_server.url + href, timeout=10)
    assert icon.status_code == 200 and b"<svg" in icon.content
    legacy = requests.get(live_server.url + "/favicon.ico", timeout=10, allow_redirects=False)
    assert legacy.status_code == 301 and legacy.headers["Location"] == href
