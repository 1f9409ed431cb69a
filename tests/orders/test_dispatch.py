"""Fan-out: one place_orders message per chunk of eligible accounts, with a bounded number of queries."""

from __future__ import annotations

import json

import pytest

from accounts.models import Account
from orders.delivery import eligible_account_ids
from orders.dispatch import dispatch_signal
from signals.models import Signal
from tests.factories import make_account, make_signal
from tests.orders.conftest import eurusd, usdjpy

pytestmark = pytest.mark.django_db


def queued_chunks(redis_client) -> list[tuple[int, list[int]]]:
    """The (signal_id, account_ids) of every place_orders message waiting on the 'orders' queue."""
    import base64

    out = []
    for raw in redis_client.lrange("orders", 0, -1):
        msg = json.loads(raw)
        assert msg["headers"]["task"] == "orders.place_orders"
        signal_id, account_ids = json.loads(base64.b64decode(msg["body"]))[0]
        out.append((signal_id, account_ids))
    return out


def queued_place_orders(redis_client) -> list[tuple]:
    """(account_id, signal_id) for every account of every queued chunk."""
    return [(account_id, signal_id) for signal_id, ids in queued_chunks(redis_client) for account_id in ids]


def test_only_eligible_accounts_get_an_order(settings):
    sym, other = eurusd(), usdjpy()
    ok = make_account()
    restricted_ok = make_account()
    restricted_ok.allowed_symbols.add(sym)
    restricted_other = make_account()
    restricted_other.allowed_symbols.add(other)
    make_account(enabled=False)
    halted = make_account()
    halted.halt("test")
    make_account(needs_reconciliation=True)
    live = make_account(mode=Account.Mode.LIVE)
    assert eligible_account_ids(sym.pk) == [ok.pk, restricted_ok.pk]
    # live accounts only when simulation is off AND trading is enabled
    settings.SIMULATION_MODE = False
    settings.TRADING_ENABLED = False
    assert eligible_account_ids(sym.pk) == []
    settings.TRADING_ENABLED = True
    assert eligible_account_ids(sym.pk) == [live.pk]


def test_dispatch_enqueues_every_account_once_in_chunks_with_few_queries(redis_client, settings,
                                                                         django_assert_max_num_queries):
    settings.ORDERS_FANOUT_CHUNK = 30
    settings.ORDERS_FANOUT_PROCESSES = 4
    sym = eurusd()
    accounts = [make_account() for _ in range(200)]
    signal = make_signal(symbol=sym)
    # 4 of the fan-out + 2 of the copy rules (the accounts' owners and profiles, the strategy's owners)
    with django_assert_max_num_queries(6):
        result = dispatch_signal(signal.pk)
    # about 30 per chunk in whole rounds of the 4 processes: 200 / 120 ≈ 2 rounds, 8 chunks of 25
    assert result["enqueued"] == 200 and result["chunks"] == 8
    queued = queued_place_orders(redis_client)
    assert sorted(queued) == sorted((a.pk, signal.pk) for a in accounts)  # each account exactly once
    assert sorted(len(ids) for _, ids in queued_chunks(redis_client)) == [25] * 8
    signal.refresh_from_db()
    assert signal.status == Signal.Status.DISPATCHED and signal.dispatched_at is not None


def test_fanout_chunks_are_whole_rounds_of_the_worker_processes():
    from orders.dispatch import fanout_chunks

    def sizes(n, chunk=20, processes=4):
        chunks = fanout_chunks(list(range(n)), chunk, processes)
        assert [i for c in chunks for i in c] == list(range(n))  # every account once, in order
        return [len(c) for c in chunks]

    assert sizes(100) == [25] * 4  # one chunk per process, all starting at once (not 5 of 20)
    assert sizes(10) == [3, 3, 3, 1]
    assert sizes(3) == [1, 1, 1]
    assert sizes(1000) == [21] * 47 + [13]  # 12 rounds of 4
    assert max(sizes(119)) <= 30 and len(sizes(119)) == 4  # at most about 1.5 x the chunk
    assert sizes(30, chunk=1) == [1] * 30 and sizes(0) == []


def test_a_dispatched_signal_is_not_fanned_out_again(redis_client):
    sym = eurusd()
    make_account()
    signal = make_signal(symbol=sym)
    dispatch_signal(signal.pk)
    redis_client.delete("orders")
    assert dispatch_signal(signal.pk)["enqueued"] == 0
    assert redis_client.llen("orders") == 0


def test_dispatch_flushes_every_batch_and_the_messages_ignore_results(redis_client, monkeypatch):
    # chunks of 1 and publish batches of 7 for 30 accounts: 4 full flushes and one partial at the
    # end, nothing lost or doubled
    import json

    from django.conf import settings

    from orders import dispatch as dispatch_mod

    monkeypatch.setattr(dispatch_mod, "PUBLISH_BATCH", 7)
    monkeypatch.setattr(settings, "ORDERS_FANOUT_CHUNK", 1)
    sym = eurusd()
    accounts = [make_account() for _ in range(30)]
    signal = make_signal(symbol=sym)
    assert dispatch_signal(signal.pk)["enqueued"] == 30
    assert sorted(queued_place_orders(redis_client)) == sorted((a.pk, signal.pk) for a in accounts)
    headers = [json.loads(raw)["headers"] for raw in redis_client.lrange("orders", 0, -1)]
    assert all(h["ignore_result"] is True and h["expires"] for h in headers)


def test_signals_left_new_are_dispatched_again_while_fresh_and_expired_when_old(redis_client, settings):
    import base64
    from datetime import timedelta

    from django.utils import timezone

    from orders.tasks import dispatch_pending_signals

    settings.ORDERS_SIGNAL_MAX_AGE_S = 120
    sym = eurusd()
    now = timezone.now()
    just_made, lost, too_old, done = (make_signal(symbol=sym) for _ in range(4))
    Signal.objects.filter(pk=lost.pk).update(created_at=now - timedelta(seconds=30))
    Signal.objects.filter(pk=too_old.pk).update(created_at=now - timedelta(seconds=600))
    Signal.objects.filter(pk=done.pk).update(created_at=now - timedelta(seconds=30), status=Signal.Status.DISPATCHED)
    assert dispatch_pending_signals() == {"expired": 1, "redispatched": 1, "settled": 0, "redriven": 0, "missed": {}}
    queued = [json.loads(raw) for raw in redis_client.lrange("orders", 0, -1)]
    assert [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in queued] == [
        ("orders.dispatch_signal", [lost.pk])]
    statuses = dict(Signal.objects.values_list("pk", "status"))
    assert statuses[too_old.pk] == Signal.Status.EXPIRED and statuses[just_made.pk] == Signal.Status.NEW
