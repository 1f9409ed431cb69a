"""A wake-up never waits behind a beat pass, and the two together still give one signal per surge.

The event path's wake-up (``signals.analyze_symbols``) takes no run lock: the analysis worker runs
two threads (the Procfile's pool), and one surge → one signal is held by the per-symbol cool-down
claim (``signals.service.claim_cooldowns``, a compare-and-set against the value each pass read).
Real Redis and PostgreSQL; the worker is a real Celery worker with the Procfile's pool, in-process.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connections

from signals import service, tasks
from signals.models import Signal
from tests.waiting import wait_for
from tradeops.celery import app
from workers.feed import send_wakes

from .fixtures import now_ms
from .test_beat_e2e import ANALYSIS_POOL

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)


def _in_thread(box: dict, key: str, fn, *args, **kwargs) -> threading.Thread:
    def run():
        try:
            box[key] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test through the box
            box[key] = exc
        finally:
            connections.close_all()

    t = threading.Thread(target=run)
    t.start()
    return t


def test_the_procfile_analysis_worker_runs_the_pool_the_tests_use():
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("analysis:"))
    assert " ".join(ANALYSIS_POOL) in line and "-Q analysis" in line


def test_a_wake_up_signals_while_a_long_beat_pass_is_still_running(redis_client, market, symbol_factory,
                                                                    monkeypatch):
    # given: many calm symbols and one surging, and a beat pass over all of them held in progress
    symbol_factory("EURUSD")
    market.surge("EURUSD", direction=1, seed=3)
    for i in range(12):
        symbol_factory(f"CALM{i:02d}")
        market.calm(f"CALM{i:02d}", seed=i)
    entered, release = threading.Event(), threading.Event()
    real = tasks.run_analysis

    def held_beat_pass(r, now_ms=None, *, only=None, wakes=None):
        if only is None:
            entered.set()
            release.wait(20)
        return real(r, now_ms, only=only, wakes=wakes)

    monkeypatch.setattr(tasks, "run_analysis", held_beat_pass)
    with start_worker(app, pool=ANALYSIS_POOL[1], concurrency=int(ANALYSIS_POOL[3]), queues=["analysis"],
                      perform_ping_check=False, shutdown_timeout=20, loglevel="WARNING"):
        try:
            tasks.analyze_market.apply_async(kwargs={"slot": 3_000_001}, expires=10)
            assert entered.wait(10), "the beat pass never started"

            # when: the feed's pre-screen wakes the analysis for the surging symbol
            send_wakes({"EURUSD": {}})

            # then: its signal is stored while the beat pass still runs (the wake-up did not queue behind it)
            signal = wait_for(lambda: Signal.objects.select_related("symbol").first(), 10,
                              "the wake-up's signal during the beat pass")
            assert not release.is_set()
            assert signal.symbol.name == "EURUSD" and signal.hops["path"] == "event"
        finally:
            release.set()
        # and the beat pass, once it ends, finds the symbol in cool-down: still one signal
        wait_for(lambda: redis_client.get(tasks.LAST_RUN_KEY), 10, "the beat pass's summary")
    assert Signal.objects.count() == 1


def test_a_beat_pass_and_a_wake_up_deciding_at_once_give_one_signal(redis_client, market, symbol_factory,
                                                                     monkeypatch):
    # given: a surging symbol, and both paths made to read its cool-down before either writes it
    symbol_factory("EURUSD")
    market.surge("EURUSD", direction=1, seed=4)
    both_read = threading.Barrier(2, timeout=10)
    real = service.pass_state

    def read_then_meet(redis, names):
        state = real(redis, names)
        both_read.wait()
        return state

    monkeypatch.setattr(service, "pass_state", read_then_meet)
    box: dict = {}

    # when: a beat pass and a wake-up analyse it concurrently
    threads = [_in_thread(box, "beat", tasks.analyze_market, slot=3_000_002),
               _in_thread(box, "wake", tasks.analyze_symbols, ["EURUSD"], {"EURUSD": {}})]
    for t in threads:
        t.join(20)

    # then: exactly one signal; the other path's decision is the cool-down
    for key in ("beat", "wake"):
        assert isinstance(box.get(key), dict), box
    assert Signal.objects.count() == 1
    reasons = [box["beat"]["reasons"], box["wake"]["reasons"]]
    assert sorted(r.get("signal", 0) for r in reasons) == [0, 1], reasons
    assert sorted(r.get("cooldown", 0) for r in reasons) == [0, 1], reasons
    assert int(redis_client.hget(service.LAST_SIGNAL_KEY, "EURUSD")) > 0


def test_a_signal_that_was_not_stored_gives_its_cool_down_claim_back(redis_client, market, symbol_factory,
                                                                     monkeypatch):
    # given: a surging symbol whose last signal was long ago, and an insert that fails
    symbol_factory("EURUSD")
    market.surge("EURUSD", direction=1, seed=5)
    long_ago = now_ms() - 3_600_000
    redis_client.hset(service.LAST_SIGNAL_KEY, "EURUSD", long_ago)

    def broken(*_a, **_k):
        raise RuntimeError("database away")

    monkeypatch.setattr(service, "record_signals", broken)

    # when
    with pytest.raises(RuntimeError):
        service.run_analysis(redis_client)

    # then: the cool-down is what it was (the next pass may signal), and nothing was stored
    assert int(redis_client.hget(service.LAST_SIGNAL_KEY, "EURUSD")) == long_ago
    assert not Signal.objects.exists()
    monkeypatch.undo()
    assert service.run_analysis(redis_client).signals
