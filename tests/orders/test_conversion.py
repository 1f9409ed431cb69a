"""Sizing a symbol quoted in a third currency: the converting pair's rate from the feed or the broker."""

from __future__ import annotations

import time
from decimal import Decimal as D

import pytest

from marketdata import redis_keys
from orders import batch, broker, reads
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from orders.models import Order
from tests.factories import make_signal, make_symbol
from tests.orders.conftest import eurusd, ledger_counts, sim_accounts

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_rates():
    reads.clear_conversion_cache()
    yield
    reads.clear_conversion_cache()
    broker.get_redis().delete(redis_keys.quote("EURUSD"))


def gbpusd():
    return make_symbol("GBPUSD", base_currency="GBP", quote_currency="USD")


def gbpusd_buy():
    """20 pips of stop: 0.00200 × 100,000 = 200 USD per lot."""
    return make_signal(symbol=gbpusd(), side="BUY", entry_price=D("1.27000"), stop_loss=D("1.26800"),
                       take_profit=D("1.27400"))


def publish_eurusd(bid: str, ask: str, age_s: float = 0.0) -> None:
    at = int((time.time() - age_s) * 1000)
    broker.get_redis().hset(redis_keys.quote("EURUSD"), mapping={"bid": bid, "ask": ask, "ts_ms": at, "recv_ms": at})


def test_a_eur_account_sizes_gbpusd_with_the_feeds_eurusd_mid(sim):
    # 0.5 % of 10,000 EUR = 50 EUR; 200 USD per lot / 1.25005 = 159.99 EUR per lot, + 1 % headroom
    # for EURUSD moving against the account until the stop = 161.59 → 0.3094 → 0.30 lots
    eurusd()
    publish_eurusd("1.25000", "1.25010")
    (acct,) = sim_accounts(sim, 1, currency="EUR")
    signal = gbpusd_buy()
    assert place_signal_order(acct.pk, signal.pk) == S.FILLED
    assert Order.objects.get(signal=signal).volume == D("0.30")
    assert ledger_counts(sim, acct) == (1, 1)


def test_without_a_fresh_feed_quote_the_broker_is_asked_once_per_chunk(sim, settings):
    # the feed's quote is 2 minutes old; the simulator's EURUSD is 1.10000/1.10008, mid 1.10004:
    # 200 USD / 1.10004 = 181.81 EUR per lot; 50 EUR → 0.27 lots
    eurusd()
    publish_eurusd("1.25000", "1.25010", age_s=120)
    accounts = sim_accounts(sim, 3, currency="EUR")
    signal = gbpusd_buy()
    for account in accounts:  # logged in beforehand, so only the trading requests are counted
        assert broker.client_for(account).system_uuid
    requests_before = sim.control.stats()["requests"]
    assert batch.place_signal_orders(signal.pk, [a.pk for a in accounts]) == {S.FILLED: 3}
    assert set(Order.objects.filter(signal=signal).values_list("volume", flat=True)) == {D("0.27")}
    # 3 orders + 3 inline fill-link reads + ONE quotations read for the whole chunk
    assert sim.control.stats()["requests"] - requests_before == 7


def test_no_converting_instrument_means_skipped_not_guessed(sim):
    (acct,) = sim_accounts(sim, 1, currency="CHF")  # no USDCHF/CHFUSD symbol in the database
    signal = gbpusd_buy()
    assert place_signal_order(acct.pk, signal.pk) == S.SKIPPED
    assert Order.objects.get(signal=signal).reason == "no_conversion_rate"
    assert ledger_counts(sim, acct) == (0, 0)
