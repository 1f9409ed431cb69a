"""Admin actions added by the order engine: halt + close all, close selected positions."""

import json

import pytest
from django.urls import reverse

from accounts.models import Account, AuditLog
from orders.execution import place_signal_order
from orders.models import Position
from tests.orders.conftest import eurusd_buy_signal, sim_accounts

pytestmark = pytest.mark.django_db


def queued(redis_client, task_name):
    return [json.loads(m) for m in redis_client.lrange("orders", 0, -1)
            if json.loads(m)["headers"]["task"] == task_name]


def test_halt_and_close_all_from_the_admin(admin_client, sim, redis_client):
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == "filled"
    resp = admin_client.post(reverse("admin:accounts_account_changelist"),
                             {"action": "halt_and_close_all", "_selected_action": [acct.pk]})
    assert resp.status_code == 302
    acct.refresh_from_db()
    assert acct.halted and "kill switch from the admin" in acct.halt_reason
    assert AuditLog.objects.filter(account=acct, action=AuditLog.Action.CLOSE_ALL).exists()
    assert len(queued(redis_client, "orders.close_all_positions")) == 1


def test_close_selected_positions_from_the_admin(admin_client, sim, redis_client):
    (acct,) = sim_accounts(sim, 1)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == "filled"
    pos = Position.objects.get(account=acct)
    resp = admin_client.post(reverse("admin:orders_position_changelist"),
                             {"action": "close_positions", "_selected_action": [pos.pk]})
    assert resp.status_code == 302
    assert len(queued(redis_client, "orders.close_position")) == 1
    assert AuditLog.objects.filter(account=acct, action=AuditLog.Action.CLOSE_ALL).exists()
    assert Account.objects.get(pk=acct.pk).halted is False
