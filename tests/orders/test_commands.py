"""kill_switch and reconcile commands."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Account, AuditLog, TradingSwitch
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from tests.factories import make_account
from tests.orders.conftest import eurusd_buy_signal, ledger_counts, sim_accounts

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("kill_switch", *args, stdout=out)
    return out.getvalue()


def test_kill_switch_on_stops_orders_off_allows_them_and_every_use_is_audited(sim):
    (acct,) = sim_accounts(sim, 1)
    assert "ON" in run("on", "--reason", "market chaos", "--actor", "ops:alice")
    assert TradingSwitch.get().kill_switch and TradingSwitch.get().changed_by == "ops:alice"
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.SKIPPED
    assert "ON" in run("status")
    assert "OFF" in run("off", "--actor", "ops:alice")
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    assert ledger_counts(sim, acct) == (1, 1)
    actions = list(AuditLog.objects.filter(actor="ops:alice").values_list("action", flat=True))
    assert sorted(actions) == [AuditLog.Action.KILL_SWITCH_OFF, AuditLog.Action.KILL_SWITCH_ON]
    on = AuditLog.objects.get(action=AuditLog.Action.KILL_SWITCH_ON)
    assert on.details["reason"] == "market chaos"


def test_kill_switch_for_one_account_halts_and_resumes_it():
    acct = make_account(name="alpha")
    run("on", "--account", "alpha", "--reason", "broker issue")
    acct.refresh_from_db()
    assert acct.halted and acct.halt_reason == "broker issue"
    assert not TradingSwitch.get().kill_switch
    run("off", "--account", "alpha")
    acct.refresh_from_db()
    assert not acct.halted


def test_kill_switch_errors_are_clear():
    with pytest.raises(CommandError, match="no account named"):
        run("on", "--account", "nope")
    with pytest.raises(CommandError, match="--close-all only goes with 'on'"):
        run("off", "--close-all")


def test_reconcile_command_reports_per_account(sim):
    (acct,) = sim_accounts(sim, 1)
    Account.objects.filter(pk=acct.pk).update(needs_reconciliation=True)
    out = StringIO()
    call_command("reconcile", "--account", acct.name, stdout=out)
    assert f"account {acct.pk}: ok" in out.getvalue()
    acct.refresh_from_db()
    assert not acct.needs_reconciliation and acct.last_reconciled_at is not None
