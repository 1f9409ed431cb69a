"""The fan-out record: every (signal, account) pair, one outcome each (orders/delivery.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Account
from orders import delivery
from orders.delivery import Missed
from orders.dispatch import dispatch_signal
from orders.lifecycle import OrderStatus as S
from orders.locks import LOCK_NAMESPACE
from orders.models import Delivery, Order, idempotency_key_for
from signals.models import Signal
from tests.factories import make_account, make_signal, make_symbol
from tests.orders.conftest import eurusd
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
O = Delivery.Outcome


def outcomes(signal) -> dict[int, tuple[str, str]]:
    return {d.account_id: (d.outcome, d.reason) for d in Delivery.objects.filter(signal=signal)}


def test_dispatch_records_every_account_of_the_mode_the_excluded_ones_with_their_rule(redis_client):
    sym, other = eurusd(), make_symbol("USDJPY")
    ok = make_account()
    disabled = make_account(enabled=False)
    halted = make_account(halted=True, halt_reason="x")
    flagged = make_account(needs_reconciliation=True)
    restricted = make_account()
    restricted.allowed_symbols.add(other)
    live = make_account(mode=Account.Mode.LIVE)  # not of the trading mode (simulation): not counted
    signal = make_signal(symbol=sym)
    assert dispatch_signal(signal.pk)["enqueued"] == 1
    assert outcomes(signal) == {
        ok.pk: (O.PENDING, ""), disabled.pk: (O.SKIPPED, "account_disabled"),
        halted.pk: (O.SKIPPED, "account_halted"), flagged.pk: (O.SKIPPED, "needs_reconciliation"),
        restricted.pk: (O.SKIPPED, "symbol_not_allowed")}
    assert live.pk not in outcomes(signal)
    # dispatching again (a redelivered dispatch) writes nothing twice and enqueues the pending pair
    Signal.objects.filter(pk=signal.pk).update(status=Signal.Status.NEW)
    assert dispatch_signal(signal.pk)["enqueued"] == 1 and Delivery.objects.filter(signal=signal).count() == 5
    summary = delivery.summary(signal.pk)
    assert summary["total"] == 5 and summary["delivered"] == 0 and summary["skipped"]["account_halted"] == 1


def _order(signal, account, status, reason=""):
    o = Order.objects.create(account=account, signal=signal, symbol=signal.symbol, side="BUY", volume=D("0.1"),
                             idempotency_key=idempotency_key_for(signal.pk, account.pk))
    Order.objects.filter(pk=o.pk).update(status=status, reason=reason)
    return o


def test_settle_maps_each_terminal_order_onto_one_outcome(redis_client):
    signal = make_signal(symbol=eurusd())
    accts = [make_account() for _ in range(8)]
    delivery.record_fanout(signal.pk, signal.symbol_id)
    cases = [(S.FILLED, "", O.FILLED, ""), (S.REJECTED, "NO_MONEY", O.REJECTED, "NO_MONEY"),
             (S.SKIPPED, "max_open_positions", O.SKIPPED, "max_open_positions"),
             (S.SKIPPED, "signal_expired", O.MISSED, Missed.SIGNAL_EXPIRED),
             (S.FAILED, "kill_switch", O.SKIPPED, "kill_switch"),
             (S.FAILED, "broker_unavailable", O.MISSED, "broker_unavailable"),
             (S.SUBMITTED, "", O.PENDING, "")]  # in doubt: still pending
    for acct, (status, reason, *_rest) in zip(accts, cases):
        _order(signal, acct, status, reason)
    assert delivery.settle([signal.pk]) == 6
    got = outcomes(signal)
    for acct, (_s, _r, outcome, why) in zip(accts, cases):
        assert got[acct.pk] == (outcome, why)
    assert got[accts[7].pk] == (O.PENDING, "")  # no order yet


def test_sweep_redrives_stuck_fresh_pairs_but_not_ones_a_live_worker_holds(redis_client):
    signal = make_signal(symbol=eurusd())
    stuck, held, recent = make_account(), make_account(), make_account()
    delivery.record_fanout(signal.pk, signal.symbol_id)
    old = timezone.now() - timedelta(seconds=30)
    Delivery.objects.filter(account__in=[stuck, held]).update(updated_at=old, claimed_at=old)
    # another session (a running chunk) holds `held`'s advisory lock
    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"] or "postgres",
                         dbname=db["NAME"], autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_NAMESPACE, held.pk])
        result = delivery.sweep()
    assert result["redrive"] == {signal.pk: [stuck.pk]}
    assert Delivery.objects.get(account=stuck).redrives == 1
    # re-driven just now: not again until it has been still for a while; the lock holder is gone
    # (its session ended, as a killed worker's does): now that pair is re-driven
    # (PostgreSQL releases the lock as it notices the session end: poll)
    assert wait_for(lambda: delivery.sweep()["redrive"], 10, "the released pair") == {signal.pk: [held.pk]}
    assert recent.pk not in result["redrive"].get(signal.pk, [])


def test_a_chunk_runs_only_for_its_pending_pairs_and_a_settled_chunk_costs_one_statement(redis_client):
    # the sweep re-publishes pairs that waited long in a busy queue, so the original chunk message
    # and its re-drive can both run: the one that runs second must not redo the chunk
    from orders import recovery

    signal = make_signal(symbol=eurusd())
    done, pending = make_account(), make_account()
    delivery.record_fanout(signal.pk, signal.symbol_id)
    _order(signal, done, S.FILLED)
    delivery.settle([signal.pk])
    ran = []
    recovery.run_chunk(signal.pk, [done.pk, pending.pk], ran.append, skip_settled=True)
    assert ran == [[pending.pk]]  # the settled pair is left out
    assert Delivery.objects.get(signal=signal, account=pending).claimed_at is not None
    Delivery.objects.filter(signal=signal, account=pending).update(outcome=O.FILLED)
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        result = recovery.run_chunk(signal.pk, [done.pk, pending.pk], ran.append, skip_settled=True)
    assert result == {"already_settled": 2} and len(ran) == 1 and len(ctx.captured_queries) == 1
    # a single-account order (an operator's, a hand-over) is not skipped by this
    recovery.run_chunk(signal.pk, [done.pk], ran.append)
    assert ran[-1] == [done.pk]


def test_sweep_records_expired_pairs_missed_with_the_cause_and_waits_for_orders_in_doubt(redis_client, settings):
    settings.ORDERS_SIGNAL_MAX_AGE_S = 120
    signal = make_signal(symbol=eurusd())
    lost_worker, lost_queue, db_down, in_doubt, never_sent = (make_account() for _ in range(5))
    delivery.record_fanout(signal.pk, signal.symbol_id)
    long_ago = timezone.now() - timedelta(seconds=600)
    Signal.objects.filter(pk=signal.pk).update(created_at=long_ago)
    Delivery.objects.filter(signal=signal).update(updated_at=long_ago)
    Delivery.objects.filter(account__in=[lost_worker, never_sent]).update(claimed_at=long_ago)
    Delivery.objects.filter(account=db_down).update(claimed_at=long_ago, last_error=Missed.DATABASE_UNAVAILABLE)
    _order(signal, in_doubt, S.SUBMITTED)
    new_order = _order(signal, never_sent, S.NEW)
    result = delivery.sweep()
    assert result["redrive"] == {}
    got = outcomes(signal)
    assert got[lost_worker.pk] == (O.MISSED, Missed.WORKER_LOST)
    assert got[lost_queue.pk] == (O.MISSED, Missed.QUEUE_LOST)
    assert got[db_down.pk] == (O.MISSED, Missed.DATABASE_UNAVAILABLE)
    assert got[never_sent.pk] == (O.MISSED, Missed.WORKER_LOST)
    assert got[in_doubt.pk] == (O.PENDING, "")  # reconciliation decides the order first
    new_order.refresh_from_db()
    assert new_order.status == S.FAILED and new_order.reason == Missed.WORKER_LOST
    assert delivery.summary(signal.pk)["missed"] == {Missed.WORKER_LOST: 2, Missed.QUEUE_LOST: 1,
                                                     Missed.DATABASE_UNAVAILABLE: 1}


def test_signal_page_and_dashboard_say_delivered_n_of_m_and_missed_by_cause(redis_client, admin_client):
    from dashboard.data import recent_signals

    signal = make_signal(symbol=eurusd())
    filled, lost, _skipped = make_account(), make_account(), make_account(halted=True, halt_reason="x")
    delivery.record_fanout(signal.pk, signal.symbol_id)
    _order(signal, filled, S.FILLED)
    delivery.settle([signal.pk])
    Delivery.objects.filter(account=lost).update(outcome=O.MISSED, reason=Missed.WORKER_LOST)
    (row,) = [s for s in recent_signals() if s.pk == signal.pk]
    assert (row.delivered_count, row.pair_count, row.missed_by_cause) == (1, 3, "worker_lost 1")
    page = admin_client.get(f"/admin/signals/signal/{signal.pk}/change/").content.decode()
    assert "1 of 3 (1 missed)" in page and "missed: worker_lost × 1" in page
    listing = admin_client.get("/admin/signals/signal/").content.decode()
    assert "1 of 3 (1 missed)" in listing
