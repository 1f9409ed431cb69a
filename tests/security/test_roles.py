"""Roles are groups with permissions; the admin enforces them; the demo seeds one user per role."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from accounts.models import Account, TradingSwitch
from accounts.roles import OPERATOR, RISK_MANAGER, VIEWER
from tests.factories import make_account

pytestmark = pytest.mark.django_db


def user_in(role: str):
    user = get_user_model().objects.create_user(f"u-{role.replace(' ', '-').lower()}", password="x-pass-93817",
                                                is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def run_action(client, action, account):
    return client.post("/admin/accounts/account/", {"action": action, "_selected_action": [account.pk]})


def test_the_role_groups_exist_after_migrate():
    assert set(Group.objects.values_list("name", flat=True)) >= {VIEWER, OPERATOR, RISK_MANAGER}


def test_a_viewer_sees_but_cannot_halt_edit_or_kill():
    account = make_account(name="alpha")
    client = user_in(VIEWER)
    assert client.get("/admin/accounts/account/").status_code == 200
    assert client.get("/dashboard/").status_code == 200
    run_action(client, "halt_accounts", account)
    account.refresh_from_db()
    assert not account.halted
    page = client.get(f"/admin/accounts/account/{account.pk}/change/")
    assert page.status_code == 200 and b'name="risk_per_trade_pct"' not in page.content
    assert client.post(f"/admin/accounts/account/{account.pk}/change/", {"risk_per_trade_pct": "5"}).status_code == 403
    TradingSwitch.get()
    assert client.post("/admin/accounts/tradingswitch/1/change/", {"kill_switch": "on", "reason": "x"}).status_code == 403
    assert not TradingSwitch.get().kill_switch


def test_an_operator_halts_resumes_and_uses_the_kill_switch_but_edits_no_limit():
    account = make_account(name="alpha")
    client = user_in(OPERATOR)
    run_action(client, "halt_accounts", account)
    account.refresh_from_db()
    assert account.halted
    run_action(client, "resume_accounts", account)
    account.refresh_from_db()
    assert not account.halted
    TradingSwitch.get()
    response = client.post("/admin/accounts/tradingswitch/1/change/", {"kill_switch": "on", "reason": "drill"})
    assert response.status_code == 302 and TradingSwitch.get().kill_switch
    assert client.post(f"/admin/accounts/account/{account.pk}/change/", {"risk_per_trade_pct": "5"}).status_code == 403


def test_a_risk_manager_edits_limits_and_strategy_but_cannot_halt_or_kill():
    account = make_account(name="alpha")
    client = user_in(RISK_MANAGER)
    page = client.get(f"/admin/accounts/account/{account.pk}/change/")
    assert b'name="risk_per_trade_pct"' in page.content
    assert b'name="halted"' not in page.content  # halting is the operator's
    # broker identity and credentials are the administrators'
    assert b'name="new_password"' not in page.content and b'name="platform_url"' not in page.content
    run_action(client, "halt_accounts", account)
    account.refresh_from_db()
    assert not account.halted
    assert client.get("/admin/signals/strategyconfig/add/").status_code == 200
    assert client.get("/admin/accounts/tradingswitch/").status_code == 200  # may look
    TradingSwitch.get()
    assert client.post("/admin/accounts/tradingswitch/1/change/", {"kill_switch": "on", "reason": "x"}).status_code == 403


def test_seed_demo_creates_one_user_per_role():
    out = StringIO()
    call_command("seed_demo", "--accounts", "0", "--no-superuser", "--no-symbols", "--no-strategy", stdout=out)
    users = get_user_model().objects.filter(username__startswith="demo-")
    assert {u.username: [g.name for g in u.groups.all()] for u in users} == {
        "demo-viewer": [VIEWER], "demo-operator": [OPERATOR], "demo-risk": [RISK_MANAGER]}
    assert all(u.is_staff and not u.is_superuser and u.has_usable_password() for u in users)
    again = StringIO()
    call_command("seed_demo", "--accounts", "0", "--no-superuser", "--no-symbols", "--no-strategy", stdout=again)
    assert "demo user" not in again.getvalue() and get_user_model().objects.count() == 3
    assert Account.objects.count() == 0
