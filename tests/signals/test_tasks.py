"""``signals.analyze_market``: pinned name/route/expiry, double-fire and overlap guards, heartbeat,
and the dispatch message really enqueued after commit — on the real Redis and PostgreSQL."""

from __future__ import annotations

import importlib
import json
import threading
from datetime import datetime, timedelta

import pytest
from django.apps import apps as django_apps
from django.db import connections, transaction
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from signals import service, tasks
from signals.models import Signal
from tradeops.celery import app

from .fixtures import now_ms
from .test_service import queued
from tests.waiting import wait_for as wait_until

beat_migration = importlib.import_module("signals.migrations.0002_beat_schedule")




def _events(caplog, name: str) -> list[dict]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == name]


# --- pinned: name, queue, expiry --------------------------------------------------------------------
def test_task_name_and_queue_are_pinned():
    assert tasks.analyze_market.name == "signals.analyze_market" == tasks.ANALYZE_TASK
    registered = app.tasks["signals.analyze_market"]
    assert (registered.run.__module__, registered.run.__name__) == ("signals.tasks", "analyze_market")
    assert app.amqp.router.route({}, "signals.analyze_market")["queue"].name == "analysis"


def test_task_expires_within_its_period_and_lock_outlives_the_hard_limit():
    assert 0 < tasks.analyze_market.expires <= tasks.ANALYZE_PERIOD_S
    assert tasks.analyze_market.time_limit == tasks.TIME_LIMIT_S
    assert tasks.RUN_LOCK_TIMEOUT_S > tasks.TIME_LIMIT_S > tasks.analyze_market.soft_time_limit


@pytest.mark.django_db
def test_beat_entry_runs_every_period_on_the_analysis_queue_and_expires_within_it():
    # The data migration's row (re-created here: a transactional test elsewhere may have flushed it)
    PeriodicTask.objects.filter(name=beat_migration.TASK_NAME).delete()
    beat_migration.create_schedule(django_apps, None)
    entry = PeriodicTask.objects.select_related("interval").get(name=beat_migration.TASK_NAME)

    period_s = timedelta(**{entry.interval.period: entry.interval.every}).total_seconds()
    assert entry.task == tasks.ANALYZE_TASK and entry.enabled
    assert entry.queue == "analysis"
    assert period_s == tasks.ANALYZE_PERIOD_S
    assert 0 < entry.expire_seconds <= period_s
    # what the DatabaseScheduler will actually send with each message
    options = ModelEntry(entry, app=app).options
    assert options["queue"] == "analysis"
    assert 0 < options["expires"] <= period_s


@pytest.mark.django_db
def test_a_sent_message_carries_an_expiry_within_the_period(redis_client):
    before = datetime.now().astimezone()
    tasks.analyze_market.apply_async()

    [message] = queued(redis_client, "analysis")
    assert message["task"] == "signals.analyze_market"
    expires = datetime.fromisoformat(message["headers"]["expires"])
    assert timedelta(0) < expires - before <= timedelta(seconds=tasks.ANALYZE_PERIOD_S + 0.5)


# --- double-fire ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_same_slot_fired_twice_runs_once(redis_client, market, symbol_factory, caplog):
    symbol_factory("EURUSD")
    market.surge("EURUSD", seed=1)
    caplog.set_level("INFO")

    first = tasks.analyze_market(slot=1_000_001)
    second = tasks.analyze_market(slot=1_000_001)
    other = tasks.analyze_market(slot=1_000_002)

    assert first["reasons"] == {"signal": 1}
    assert second is None
    assert other["reasons"] == {"cooldown": 1}  # a different slot does run
    assert Signal.objects.count() == 1
    assert [e["slot"] for e in _events(caplog, "analysis_slot_already_run")] == [1_000_001]


@pytest.mark.django_db
def test_beat_messages_inside_one_period_run_once(redis_client):
    """Two messages of one beat tick (no explicit slot): the second is a no-op; the next period runs."""
    first = tasks.analyze_market()
    second = tasks.analyze_market()

    assert first is not None and second is None
    ttl_ms = redis_client.pttl(tasks.SPACING_KEY)
    assert 0 < ttl_ms <= tasks.ANALYZE_PERIOD_S * 1000
    wait_until(lambda: not redis_client.exists(tasks.SPACING_KEY), timeout=2)
    assert tasks.analyze_market() is not None


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_run_exactly_once(redis_client):
    barrier = threading.Barrier(4)
    results = []

    def fire():
        barrier.wait()
        try:
            results.append(tasks.analyze_market())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert len(results) == 4
    assert sum(r is not None for r in results) == 1


# --- overlap ----------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_an_overlapping_run_is_skipped_and_the_lock_is_freed_after(redis_client, monkeypatch, caplog):
    # given: a pass that is still running (held inside run_analysis)
    entered, release = threading.Event(), threading.Event()
    real = tasks.run_analysis

    def slow_pass(r, now_ms=None):
        entered.set()
        release.wait(10)
        return real(r, now_ms)

    monkeypatch.setattr(tasks, "run_analysis", slow_pass)
    caplog.set_level("WARNING")
    box = {}

    def first():
        try:
            box["first"] = tasks.analyze_market(slot=2_000_001)
        finally:
            connections.close_all()

    t = threading.Thread(target=first)
    t.start()
    assert entered.wait(5)

    # when: the next period fires while it runs
    overlapped = tasks.analyze_market(slot=2_000_002)

    # then: skipped, logged; and once the slow pass ends, the following period runs
    assert overlapped is None
    assert _events(caplog, "analysis_overlap_skipped")
    release.set()
    t.join(10)
    assert box["first"] is not None
    assert not redis_client.exists(tasks.RUN_LOCK_KEY)
    monkeypatch.setattr(tasks, "run_analysis", real)
    assert tasks.analyze_market(slot=2_000_003) is not None


@pytest.mark.django_db
def test_a_failing_pass_frees_the_lock(redis_client, monkeypatch):
    def broken(r, now_ms=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(tasks, "run_analysis", broken)
    with pytest.raises(RuntimeError):
        tasks.analyze_market(slot=3_000_001)

    assert not redis_client.exists(tasks.RUN_LOCK_KEY)
    assert not redis_client.exists(tasks.BEAT_HEARTBEAT_KEY)  # no heartbeat for a failed pass


def test_a_lock_held_by_someone_else_is_never_released_by_us(redis_client):
    """The lock is token-owned: a run whose lock expired cannot delete the next run's lock."""
    mine = redis_client.lock(tasks.RUN_LOCK_KEY, timeout=5)
    assert mine.acquire(blocking=False)
    other = redis_client.lock(tasks.RUN_LOCK_KEY, timeout=5)
    assert not other.acquire(blocking=False)
    with pytest.raises(Exception):
        other.release()
    assert redis_client.exists(tasks.RUN_LOCK_KEY)
    mine.release()


# --- heartbeat and summary -------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_pass_writes_the_heartbeat_and_a_summary(redis_client, market, symbol_factory):
    from dashboard import health

    symbol_factory("EURUSD")
    market.calm("EURUSD", seed=2)
    before = now_ms()

    summary = tasks.analyze_market(slot=4_000_001)

    assert summary["symbols"] == 1 and summary["reasons"] == {"no_surge": 1} and summary["signals"] == []
    assert health.ANALYSIS_LAST_RUN_KEY == tasks.BEAT_HEARTBEAT_KEY
    assert before <= int(redis_client.get(tasks.BEAT_HEARTBEAT_KEY)) <= now_ms()
    assert json.loads(redis_client.get(tasks.LAST_RUN_KEY)) == summary


# --- dispatch after commit --------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_dispatch_message_is_enqueued_on_commit_by_name_with_the_signal_id(redis_client, market, symbol_factory):
    symbol_factory("EURUSD")
    market.surge("EURUSD", seed=1)

    summary = tasks.analyze_market(slot=5_000_001)

    [signal_id] = summary["signals"]
    assert Signal.objects.filter(pk=signal_id, status=Signal.Status.NEW).exists()
    [message] = queued(redis_client, "orders")
    assert message["task"] == "orders.dispatch_signal"
    assert message["args"] == [signal_id] and message["kwargs"] == {}
    assert redis_client.llen("analysis") == 0  # never on the analysis queue


@pytest.mark.django_db(transaction=True)
def test_nothing_is_dispatched_when_the_transaction_rolls_back(redis_client, market, symbol_factory):
    symbol_factory("EURUSD")
    market.surge("EURUSD", seed=1)

    with pytest.raises(RuntimeError), transaction.atomic():
        assert service.run_analysis(redis_client).signals
        raise RuntimeError("rolled back")

    assert not Signal.objects.exists()
    assert redis_client.llen("orders") == 0
