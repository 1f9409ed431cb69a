"""The breach guard on the state the account stream keeps (prop.guard.kept_state), with the stream
worker running against the simulator over real sockets and the feed's quotes in Redis: the same
verifiable property as test_guard_sim (a price path in half-pip steps, smaller than the buffer and
the margin: close-only, then flattened and halted before the simulator's equity crosses the
limit), and the guard reads the broker only to flatten — no balance or open-positions read per run."""

import threading
import time
from contextlib import contextmanager
from decimal import Decimal as D

import pytest

from accounts.models import Account
from marketdata import redis_keys
from orders import broker, state_sync
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from orders.models import Position
from orders.recording import record_open
from prop import guard
from prop.models import RuleProfile
from prop.rules import GuardAction
from tests.orders.conftest import EURUSD_BID, eurusd, eurusd_buy_signal, orders_settings, sim, sim_accounts  # noqa: F401
from tests.waiting import wait_for
from workers.account_stream import AccountStream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FLOOR = D("9500")
SPREAD = D("0.00008")


@contextmanager
def running(worker):
    stop = threading.Event()
    th = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    th.start()
    try:
        assert worker.ready.wait(10)
        yield worker
    finally:
        stop.set()
        th.join(10)


@pytest.fixture(autouse=True)
def no_feed_quote_left():
    yield
    broker.get_redis().delete(redis_keys.quote("EURUSD"))  # the other tests value at the broker's price


def feed_quote(bid: D) -> None:
    """What the feed worker writes for EURUSD (the guard's mark reads it)."""
    now_ms = int(time.time() * 1000)
    broker.get_redis().hset(redis_keys.quote("EURUSD"), mapping={"bid": str(bid), "ask": str(bid + SPREAD),
                                                                 "ts_ms": now_ms, "recv_ms": now_ms})


def broker_reads(sim, acct) -> int:
    """REST requests the simulator received for the account (its per-account rate window: every
    trading-path request, reads included, of the last minute)."""
    return len(sim.sim.rest.rate.get(acct.system_uuid, ()))


def test_guard_on_the_stream_state_flattens_before_the_limit_without_reading_the_broker(sim):
    profile = RuleProfile.objects.create(
        name="guard stream", firm="Sim Firm", daily_loss_basis="balance", daily_loss_amount=D("500"),
        reset_time="00:00", reset_timezone="UTC", close_only_buffer_pct=D("20"), flatten_margin_pct=D("10"),
        min_hold_seconds=3600)
    (acct,) = sim_accounts(sim, 1, rule_profile=profile)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    client = broker.client_for(acct)
    client.open_position("EURUSD", "BUY", D("4"))  # no stop; recorded as ours (e.g. an operator's)
    big = next(p for p in client.open_positions() if p.volume == D("4"))
    record_open(None, acct.pk, eurusd().pk, big)
    bid = D(str(EURUSD_BID))
    feed_quote(bid)
    seen = []
    with running(AccountStream(balance_every_s=0.2)):
        wait_for(lambda: state_sync.state_age_s(acct.pk) is not None, timeout=10)
        wait_for(lambda: Account.objects.filter(pk=acct.pk, balance_updated_at__isnull=False).exists(), timeout=10)
        assert guard.kept_state(Account.objects.get(pk=acct.pk)).stale == ""
        for _ in range(60):
            before = broker_reads(sim, acct)
            result = guard.check_account(acct.pk)
            seen.append(result.action)
            if result.action == GuardAction.FLATTEN:
                break
            assert broker_reads(sim, acct) == before  # judged on the kept state: no broker read
            assert client.balance().equity > FLOOR
            bid -= D("0.00005")  # half a pip: ~21 USD on 4.25 lots, smaller than the buffer and margin
            sim.control.market(paused=True, prices={"EURUSD": float(bid)})
            feed_quote(bid)
    assert GuardAction.CLOSE_ONLY in seen and seen[-1] == GuardAction.FLATTEN
    after = client.balance()
    assert client.open_positions() == []
    assert after.equity > FLOOR and after.balance > FLOOR, after
    acct.refresh_from_db()
    assert acct.halted and acct.halt_cause == "firm_rule"
    assert set(Position.objects.filter(account=acct).values_list("close_reason", flat=True)) == {"firm_rule"}


def test_without_the_stream_the_state_is_stale_and_the_guard_reads_the_broker(sim):
    (acct,) = sim_accounts(sim, 1)
    broker.get_redis().hdel(state_sync.STATE_SEEN_KEY, str(acct.pk))
    assert "account stream" in guard.kept_state(acct).stale
    before = broker_reads(sim, acct)
    guard.check_account(acct.pk)
    assert broker_reads(sim, acct) >= before + 2  # balance + open positions (+ the day-start history)
