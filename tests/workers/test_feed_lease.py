"""One active feed per Redis db: the lease (workers/lease.py) against the real Redis, and two real
feed workers against the simulator."""

from __future__ import annotations

import threading

import pytest

from marketdata import redis_keys as keys
from tests.factories import make_symbol
from tests.workers.test_feed import feed_config, sim, wait_until  # noqa: F401 - fixture
from workers.feed import FeedWorker
from workers.lease import Lease, LeaseKeeper, LeaseLost


def test_a_second_holder_waits_and_takes_over_when_the_first_releases(redis_client):
    first, second = Lease(redis_client, "test:lease", ttl_s=5), Lease(redis_client, "test:lease", ttl_s=5)
    assert first.try_acquire() and not second.try_acquire()
    assert second.current_holder() == first.holder
    first.release()
    assert second.try_acquire() and redis_client.get("test:lease").decode() == second.holder


def test_renewal_extends_and_a_lease_taken_by_another_is_lost(redis_client):
    lease = Lease(redis_client, "test:lease", ttl_s=2)
    assert lease.try_acquire()
    redis_client.pexpire("test:lease", 100)
    assert lease.renew() and redis_client.pttl("test:lease") > 1500
    # expired while Redis was away and nobody took it: taken back
    redis_client.delete("test:lease")
    assert lease.renew() and redis_client.get("test:lease").decode() == lease.holder
    # a standby took it over: lost
    redis_client.set("test:lease", "other-host:1:abc", px=2000)
    with pytest.raises(LeaseLost, match="other-host"):
        lease.renew()
    lease.release()  # not ours: left alone
    assert redis_client.get("test:lease") == b"other-host:1:abc"


def test_keeper_renews_only_when_due(redis_client):
    lease = Lease(redis_client, "test:lease", ttl_s=3)
    assert lease.try_acquire()
    keeper = LeaseKeeper(lease)
    redis_client.pexpire("test:lease", 500)
    keeper.tick(now=0.0)  # not due yet
    assert redis_client.pttl("test:lease") <= 500
    keeper.tick(now=10**9)
    assert redis_client.pttl("test:lease") > 2000


@pytest.mark.django_db(transaction=True)
def test_a_second_feed_stands_by_until_the_first_stops(sim, redis_client):  # noqa: F811
    make_symbol("EURUSD", enabled=True)
    cfg = feed_config(sim, lease_ttl_s=1.5)
    first = FeedWorker(cfg, redis=redis_client, symbol_source=lambda: {"EURUSD"}, warmup=False)
    second = FeedWorker(cfg, redis=redis_client, symbol_source=lambda: {"EURUSD"}, warmup=False)
    stop_second = threading.Event()
    standby = threading.Thread(target=second.run, args=(stop_second,), daemon=True)
    with first.running():
        wait_until(lambda: redis_client.xlen(keys.ticks_stream("EURUSD")) > 0, what="the first feed's ticks")
        standby.start()
        wait_until(lambda: second.lease.current_holder() == first.lease.holder, what="the lease seen by the standby")
        assert not second.ready.wait(1.0)  # standing by: not subscribed, writing nothing
        assert second.batches == 0
    # the first stopped cleanly and released the lease: the standby takes over and feeds
    try:
        assert second.ready.wait(10)
        assert redis_client.get(keys.FEED_LEASE).decode() == second.lease.holder
        count = redis_client.xlen(keys.ticks_stream("EURUSD"))
        wait_until(lambda: redis_client.xlen(keys.ticks_stream("EURUSD")) > count, what="the standby's ticks")
    finally:
        stop_second.set()
        standby.join(15)
    assert not standby.is_alive() and redis_client.get(keys.FEED_LEASE) is None


@pytest.mark.django_db(transaction=True)
def test_a_feed_that_lost_its_lease_stops_without_writing_its_buffer(sim, redis_client):  # noqa: F811
    make_symbol("EURUSD", enabled=True)
    worker = FeedWorker(feed_config(sim, lease_ttl_s=0.6), redis=redis_client, symbol_source=lambda: {"EURUSD"},
                        warmup=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.ready.wait(10)
    redis_client.set(keys.FEED_LEASE, "standby-host:2:def", px=5000)  # a standby took over
    thread.join(10)
    assert not thread.is_alive() and worker.lease_lost
    assert redis_client.get(keys.FEED_LEASE) == b"standby-host:2:def"
