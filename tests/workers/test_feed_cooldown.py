"""The feed sends no wake-up for a symbol in its strategy's cool-down (issue 16).

After a symbol's signal, the analysis answers every wake-up ``cooldown`` until the strategy's
cool-down ends, whatever the market says; the pre-screen's re-looks would be messages and analysis
tasks on the CPU the signal's fan-out needs. The feed reads the woken symbols' last signal times
(the analysis' hash, ``signals.service.LAST_SIGNAL_KEY``) before it sends and keeps a symbol in
cool-down quiet until the cool-down ends; other symbols are woken as before.
"""

from __future__ import annotations

import threading
import time

import pytest

from matchtrader.simulator.testing import running_simulator
from signals.service import LAST_SIGNAL_KEY
from tests.factories import make_symbol
from tests.waiting import wait_for
from workers.feed import FeedConfig, FeedWorker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

COOLDOWN_MS = 2_000


class EveryTick:
    """A pre-screen that fires on every tick (the re-looks of a surge that goes on)."""

    def on_tick(self, ts_ms, price, volume):
        return True


def test_a_symbol_in_cool_down_is_not_woken_until_the_cool_down_ends(redis_client):
    woken: list[tuple[float, str]] = []
    lock = threading.Lock()

    def sink(wakes):
        with lock:
            woken.extend((time.time() * 1000.0, name) for name in wakes)

    def names_since(t_ms: float, until_ms: float = float("inf")) -> set[str]:
        with lock:
            return {name for at, name in woken if t_ms <= at < until_ms}

    with running_simulator(seed=3, symbols=("EURUSD", "GBPUSD"), tick_rate=20.0, history_minutes=5,
                           surges_per_hour=0.0) as sim:
        sim.control.create_account("feed@cooldown.test", "feed-pw")
        for name in ("EURUSD", "GBPUSD"):
            make_symbol(name, enabled=True)
        cfg = FeedConfig(base_url=sim.url, ws_url=sim.ws_url, email="feed@cooldown.test", password="feed-pw",
                         symbols_poll_s=0.2, warmup_minutes=5, prescreen=True)
        worker = FeedWorker(cfg, redis=redis_client, symbol_source=lambda: {"EURUSD", "GBPUSD"},
                            prescreen_source=lambda names: {n: (("every",), EveryTick, COOLDOWN_MS) for n in names},
                            wake_sink=sink)
        with worker.running():
            # given: both symbols woken on their ticks
            wait_for(lambda: names_since(0) == {"EURUSD", "GBPUSD"}, 20, "wake-ups of both symbols")

            # when: the analysis signals on EURUSD (its last signal time, as claim_cooldowns writes it)
            signalled_ms = time.time() * 1000.0
            redis_client.hset(LAST_SIGNAL_KEY, "EURUSD", int(signalled_ms))

            # then: after at most the wake-up already on its way, EURUSD is quiet; GBPUSD is still woken
            wait_for(lambda: worker.wakes_in_cooldown >= 1, 10, "a wake-up dropped for the cool-down")
            quiet_from = time.time() * 1000.0
            wait_for(lambda: "GBPUSD" in names_since(quiet_from + 500), 10, "GBPUSD woken on")
            assert "EURUSD" not in names_since(quiet_from, signalled_ms + COOLDOWN_MS), "a wake-up in the cool-down"
            dropped = worker.wakes_in_cooldown
            assert dropped >= 2  # its ticks kept firing: dropped without a read each (remembered)

            # and once the cool-down is over, EURUSD is woken again
            wait_for(lambda: "EURUSD" in names_since(signalled_ms + COOLDOWN_MS), 10, "EURUSD woken after the cool-down")
