import re

import pytest
from django.urls import reverse

from accounts.models import Account, AuditLog
from orders.models import Position, Trade
from tests.factories import make_account, make_order

pytestmark = pytest.mark.django_db

MODELS = [
    ("accounts", "account"), ("accounts", "auditlog"), ("accounts", "tradingswitch"),
    ("marketdata", "symbol"), ("signals", "signal"), ("signals", "strategyconfig"),
    ("orders", "order"), ("orders", "position"), ("orders", "trade"),
    ("django_celery_beat", "periodictask"),
]


@pytest.fixture
def populated():
    from django.utils import timezone

    order = make_order()
    position = Position.objects.create(
        account=order.account, symbol=order.symbol, broker_position_id="W1", side="BUY", volume="0.10",
        open_price="1.1", opened_at=timezone.now(),
    )
    Trade.objects.create(account=order.account, symbol=order.symbol, position=position, broker_trade_id="T1",
                         kind="open", side="BUY", volume="0.10", price="1.1", executed_at=timezone.now())
    AuditLog.record("tester", AuditLog.Action.LIMIT_CHANGE, account=order.account, changes={})
    from accounts.models import TradingSwitch
    from signals.models import StrategyConfig

    TradingSwitch.get()
    StrategyConfig.objects.create()
    return order


@pytest.mark.parametrize("app, model", MODELS)
def test_superuser_opens_each_changelist_and_change_page(admin_client, populated, app, model):
    changelist = admin_client.get(reverse(f"admin:{app}_{model}_changelist"))
    assert changelist.status_code == 200
    from django.apps import apps

    obj = apps.get_model(app, model).objects.first()
    if obj is not None:
        change = admin_client.get(reverse(f"admin:{app}_{model}_change", args=[obj.pk]))
        assert change.status_code == 200


def test_account_page_never_shows_credentials(admin_client):
    account = make_account(password="pa55-word-xyz", trading_api_token="token-xyz-987")
    page = admin_client.get(reverse("admin:accounts_account_change", args=[account.pk])).content.decode()
    assert "pa55-word-xyz" not in page and "token-xyz-987" not in page
    assert "password set" in page


def test_halt_action_halts_with_reason_and_audit(admin_client):
    a, b = make_account(), make_account()
    response = admin_client.post(
        reverse("admin:accounts_account_changelist"),
        {"action": "halt_accounts", "_selected_action": [a.pk, b.pk]},
        follow=True,
    )
    assert response.status_code == 200
    for account in Account.objects.filter(pk__in=[a.pk, b.pk]):
        assert account.halted and "admin" in account.halt_reason
    assert AuditLog.objects.filter(action=AuditLog.Action.HALT).count() == 2


def test_creating_account_without_password_is_refused(admin_client):
    response = admin_client.post(reverse("admin:accounts_account_add"), {
        "name": "nopass", "mode": "simulation", "enabled": "on", "platform_url": "http://127.0.0.1:8900",
        "broker_id": "0", "email": "x@example.com", "currency": "USD", "risk_per_trade_pct": "0.5",
        "max_open_positions": "5", "max_volume_per_symbol": "10", "daily_loss_limit": "500",
    })
    assert response.status_code == 200
    assert re.search(r"needs its broker password", response.content.decode())
    assert not Account.objects.filter(name="nopass").exists()


def test_risk_limit_change_is_audited(admin_client):
    account = make_account()
    url = reverse("admin:accounts_account_change", args=[account.pk])
    data = {
        "name": account.name, "mode": "simulation", "enabled": "on", "platform_url": account.platform_url,
        "broker_id": "0", "email": account.email, "currency": "USD", "risk_per_trade_pct": "1.250",
        "max_open_positions": "5", "max_volume_per_symbol": "10", "daily_loss_limit": "500", "halt_reason": "",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = AuditLog.objects.get(action=AuditLog.Action.LIMIT_CHANGE, account=account)
    assert entry.details["changes"]["risk_per_trade_pct"][1] == "1.250"
    assert Account.objects.get(pk=account.pk).password == "s3cret-pass"  # empty field kept the password


def test_a_trader_api_account_is_added_with_a_write_only_token(admin_client):
    token = "mtt_very-secret-token-value-123"
    base = {"name": "ta-1", "api": "trader", "mode": "simulation", "enabled": "on",
            "platform_url": "https://trader-api.match-trader.com", "broker_id": "", "email": "", "currency": "USD",
            "risk_per_trade_pct": "0.5", "max_open_positions": "5", "max_volume_per_symbol": "10",
            "daily_loss_limit": "500"}
    response = admin_client.post(reverse("admin:accounts_account_add"), base)
    assert response.status_code == 200 and "needs its token" in response.content.decode()
    response = admin_client.post(reverse("admin:accounts_account_add"), dict(base, new_trader_api_token=token))
    assert response.status_code == 302, response.content.decode()[:2000]
    account = Account.objects.get(name="ta-1")
    assert account.api == "trader" and account.trader_api_token == token and not account.password
    page = admin_client.get(reverse("admin:accounts_account_change", args=[account.pk])).content.decode()
    assert token not in page and "Trader API token set" in page
    listing = admin_client.get(reverse("admin:accounts_account_changelist")).content.decode()
    assert token not in listing
    # saving without re-entering the token keeps it
    response = admin_client.post(reverse("admin:accounts_account_change", args=[account.pk]),
                                 dict(base, risk_per_trade_pct="1.0", halt_reason=""))
    assert response.status_code == 302
    assert Account.objects.get(pk=account.pk).trader_api_token == token
    assert AuditLog.objects.filter(action=AuditLog.Action.CREDENTIALS, account=account).exists()
