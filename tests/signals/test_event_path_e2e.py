"""Event-driven analysis end to end, with the beat running beside it (issue 16):

    simulator (real socket) → feed (thread, the strategy's pre-screen per tick) → Redis
      ├─ pre-screen fires → signals.analyze_symbols (queue "analysis") ─┐
      └─ celery beat (subprocess) → signals.analyze_market ─────────────┴→ analysis worker (subprocess)
    → Signal row → orders.dispatch_signal → orders.place_orders (in-process worker) → simulator

Two symbols surge at the venue: EURUSD with its real pre-screen (the event path must take it:
exactly one signal, ``path = event``, the beat's later passes in cool-down), GBPUSD with a
pre-screen that never fires (the beat must still catch it). Every filled order of both signals
has its hop timestamps complete and in order (``signals.hops``).
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import redis as redis_lib
from celery.contrib.testing.worker import start_worker
from django.conf import settings as django_settings

from matchtrader.simulator.testing import running_simulator
from orders import broker
from orders.lifecycle import TERMINAL
from orders.models import Order
from signals import hops, tasks
from signals.models import Signal, StrategyConfig
from tests.factories import make_symbol
from tests.orders.conftest import sim_accounts
from tests.waiting import wait_for
from tradeops.celery import app
from workers.feed import FeedConfig, FeedWorker, prescreens_from_db

from .test_beat_e2e import E2E_PARAMS, celery_processes, dump_logs, last_run, only_the_analysis_beat_entry, \
    subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ACCOUNTS = 4


class NeverFires:
    """A pre-screen that misses every surge (a strategy whose hook is too strict)."""

    def on_tick(self, ts_ms, price, volume):
        return False


def prescreens(names):
    out = prescreens_from_db(names)
    if "GBPUSD" in out:
        out["GBPUSD"] = (("never",), NeverFires)
    return out


@pytest.fixture
def order_settings(settings):
    settings.SIMULATION_MODE = True
    settings.TRADING_ENABLED = False
    settings.ORDERS_UNKNOWN_SETTLE_S = 0.0
    settings.ORDERS_RECONCILE_ON_WORKER_READY = False
    settings.ORDERS_LINK_FILL_INLINE = True
    broker.reset_clients()
    yield settings
    broker.reset_clients()


def test_a_surge_takes_the_event_path_once_a_blind_prescreen_is_caught_by_beat_and_every_fill_has_its_hops(
        redis_client, tmp_path, order_settings):
    # given two symbols, a strategy with a short baseline, accounts on the simulator
    only_the_analysis_beat_entry()
    for name, base in (("EURUSD", "EUR"), ("GBPUSD", "GBP")):
        make_symbol(name, digits=5, tick_size=Decimal("0.00001"), enabled=True, base_currency=base)
    StrategyConfig.objects.create(params=E2E_PARAMS)
    env = subprocess_env()

    with running_simulator(seed=11, symbols=("EURUSD", "GBPUSD"), tick_rate=10.0, history_minutes=60,
                           surges_per_hour=0.0) as sim:
        order_settings.SIMULATOR_URL = sim.url
        sim_accounts(sim, ACCOUNTS)
        sim.control.create_account("feed@event-e2e.test", "feed-pw-1")
        feed_redis = redis_lib.Redis.from_url(django_settings.REDIS_URL, socket_timeout=5)
        feed = FeedWorker(
            FeedConfig.from_settings(base_url=sim.url, ws_url=sim.ws_url, email="feed@event-e2e.test",
                                     password="feed-pw-1", broker_id="0", warmup_minutes=60, prescreen=True),
            redis=feed_redis, symbol_source=lambda: {"EURUSD", "GBPUSD"}, prescreen_source=prescreens,
        )
        try:
            with feed.running(), celery_processes(tmp_path, env) as procs, \
                    start_worker(app, pool="threads", concurrency=4, queues=["orders"], perform_ping_check=False,
                                 shutdown_timeout=20, loglevel="WARNING"):
                alive = list(procs.values())
                # when the market has been calm for long enough (the pre-screens have a baseline too)
                calm: set[int] = set()

                def quiet():
                    run = last_run(redis_client)
                    if run and run["reasons"] == {"no_surge": 2}:
                        calm.add(run["ts_ms"])
                    return len(calm) >= 12

                wait_for(quiet, 60, "12 calm passes of both symbols with enough history", alive)
                assert not Signal.objects.exists(), dump_logs(tmp_path)
                sim.control.surge("EURUSD", side="BUY", intensity=6.0, seconds=8.0)
                sim.control.surge("GBPUSD", side="BUY", intensity=6.0, seconds=8.0)

                # then one signal per symbol: EURUSD woken by its pre-screen, GBPUSD taken by a beat
                signals = wait_for(lambda: (s := list(Signal.objects.select_related("symbol"))) and len(s) >= 2 and s,
                                   20, "a signal for each symbol", alive)
                by_symbol = {s.symbol.name: s for s in signals}
                assert set(by_symbol) == {"EURUSD", "GBPUSD"}
                assert by_symbol["EURUSD"].hops["path"] == "event", by_symbol["EURUSD"].hops
                assert by_symbol["GBPUSD"].hops["path"] == "beat", by_symbol["GBPUSD"].hops
                assert int(redis_client.hget(tasks.WAKE_COUNT_KEY, "EURUSD") or 0) >= 1
                assert redis_client.hget(tasks.WAKE_COUNT_KEY, "GBPUSD") is None

                # the surge lasts 8 s: later wake-ups and beat passes are in cool-down
                seen = last_run(redis_client)["ts_ms"]
                wait_for(lambda: (r := last_run(redis_client))["ts_ms"] > seen + 3_000
                         and r["reasons"].get("cooldown") == 2, 15, "beat passes in cool-down", alive)
                assert Signal.objects.count() == 2

                # every (signal, account) pair ends filled — or skipped as price_moved, the shipped
                # deviation rule's named outcome when the surge has run away by the time a chunk
                # sends — and each fill has its hops
                def terminal():
                    orders = list(Order.objects.all())
                    return len(orders) == 2 * ACCOUNTS and all(o.status in TERMINAL for o in orders) and orders

                orders = wait_for(terminal, 60, "every order terminal", alive)
                outcomes = {(o.status, o.reason) for o in orders}
                assert outcomes <= {("filled", ""), ("skipped", "price_moved")}, sorted(outcomes)
                filled = {s.pk: {str(o.pk) for o in orders if o.signal_id == s.pk and o.status == "filled"}
                          for s in Signal.objects.all()}
                # fills to time: at least one signal reached the broker (a beat-path signal comes up to
                # 1 s into the surge, and all its orders can rightly be price_moved)
                assert any(filled.values()), filled

                def all_hops():
                    return all(set(s.hops.get("orders", {})) >= filled[s.pk] for s in Signal.objects.all())

                wait_for(all_hops, 10, "the order hops of every fill", alive)
                for s in Signal.objects.all():
                    for pk in filled[s.pk]:
                        assert hops.order_hops_monotonic(s.hops, int(pk)), (s.symbol_id, pk, s.hops)
                    b = hops.breakdown(s.hops)
                    print(s.symbol_id, s.hops["path"], b)
                    assert 0 <= b["to_signal_ms"] <= b["to_first_answer_ms"] <= b["to_last_answer_ms"]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{dump_logs(tmp_path)}") from exc
        finally:
            feed_redis.close()
