"""Broker sessions: tokens shared through Redis (encrypted), a shared token bucket with a reserve
for closes, one login per account however many tasks use it."""

from __future__ import annotations

import pytest
from django.conf import settings

from matchtrader.errors import RateLimited
from orders import broker
from orders.broker import RedisTokenBucket, RedisTokenStore, client_for
from tests.orders.conftest import sim_accounts

pytestmark = pytest.mark.django_db


def test_tokens_are_stored_encrypted_and_shared_between_processes(sim, redis_client):
    (acct,) = sim_accounts(sim, 1)
    client = client_for(acct)
    client.balance()  # logs in, stores the tokens
    stored = [redis_client.get(k) for k in redis_client.keys("orders:tokens:*")]
    assert len(stored) == 1
    token = client._tokens.trading_api_token
    assert token and token.encode() not in stored[0] and b"co_auth" not in stored[0]
    # "another process": a fresh client adopts the stored tokens instead of logging in again
    logins_before = _logins(sim, acct)
    broker.reset_clients()
    other = client_for(acct)
    other.balance()
    assert other._tokens.trading_api_token == token
    assert _logins(sim, acct) == logins_before


def _logins(sim, acct) -> int:
    """Sessions the simulator issued for this account's email (one per login)."""
    sessions = sim.sim.sessions
    return sum(1 for s in list(sessions.by_co_auth.values()) if s.email == acct.email)


def test_many_orders_on_one_account_log_in_once(sim, redis_client):
    (acct,) = sim_accounts(sim, 1)
    for _ in range(5):
        client_for(acct).open_positions()
    broker.reset_clients()
    for _ in range(5):
        client_for(acct).open_positions()
    assert _logins(sim, acct) == 1
    store = RedisTokenStore(redis_client, ttl_s=60)
    assert store.get(client_for(acct)._store_key)["system_uuid"] == acct.system_uuid


def test_bucket_is_shared_and_keeps_a_reserve_for_high_priority(redis_client):
    a = RedisTokenBucket(redis_client, "cred-1", rate_per_minute=0.6, burst=10, high_reserve_share=0.2,
                         max_wait_s=0.0)
    b = RedisTokenBucket(redis_client, "cred-1", rate_per_minute=0.6, burst=10, high_reserve_share=0.2,
                         max_wait_s=0.0)  # a second process, same credential
    for i in range(8):  # normal requests may take the bucket down to the reserve (2 tokens)
        (a if i % 2 else b).acquire()
    with pytest.raises(RateLimited):
        a.acquire(priority="normal")
    a.acquire(priority="high")  # closes still go through
    b.acquire(priority="high")
    with pytest.raises(RateLimited):
        a.acquire(priority="high")
    other = RedisTokenBucket(redis_client, "cred-2", rate_per_minute=0.6, burst=10, high_reserve_share=0.2,
                             max_wait_s=0.0)
    other.acquire()  # another credential has its own bucket


def test_bucket_refills_over_time(redis_client):
    bucket = RedisTokenBucket(redis_client, "cred-3", rate_per_minute=60_000, burst=2, high_reserve_share=0.0,
                              max_wait_s=2.0)
    for _ in range(20):  # 1,000/s refill: waits a few ms at most, never raises
        bucket.acquire()
    assert settings.ORDERS_RATE_BURST + settings.ORDERS_RATE_LIMIT_PER_MIN <= 500


def test_proactive_renewal_stays_within_the_refresh_budget(sim, redis_client, settings):
    # every sync finds the token "old": four refreshes, then a new login rather than a refused 5th
    settings.ORDERS_TOKEN_REFRESH_AFTER_S = -1
    (acct,) = sim_accounts(sim, 1)
    client_for(acct).balance()  # logged in, tokens stored

    def renew() -> int:
        for key in redis_client.keys("orders:tokens:refreshing:*"):
            redis_client.delete(key)  # the 30 s single-renewer lock, so each call renews
        before = sim.control.stats()["requests"]
        client_for(acct)
        return sim.control.stats()["requests"] - before

    logins = _logins(sim, acct)
    assert [renew() for _ in range(4)] == [1, 1, 1, 1]  # one refresh call each
    assert _logins(sim, acct) == logins
    assert renew() == 1  # the 5th: one login (a refused refresh would have cost 2 calls)
    assert _logins(sim, acct) == logins + 1
    assert renew() == 1 and _logins(sim, acct) == logins + 1  # the new session refreshes again
    client_for(acct).balance()  # and its tokens work
