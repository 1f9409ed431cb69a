"""Rule profiles: the migration's default and examples, validation, the admin form."""

import json
from datetime import time
from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError

from prop.fanout import owner_order
from prop.models import Owner, RuleProfile, StrategyOwner
from signals.models import StrategyConfig
from tests.factories import make_account

pytestmark = pytest.mark.django_db


def test_default_profile_is_todays_behaviour():
    RuleProfile.objects.filter(is_default=True).delete()  # recreated with the migration's values
    d = RuleProfile.default()
    assert d.is_default and d.name == "tradeops default"
    assert (d.daily_loss_basis, d.reset_time, d.reset_timezone) == ("balance", time(0), "UTC")
    assert d.daily_loss_pct is None and d.daily_loss_amount is None  # the account's own daily_loss_limit
    assert d.close_only_buffer_pct == 0 and d.flatten_margin_pct == 0


def test_examples_are_labelled_with_their_date(seeded):
    examples = list(RuleProfile.objects.filter(is_example=True))
    assert len(examples) >= 3
    for ex in examples:
        ex.full_clean()
        assert ex.describes_date is not None and "example" in ex.name.lower()
        assert "example" in str(ex).lower() and str(ex.describes_date) in str(ex)


def test_only_one_default():
    RuleProfile.default()
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        RuleProfile.objects.create(name="second default", is_default=True)


@pytest.mark.parametrize("fields, bad_field", [
    (dict(reset_timezone="Mars/Olympus"), "reset_timezone"),
    (dict(daily_loss_pct=D("5"), daily_loss_amount=D("500")), "daily_loss_amount"),
    (dict(max_loss_mode="static"), "max_loss_pct"),
    (dict(max_loss_pct=D("10")), "max_loss_mode"),
    (dict(trading_start=time(8)), "trading_end"),
    (dict(close_only_buffer_pct=D("5"), flatten_margin_pct=D("10")), "flatten_margin_pct"),
    (dict(daily_loss_pct=D("0")), "daily_loss_pct"),
    (dict(daily_loss_pct=D("150")), "daily_loss_pct"),
])
def test_validation(fields, bad_field):
    p = RuleProfile(name="x", **fields)
    with pytest.raises(ValidationError) as exc:
        p.full_clean()
    assert bad_field in exc.value.message_dict


def test_account_owner_and_profile(seeded):
    owner = Owner.objects.create(name="Jane Trader", contact="jane@example.com")
    profile = RuleProfile.objects.get(name__startswith="Example B")
    account = make_account(owner=owner, rule_profile=profile, program_phase="evaluation",
                           initial_balance=D("100000"))
    account.refresh_from_db()
    assert account.owner == owner and account.rule_profile == profile
    assert list(owner.accounts.all()) == [account]


def test_admin_edits_a_profile(admin_client, seeded):
    profile = RuleProfile.objects.get(name__startswith="Example B")
    url = f"/admin/prop/ruleprofile/{profile.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and b"current rules" in page.content
    from django.forms.models import model_to_dict

    data = {k: ("" if v is None else v) for k, v in model_to_dict(profile).items()}
    data.update(reset_timezone="Nowhere/Land")
    resp = admin_client.post(url, data)
    assert resp.status_code == 200 and b"Unknown IANA time zone" in resp.content
    data.update(reset_timezone="Asia/Tokyo", max_modifications_per_day="1500")
    resp = admin_client.post(url, data)
    assert resp.status_code == 302, resp.content[:2000]
    profile.refresh_from_db()
    assert profile.reset_timezone == "Asia/Tokyo" and profile.max_modifications_per_day == 1500


def test_strategy_owners_are_edited_in_order_on_the_strategy_configuration(admin_client):
    al, bea = Owner.objects.create(name="Al"), Owner.objects.create(name="Bea")
    resp = admin_client.post("/admin/signals/strategyconfig/add/", {
        "name": "volume-surge-scalper", "symbol": "", "enabled": "on", "params": json.dumps({}),
        "owners-TOTAL_FORMS": "2", "owners-INITIAL_FORMS": "0",
        "owners-0-owner": str(bea.pk), "owners-0-position": "1",
        "owners-1-owner": str(al.pk), "owners-1-position": "2",
    })
    assert resp.status_code == 302, resp.content[:3000]
    config = StrategyConfig.objects.get()
    assert list(StrategyOwner.objects.filter(strategy=config).values_list("owner__name", flat=True)) == ["Bea", "Al"]
    assert owner_order(symbol_id=999) == [bea.pk, al.pk]
