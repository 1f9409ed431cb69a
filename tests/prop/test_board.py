"""The dashboard's prop-firm panel: headroom bars per account (amber / red) and the guard's alerts."""

from decimal import Decimal as D

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditLog
from prop import board, state
from prop.models import DailyUsage, RuleProfile, RuleState
from tests.factories import make_account

pytestmark = pytest.mark.django_db


def test_levels():
    assert board.level(D("49.9")) == "ok" and board.level(D("50")) == "amber" and board.level(D("80")) == "red"
    assert board.level(D("75"), buffer_pct=D("25")) == "red"  # inside the close-only buffer


def test_bars_per_account_and_alerts_on_the_dashboard(admin_client):
    profile = RuleProfile.objects.create(name="Board firm", firm="B", daily_loss_amount=D("500"),
                                         max_lots_per_day=D("10"), max_modifications_per_day=100)
    calm, tense = make_account(name="calm", rule_profile=profile), make_account(name="tense", rule_profile=profile)
    RuleState.objects.create(account=calm, headroom={"daily_loss_limit": {
        "limit": "500", "floor": "9500", "headroom": "450", "used_pct": "10.0"}})
    RuleState.objects.create(account=tense, close_only=True, headroom={"daily_loss_limit": {
        "limit": "500", "floor": "9500", "headroom": "60", "used_pct": "88.0"}})
    ar = state.rules_for([tense], timezone.now())[tense.pk]
    DailyUsage.objects.create(account=tense, day=ar.day.day, day_start=ar.day.start, lots=D("6"), modifications=7)
    AuditLog.record("prop.guard", AuditLog.Action.FIRM_RULE, account=tense, rule="daily_loss_limit",
                    positions_closed=2)

    rows = board.headroom_rows()
    assert [r["account"] for r in rows] == ["tense", "calm"]  # closest to a limit first
    bars = {b["label"]: b for b in rows[0]["bars"]}
    assert bars["Daily loss"]["level"] == "red" and bars["Lots"]["level"] == "amber"
    assert bars["Lots"]["used_pct"] == 60.0 and bars["Modifications"]["level"] == "ok"
    assert {b["level"] for b in rows[1]["bars"]} == {"ok"}

    html = admin_client.get(reverse("dashboard")).content.decode()
    assert 'id="panel-prop"' in html and "panel-alert" in html
    assert "hbar-red" in html and "hbar-amber" in html and "60 left of 500" in html
    assert "Firm rule: flattened and halted" in html and "2 position(s) closed" in html
