"""``manage.py sync_symbols`` against the simulator's /effective-instruments."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.management import call_command

from marketdata import redis_keys as keys
from marketdata.models import Symbol
from matchtrader.simulator.testing import running_simulator
from tests.factories import make_symbol


@pytest.fixture
def sim(settings):
    with running_simulator(seed=5, symbols=("EURUSD", "XAUUSD", "BTCUSD", "USDJPY")) as handle:
        handle.control.create_account("sync@test.local", "sync-pw")
        settings.FEED_EMAIL = "sync@test.local"
        settings.FEED_PASSWORD = "sync-pw"
        yield handle


@pytest.mark.django_db
def test_sync_creates_disabled_updates_existing_and_caches(sim, redis_client, capsys):
    # given: one symbol known already, enabled, with a stale lot step
    make_symbol("EURUSD", enabled=True, lot_step=Decimal("0.10"), min_volume=Decimal("0.10"))
    call_command("sync_symbols", "--base-url", sim.url, "--quiet")
    out = capsys.readouterr().out
    assert "created 3" in out and "updated 1" in out
    # then: new ones exist, disabled; broker precision and steps are copied exactly
    assert set(Symbol.objects.values_list("name", flat=True)) == {"EURUSD", "XAUUSD", "BTCUSD", "USDJPY"}
    assert list(Symbol.objects.filter(enabled=True).values_list("name", flat=True)) == ["EURUSD"]
    xau = Symbol.objects.get(name="XAUUSD")
    assert xau.digits == 2 and xau.tick_size == Decimal("0.01") and xau.asset_class in ("metal", "other")
    eur = Symbol.objects.get(name="EURUSD")
    assert eur.lot_step == Decimal("0.01") and eur.contract_size == Decimal("100000") and eur.digits == 5
    assert eur.asset_class == "forex"
    # the list is cached in Redis for 60 s
    assert redis_client.ttl(keys.INSTRUMENTS_CACHE) > 50
    assert {r["name"] for r in json.loads(redis_client.get(keys.INSTRUMENTS_CACHE))} == {
        "EURUSD", "XAUUSD", "BTCUSD", "USDJPY"}
    # a second run changes nothing and uses the cache (the broker is not asked)
    call_command("sync_symbols", "--base-url", "http://127.0.0.1:9", "--quiet")
    again = capsys.readouterr().out
    assert "(cache)" in again and "unchanged 4" in again


@pytest.mark.django_db
def test_sync_enable_flag_enables_new_symbols(sim, redis_client):
    call_command("sync_symbols", "--base-url", sim.url, "--quiet", "--enable", "--no-cache")
    assert Symbol.objects.filter(enabled=True).count() == 4


@pytest.mark.django_db
def test_the_feed_refuses_a_trading_accounts_login_as_its_data_login():
    from tests.factories import make_account
    from workers.feed import check_dedicated_data_login

    make_account(email="trader@broker.test", platform_url="https://broker.test")
    with pytest.raises(ValueError, match="dedicated data login"):
        check_dedicated_data_login("Trader@broker.test", "https://broker.test/")
    check_dedicated_data_login("feed@broker.test", "https://broker.test")  # a dedicated one is fine
