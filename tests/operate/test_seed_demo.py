"""manage.py seed_demo: idempotent, matches the simulator's instruments, clear errors."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts.models import Account
from marketdata.models import Symbol
from matchtrader.simulator.instruments import SPECS
from workers.sim_provision import system_uuid_for

pytestmark = pytest.mark.django_db


def seed(*args, **env):
    out = StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def counts():
    return (Account.objects.count(), Symbol.objects.count(), get_user_model().objects.filter(is_superuser=True).count())


def test_twice_gives_the_same_rows(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "boss")
    first = seed("--accounts", "7")
    assert counts() == (7, 10, 1)
    # a generated password is printed once, and it works
    password = first.split("password '")[1].split("'")[0]
    assert get_user_model().objects.get(username="boss").check_password(password)
    second = seed("--accounts", "7")
    assert counts() == (7, 10, 1)
    assert "password '" not in second and "exists" in second


def test_accounts_are_simulation_accounts_with_stable_uuids():
    seed("--accounts", "3", "--no-superuser")
    accounts = list(Account.objects.order_by("name"))
    assert [a.name for a in accounts] == ["demo-001", "demo-002", "demo-003"]
    for a in accounts:
        assert a.mode == Account.Mode.SIMULATION and a.enabled and a.password
        assert a.system_uuid == system_uuid_for(a.name)
    assert accounts[1].balance == Decimal("25000")


def test_symbols_match_the_simulator_specs():
    seed("--accounts", "0", "--no-superuser")
    for name, spec in SPECS.items():
        s = Symbol.objects.get(name=name)
        assert s.enabled and s.digits == spec.price_precision
        assert s.tick_size == Decimal(1).scaleb(-spec.price_precision)
        assert (s.lot_step, s.min_volume, s.max_volume, s.contract_size) == (
            spec.volume_step, spec.volume_min, spec.volume_max, spec.contract_size)
        s.full_clean()  # min volume on the lot step, etc.


def test_rerun_keeps_what_the_trader_changed():
    seed("--accounts", "2", "--no-superuser")
    Symbol.objects.filter(name="BTCUSD").update(enabled=False)
    Account.objects.filter(name="demo-001").update(max_open_positions=1)
    seed("--accounts", "4", "--no-superuser")
    assert not Symbol.objects.get(name="BTCUSD").enabled
    assert Account.objects.get(name="demo-001").max_open_positions == 1
    assert Account.objects.count() == 4


def test_superuser_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "from-env-pass-42")
    out = seed("--accounts", "0")
    assert "from-env-pass-42" not in out
    assert get_user_model().objects.get(username="ops").check_password("from-env-pass-42")


@pytest.mark.parametrize("n", ["-1", "5001"])
def test_out_of_range_account_count_is_a_clear_error(n):
    with pytest.raises(CommandError, match="--accounts must be between 0 and 5000"):
        call_command("seed_demo", "--accounts", n, stdout=StringIO())
    assert Account.objects.count() == 0


def test_non_integer_account_count_is_refused():
    with pytest.raises(CommandError, match="invalid int value"):
        call_command("seed_demo", "--accounts", "many", stdout=StringIO())


def test_bad_superuser_email_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "not-an-email")
    with pytest.raises(CommandError, match="DJANGO_SUPERUSER_EMAIL"):
        seed("--accounts", "3")
    assert Account.objects.count() == 0  # refused before creating anything


def test_refuses_live_settings(settings):
    settings.SIMULATION_MODE = False
    with pytest.raises(CommandError, match="SIMULATION_MODE=false"):
        seed("--accounts", "1")


def test_demo_accounts_from_the_environment(monkeypatch):
    monkeypatch.setenv("DEMO_ACCOUNTS", "4")
    seed("--no-superuser")
    assert Account.objects.count() == 4
    monkeypatch.setenv("DEMO_ACCOUNTS", "lots")
    with pytest.raises(CommandError, match="DEMO_ACCOUNTS must be a whole number"):
        seed("--no-superuser")


def test_demo_strategy_configuration_is_created_once_and_valid():
    from signals.models import StrategyConfig

    seed("--accounts", "0", "--no-superuser")
    StrategyConfig.objects.filter(symbol=None).update(params={"min_baseline_s": 40})
    seed("--accounts", "0", "--no-superuser")
    assert StrategyConfig.objects.filter(symbol=None).count() == 1
    assert StrategyConfig.objects.get(symbol=None).params == {"min_baseline_s": 40}  # the trader's edit stays
