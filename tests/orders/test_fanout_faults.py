"""An operator's worst day, rerun by the suite: faults injected while one signal fans out to 200
accounts, with the Procfile's orders worker and the SHIPPED settings (visibility timeout 600 s,
signal max age 120 s — nothing lowered; the worker's environment carries only the URLs).

Every (signal, account) pair must end in a recorded outcome; every account gets exactly one
broker order (counted at the simulator); no account is halted. The test process stands in for
Celery beat: it runs the 10 s sweep (``orders.dispatch_pending_signals``'s body) once a second —
only the cadence is the test's, the re-drive threshold is the shipped one.
"""

from __future__ import annotations

import contextlib
import time

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Account
from orders import dispatch
from orders.dispatch import dispatch_signal
from orders.lifecycle import OrderStatus
from orders.models import Delivery, Order
from tests.harness import PrivateRedis, TcpProxy, kill_group, start_orders_worker, wait_ready, worker_env
from tests.orders.conftest import eurusd_buy_signal, ledger_counts, sim_accounts
from tests.waiting import wait_for
from tradeops.celery import app

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

N_ACCOUNTS = 200
O = Delivery.Outcome


def database_url(port: int | None = None) -> str:
    db = connection.settings_dict
    return (f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{port or db['PORT'] or 5432}/"
            f"{db['NAME']}")


@contextlib.contextmanager
def celery_broker(url: str):
    """Point this process's Celery producer (dispatch, the sweep's re-drives) at ``url``."""
    def reset():
        from kombu import pools

        if app._pool is not None:
            app._pool.force_close_all()
        app._pool = None
        app.amqp._producer_pool = None
        pools.reset()  # kombu's process-wide producer/connection pools, keyed by connection

    old = app.conf.broker_url
    reset()
    app.conf.broker_url = url
    try:
        yield
    finally:
        reset()
        app.conf.broker_url = old


def executed(sim, before: int) -> int:
    return sim.control.stats().get("executions", 0) - before


def drive_until_settled(signal, procs, timeout: float = 100.0) -> dict[int, tuple[str, str]]:
    """Run the sweep once a second (standing in for beat) until no pair is pending."""
    def settled():
        with contextlib.suppress(Exception):  # Redis may be restarting: the next pass retries
            dispatch.sweep()
        return not Delivery.objects.filter(signal=signal, outcome=O.PENDING).exists()
    wait_for(settled, timeout, "every pair to end in an outcome", procs=procs, interval=1.0)
    return {d.account_id: (d.outcome, d.reason) for d in Delivery.objects.filter(signal=signal)}


def assert_exactly_once_and_no_halts(sim, accounts, signal, outcomes):
    assert len(outcomes) == len(accounts)
    executions = [ledger_counts(sim, a)[1] for a in accounts]
    assert max(executions) == 1, [e for e in executions if e != 1]
    halted = list(Account.objects.filter(pk__in=[a.pk for a in accounts], halted=True).values_list("halt_reason",
                                                                                                   flat=True))
    assert halted == []
    # and a reconciliation of every account now (as the 60 s beat would) halts nobody
    from orders.reconciliation import reconcile_account

    reports = [reconcile_account(a.pk) for a in accounts[:40]]
    assert not any(r.halted for r in reports), [r.unexplained for r in reports if r.halted]
    return executions


@pytest.fixture
def worker_log(tmp_path):
    return tmp_path / "worker.log"


@pytest.mark.parametrize("kill_after, p_lost", [(1, 0.0), (90, 0.3)], ids=["early", "mid-30pct-lost"])
def test_sigkill_of_the_orders_worker_mid_fanout(sim, redis_client, worker_log, kill_after, p_lost):
    accounts = sim_accounts(sim, N_ACCOUNTS)
    signal = eurusd_buy_signal()
    sim.control.set_faults(latency_ms=60.0, scope="write", p_lost=p_lost, lost_mode="5xx")
    env = worker_env(database_url=database_url(), redis_url=settings.REDIS_URL, simulator_url=sim.url)
    worker = start_orders_worker(env, worker_log)
    try:
        wait_ready(worker, worker_log)
        before = sim.control.stats().get("executions", 0)
        dispatch_signal(signal.pk)
        wait_for(lambda: executed(sim, before) >= kill_after, 30, f"{kill_after} executions", interval=0.01)
        kill_group(worker)
        assert Delivery.objects.filter(signal=signal, outcome=O.PENDING).exists()  # caught mid-fan-out
        worker = start_orders_worker(env, worker_log)  # the process manager restarts it
        wait_ready(worker, worker_log)
        outcomes = drive_until_settled(signal, [worker])
    finally:
        kill_group(worker)
        sim.control.set_faults(latency_ms=0.0, p_lost=0.0, scope="all")
    executions = assert_exactly_once_and_no_halts(sim, accounts, signal, outcomes)
    assert set(outcomes.values()) == {(O.FILLED, "")}, sorted(set(outcomes.values()))
    assert executions == [1] * N_ACCOUNTS
    assert set(Order.objects.filter(signal=signal).values_list("status", flat=True)) == {OrderStatus.FILLED}


def test_redis_restarted_mid_fanout(sim, redis_client, worker_log, settings):
    private = PrivateRedis().start()  # the shipped persistence: append-only, fsync every second
    try:
        settings.REDIS_URL = private.url
        accounts = sim_accounts(sim, N_ACCOUNTS)
        signal = eurusd_buy_signal()
        sim.control.set_faults(latency_ms=60.0, scope="write")
        env = worker_env(database_url=database_url(), redis_url=private.url, simulator_url=sim.url)
        worker = start_orders_worker(env, worker_log)
        with celery_broker(private.url):
            try:
                wait_ready(worker, worker_log)
                before = sim.control.stats().get("executions", 0)
                dispatch_signal(signal.pk)
                wait_for(lambda: executed(sim, before) >= 20, 30, "some executions", interval=0.01)
                pending_at_fault = Delivery.objects.filter(signal=signal, outcome=O.PENDING).count()
                private.restart()  # SIGKILL, then the same port and data directory
                returned_at = time.time()
                outcomes = drive_until_settled(signal, [worker])
            finally:
                kill_group(worker)
                sim.control.set_faults(latency_ms=0.0, scope="all")
            assert_exactly_once_and_no_halts(sim, accounts, signal, outcomes)
    finally:
        private.stop()
    assert pending_at_fault > 0  # Redis went away mid-fan-out
    fresh_when_back = returned_at - signal.created_at.timestamp() < settings.ORDERS_SIGNAL_MAX_AGE_S
    for outcome, reason in outcomes.values():
        assert outcome == O.FILLED or (outcome == O.MISSED and reason), (outcome, reason)
    if fresh_when_back:
        assert set(outcomes.values()) == {(O.FILLED, "")}, sorted(set(outcomes.values()))


def test_postgresql_unreachable_for_5s_mid_fanout(sim, redis_client, worker_log):
    proxy = TcpProxy(connection.settings_dict["HOST"] or "127.0.0.1",
                     int(connection.settings_dict["PORT"] or 5432)).start()
    accounts = sim_accounts(sim, N_ACCOUNTS)
    signal = eurusd_buy_signal()
    sim.control.set_faults(latency_ms=60.0, scope="write")
    env = worker_env(database_url=database_url(proxy.port), redis_url=settings.REDIS_URL, simulator_url=sim.url)
    worker = start_orders_worker(env, worker_log)
    try:
        wait_ready(worker, worker_log)
        before = sim.control.stats().get("executions", 0)
        dispatch_signal(signal.pk)
        wait_for(lambda: executed(sim, before) >= 20, 30, "some executions", interval=0.01)
        pending_at_fault = Delivery.objects.filter(signal=signal, outcome=O.PENDING).count()
        proxy.cut()
        time.sleep(5.0)  # the outage itself (what is injected, not a wait for an event)
        proxy.restore()
        outcomes = drive_until_settled(signal, [worker])
    finally:
        kill_group(worker)
        proxy.stop()
        sim.control.set_faults(latency_ms=0.0, scope="all")
    assert_exactly_once_and_no_halts(sim, accounts, signal, outcomes)
    assert set(outcomes.values()) == {(O.FILLED, "")}, sorted(set(outcomes.values()))
    assert pending_at_fault > 0  # PostgreSQL went away mid-fan-out
    assert b"orders_chunk_retry" in worker_log.read_bytes()  # and running chunks retried
