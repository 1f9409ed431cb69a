"""The Content-Security-Policy holds in a real browser: the admin and the dashboard work under it
with no violation and no console error."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.factories import make_account, make_symbol

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "csp-pass-5820"
# Every page a trader opens on day one, the forms with widgets (filter_horizontal, date pickers) included.
PAGES = (
    "/admin/", "/admin/accounts/account/", "/admin/accounts/account/add/", "/admin/accounts/account/{pk}/change/",
    "/admin/accounts/auditlog/", "/admin/signals/strategyconfig/add/", "/admin/marketdata/symbol/",
    "/admin/orders/order/", "/admin/django_celery_beat/periodictask/add/", "/admin/auth/user/add/",
    "/dashboard/", "/dashboard/?window=1h",
)


def test_admin_and_dashboard_pass_the_csp_without_console_errors(page, live_server, redis_client):
    get_user_model().objects.create_superuser("csp", "csp@example.com", PASSWORD)
    make_symbol("EURUSD")
    account = make_account(name="alpha")
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => "
        "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber));")
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "csp")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard-link")
    for path in PAGES:
        response = page.goto(live_server.url + path.format(pk=account.pk))
        assert response.status == 200, path
        assert "default-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("networkidle")
    # the dashboard's own script ran under the policy: it swaps the panels in place
    page.wait_for_function("() => /updated/.test(document.querySelector('#dash-refresh').textContent)",
                           timeout=20_000)
    assert problems == [], "\n".join(problems)
