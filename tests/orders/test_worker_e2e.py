"""End to end through a real Celery worker on Redis, PostgreSQL and the simulator over sockets."""

from __future__ import annotations

import time
from decimal import ROUND_DOWN, Decimal as D

import pytest
from celery.contrib.testing.worker import start_worker

from orders.lifecycle import TERMINAL
from orders.models import Order, Position
from orders.tasks import dispatch_signal
from tests.orders.conftest import eurusd_buy_signal, ledger_counts, sim_accounts
from tradeops.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


def wait_terminal(signal, n: int, timeout: float = 60.0) -> list[Order]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        orders = list(Order.objects.filter(signal=signal))
        if len(orders) == n and all(o.status in TERMINAL for o in orders):
            return orders
        time.sleep(0.1)
    states = sorted((o.account_id, o.status) for o in Order.objects.filter(signal=signal))
    raise AssertionError(f"orders not terminal within {timeout}s: {states}")


@pytest.fixture
def orders_worker(redis_client, settings):
    settings.ORDERS_LINK_FILL_INLINE = False  # production path: orders.link_fill follows each fill
    with start_worker(app, pool="threads", concurrency=8, queues=["orders"], perform_ping_check=False,
                      shutdown_timeout=20, loglevel="WARNING"):
        yield


def expected_volume(equity: D) -> D:
    """By hand: 0.5 % of equity over 0.00200 × 100,000 = 200 USD per lot, rounded down to 0.01."""
    return (equity * D("0.005") / D("200")).quantize(D("0.01"), rounding=ROUND_DOWN)


def test_one_signal_to_50_accounts_gives_50_correctly_sized_orders(sim, orders_worker):
    # given 50 accounts with equities 10,000 … 59,000 (sizes 0.25 … 1.47)
    accounts = sim_accounts(sim, 50)
    for k, acct in enumerate(accounts):
        equity = D(10000 + 1000 * k)
        type(acct).objects.filter(pk=acct.pk).update(equity=equity, balance=equity)
        acct.equity = equity
    signal = eurusd_buy_signal()
    assert expected_volume(D("10000")) == D("0.25") and expected_volume(D("11000")) == D("0.27")
    assert expected_volume(D("59000")) == D("1.47")
    # when
    dispatch_signal.delay(signal.pk)
    orders = wait_terminal(signal, 50)
    # then: exactly one executed order per account, of the hand-computed size
    assert {o.status for o in orders} == {"filled"}
    by_account = {o.account_id: o for o in orders}
    for acct in accounts:
        assert by_account[acct.pk].volume == expected_volume(acct.equity)
        requests, opens = ledger_counts(sim, acct)
        assert (requests, opens) == (1, 1)
        led = sim.control.ledger(acct.system_uuid)
        assert D(led["executions"][0]["volume"]) == expected_volume(acct.equity)
    # and every fill gets linked to its position by the follow-up task
    deadline = time.monotonic() + 30
    while Order.objects.filter(signal=signal, position__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Order.objects.filter(signal=signal, position__isnull=True).exists()
    assert Position.objects.filter(account__in=accounts).count() == 50


def test_with_30_percent_faults_still_exactly_one_execution_per_account(sim, orders_worker, settings):
    # given 5xx (not executed), executed-then-lost answers (5xx after executing, read timeouts)
    settings.ORDERS_BROKER_TIMEOUT = (1.0, 1.0)  # generous: a loaded CI box must not turn reads into timeouts
    settings.ORDERS_MAX_SUBMIT_ATTEMPTS = 8
    accounts = sim_accounts(sim, 50)
    signal = eurusd_buy_signal()
    sim.control.set_faults(p_5xx=0.15, p_lost=0.15, lost_mode="timeout", lost_sleep_s=1.5, p_429=0.05,
                           retry_after_s=0.0)
    # when
    dispatch_signal.delay(signal.pk)
    orders = wait_terminal(signal, 50, timeout=90)
    stats = sim.control.faults()
    sim.control.set_faults(p_5xx=0.0, p_lost=0.0, p_429=0.0)
    # then
    executions = [ledger_counts(sim, a)[1] for a in accounts]
    requests = [ledger_counts(sim, a)[0] for a in accounts]
    assert executions == [1] * 50, executions
    assert sum(requests) > 50  # faults did happen and were retried/resent
    assert {o.status for o in orders} == {"filled"}
    assert stats["p_lost"] == 0.15


def test_a_fill_link_that_finds_its_account_busy_is_tried_again_not_left_to_reconciliation(sim, redis_client,
                                                                                           settings):
    """The chunk publishes its fills' link while it still holds the accounts' locks, so a fast
    worker can find an account busy. That account's fill is tried again within seconds; before,
    it stayed unlinked until the next reconciliation (none runs here)."""
    from orders import batch
    from orders.locks import account_lock
    from tests.waiting import wait_for

    settings.ORDERS_LINK_FILL_INLINE = False
    accounts = sim_accounts(sim, 2)
    signal = eurusd_buy_signal()
    batch.place_signal_orders(signal.pk, [a.pk for a in accounts])  # link message queued, no worker yet
    busy, free = (Order.objects.get(signal=signal, account=a) for a in accounts)
    assert busy.status == free.status == "filled" and not busy.position_id and not free.position_id
    with start_worker(app, pool="threads", concurrency=2, queues=["orders"], perform_ping_check=False,
                      shutdown_timeout=20, loglevel="WARNING"):
        with account_lock(busy.account_id, 5):  # held as the filling chunk holds it
            wait_for(lambda: Order.objects.get(pk=free.pk).position_id, timeout=30, what="the free account linked")
            assert Order.objects.get(pk=busy.pk).position_id is None  # that pass found the lock held
        wait_for(lambda: Order.objects.get(pk=busy.pk).position_id, timeout=30, what="the busy account's fill linked")
    assert Position.objects.filter(account__in=accounts).count() == 2
