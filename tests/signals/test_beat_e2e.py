"""End to end, driven by a real Celery beat:

    simulator (real socket) → feed (thread) → Redis → celery beat (DatabaseScheduler, subprocess)
    → celery worker on the "analysis" queue (subprocess) → signals.analyze_market → Signal row
    → orders.dispatch_signal message waiting on the "orders" queue

A calm market stays quiet while the analysis demonstrably runs with enough history; a surge
planted in the simulator (``POST /_sim/surge``) becomes exactly one BUY signal. Subprocesses see
the test database through DATABASE_URL (transactional test: the rows are committed).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal as os_signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import redis as redis_lib
from django.apps import apps as django_apps
from django.conf import settings
from django.db import connection
from django_celery_beat.models import PeriodicTask

from matchtrader.simulator.testing import running_simulator
from signals import tasks
from signals.models import Signal, StrategyConfig
from tests.waiting import wait_for
from tests.factories import make_symbol
from workers.feed import FeedConfig, FeedWorker

from .test_service import queued
from .test_tasks import beat_migration

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]

# The e2e is about the plumbing, not the strategy's filters: a short baseline so the analysis has
# enough history seconds after the feed starts, and no filters that depend on the random
# pre-generated history (swing levels, RSI on M1 bars).
E2E_PARAMS = {
    "baseline_window_s": 60,
    "min_baseline_s": 8,
    "recent_window_s": 3,
    "use_swing_levels": False,
    "rsi_overbought": 100.0,
    "rsi_oversold": 0.0,
}




# the Procfile's "analysis" worker pool (tests/signals/test_tasks.py pins that they agree)
ANALYSIS_POOL = ("--pool", "threads", "--concurrency", "2")


@contextlib.contextmanager
def celery_processes(tmp_path: Path, env: dict, *, beats: int = 1, pool: tuple[str, ...] = ANALYSIS_POOL):
    """Beat(s) with the DatabaseScheduler and a worker consuming only "analysis" (the Procfile's
    pool); SIGTERM on exit."""
    py = sys.executable
    name = f"sig-e2e-{uuid.uuid4().hex[:8]}@%h"
    commands = {
        f"beat{i or ''}": [py, "-m", "celery", "-A", "tradeops", "beat", "-S",
                           "django_celery_beat.schedulers:DatabaseScheduler", "-s", str(tmp_path / f"beat-schedule{i}"),
                           "--pidfile=", "-l", "INFO"]
        for i in range(beats)
    }
    commands["worker"] = [py, "-m", "celery", "-A", "tradeops", "worker", "-Q", "analysis", *pool,
                          "-n", name, "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]
    procs, logs = {}, {}
    try:
        for key, cmd in commands.items():
            logs[key] = open(tmp_path / f"{key}.log", "wb")
            procs[key] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logs[key], stderr=subprocess.STDOUT)
        yield procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(os_signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for f in logs.values():
            f.close()


def dump_logs(tmp_path: Path) -> str:
    out = []
    for path in sorted(tmp_path.glob("*.log")):
        out.append(f"--- {path.stem} (tail) ---\n" + path.read_text(errors="replace")[-3000:])
    return "\n".join(out)


def last_run(r) -> dict | None:
    raw = r.get(tasks.LAST_RUN_KEY)
    return json.loads(raw) if raw else None


def subprocess_env() -> dict:
    """The test database and the test Redis, for the celery subprocesses."""
    return dict(
        os.environ,
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        CELERY_RESULT_BACKEND=settings.CELERY_RESULT_BACKEND,
        ORDERS_RECONCILE_ON_WORKER_READY="false",
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
    )


def only_the_analysis_beat_entry() -> None:
    """The data migration's beat entry, alone (no order-engine beats in these tests)."""
    PeriodicTask.objects.exclude(name=beat_migration.TASK_NAME).delete()
    beat_migration.create_schedule(django_apps, None)


def test_beat_drives_analysis_from_a_planted_surge_to_one_dispatched_signal(redis_client, tmp_path):
    # given
    only_the_analysis_beat_entry()
    make_symbol("EURUSD", digits=5, tick_size=Decimal("0.00001"), enabled=True)
    StrategyConfig.objects.create(params=E2E_PARAMS)
    env = subprocess_env()

    with running_simulator(seed=11, symbols=("EURUSD",), tick_rate=10.0, history_minutes=60,
                           surges_per_hour=0.0) as sim:
        sim.control.create_account("feed@sig-e2e.test", "feed-pw-1")
        feed_redis = redis_lib.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
        feed = FeedWorker(
            FeedConfig.from_settings(base_url=sim.url, ws_url=sim.ws_url, email="feed@sig-e2e.test",
                                     password="feed-pw-1", broker_id="0", warmup_minutes=60),
            redis=feed_redis,
            symbol_source=lambda: {"EURUSD"},
        )
        try:
            with feed.running(), celery_processes(tmp_path, env) as procs:
                alive = list(procs.values())
                # when: a calm market, analysed every second with enough history
                calm_runs: set[int] = set()

                def quiet_passes():
                    run = last_run(redis_client)
                    if run and run["reasons"] == {"no_surge": 1}:
                        calm_runs.add(run["ts_ms"])
                    return len(calm_runs) >= 3

                wait_for(quiet_passes, 40, "3 calm analysis passes with enough history", alive)
                # then: quiet
                assert not Signal.objects.exists(), dump_logs(tmp_path)

                # when: a buying surge is planted at the venue
                planted_ms = int(time.time() * 1000)
                sim.control.surge("EURUSD", side="BUY", intensity=6.0, seconds=8.0)

                # then: exactly one BUY signal, caused by a tick after the surge began
                signal = wait_for(lambda: Signal.objects.first(), 15, "a Signal row", alive)
                assert signal.side == Signal.Side.BUY, signal.features
                assert signal.symbol.name == "EURUSD"
                assert signal.tick_at.timestamp() * 1000 >= planted_ms - 50
                assert signal.stop_loss < signal.entry_price < signal.take_profit
                assert signal.features["volume_ratio"] >= 3.0
                # the dispatch message waits on the orders queue (no orders worker in this test);
                # it is sent right after the commit that made the row visible, so await it
                def dispatched():
                    return [m["args"] for m in queued(redis_client, "orders") if m["task"] == "orders.dispatch_signal"]

                assert wait_for(dispatched, 5, "the dispatch message", alive) == [[signal.pk]]
                # the next passes are in cool-down: still one signal
                seen = last_run(redis_client)["ts_ms"]
                wait_for(lambda: (r := last_run(redis_client))["ts_ms"] > seen and r["reasons"] == {"cooldown": 1},
                         5, "a pass in cool-down", alive)
                assert Signal.objects.count() == 1
                latency = signal.latency_ms
                detection_ms = signal.created_at.timestamp() * 1000 - planted_ms
                print(f"tick->signal latency {latency:.0f} ms; surge planted->signal {detection_ms:.0f} ms")
                assert 0 <= latency < 3_000
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{dump_logs(tmp_path)}") from exc
        finally:
            feed_redis.close()


def test_two_beats_by_mistake_still_analyse_once_a_period(redis_client, tmp_path):
    """Two beat processes (a deploy mistake, or a restart overlapping the old one) both send every
    period; the worker (2 processes, so duplicates really race) runs one pass per period."""
    only_the_analysis_beat_entry()
    with celery_processes(tmp_path, subprocess_env(), beats=2) as procs:
        alive = list(procs.values())
        runs: list[int] = []

        def collect(n):
            run = last_run(redis_client)
            if run and (not runs or run["ts_ms"] != runs[-1]):
                runs.append(run["ts_ms"])
            return len(runs) >= n

        try:
            t0 = time.monotonic()
            wait_for(lambda: collect(1), 40, "a first analysis pass", alive, interval=0.01)
            started = time.monotonic()
            print(f"first pass after {started - t0:.1f} s")
            wait_for(lambda: collect(6), 15, "5 more passes", alive, interval=0.01)
            elapsed = time.monotonic() - started
            worker_log = (tmp_path / "worker.log").read_text(errors="replace")
            received = worker_log.count("Task signals.analyze_market[") // 2  # "received" + "succeeded" lines
            skipped = worker_log.count("analysis_slot_already_run")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{dump_logs(tmp_path)}") from exc

    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert min(gaps) >= tasks.ANALYZE_PERIOD_S * 1000 * tasks.SPACING_FRACTION - 50, (gaps, dump_logs(tmp_path))
    assert elapsed >= 5 * tasks.ANALYZE_PERIOD_S * tasks.SPACING_FRACTION
    assert skipped >= 3, f"duplicates should have reached the worker and been skipped:\n{dump_logs(tmp_path)}"
    assert received > len(runs)
