"""Sockets cut every 5 s: the feed reconnects at once after a session that delivered data (the
backoff resets on data, not on wall time), keeps ≥ 95 % of the quotes, and reports "degraded"
while reconnect gaps are recent (feed_status, healthcheck)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from marketdata import redis_keys as keys
from marketdata.health import read_health
from matchtrader.simulator.testing import running_simulator
from tests.factories import make_symbol
from tests.waiting import wait_for
from dashboard.health import check_feed
from workers.feed import FeedConfig, FeedWorker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TICK_RATE = 20.0
WINDOW_S = 16.0


def test_socket_dropped_every_5s_keeps_95_percent_of_quotes_and_reports_degraded(redis_client):
    with running_simulator(seed=5, tick_rate=TICK_RATE, history_minutes=5, surges_per_hour=0.0) as sim:
        sim.control.create_account("feed@drops.test", "feed-pw")
        make_symbol("EURUSD", enabled=True)
        n_instruments = len(sim.sim.market.states)  # every instrument ticks on every step
        cfg = FeedConfig(base_url=sim.url, email="feed@drops.test", password="feed-pw", symbols_poll_s=0.2,
                         health_interval_s=0.2, warmup_minutes=5)
        worker = FeedWorker(cfg, redis=redis_client)
        stream = keys.ticks_stream("EURUSD")
        with worker.running():
            wait_for(lambda: redis_client.xlen(stream) >= 20, 20, "EURUSD ticks")
            sim.control.set_faults(ws_drop_every_s=5.0)
            # measure over a window of the simulator's own tick count (one symbol's quotes = steps)
            ticks0, stored0 = sim.control.stats()["ticks"], redis_client.xlen(stream)
            wait_for(lambda: sim.control.stats()["ticks"] - ticks0 >= WINDOW_S * TICK_RATE * n_instruments,
                     WINDOW_S * 3, "the measurement window", interval=0.2)
            ticks1 = sim.control.stats()["ticks"]
            wait_for(lambda: redis_client.xlen(stream) - stored0 >= 1, 5, "ingestion")  # flush
            stored1 = redis_client.xlen(stream)
            sim.control.set_faults(ws_drop_every_s=0.0)
            health = wait_for(lambda: (h := read_health(redis_client)).degraded() and h, 10, "degraded health")
        steps = (ticks1 - ticks0) / n_instruments
        kept = (stored1 - stored0) / steps
        assert int(health.process.get("reconnects", 0)) >= 2
        assert kept >= 0.95, f"kept {kept:.1%} of {steps:.0f} quotes"
        assert "reconnect gap(s) in the last 60s" in health.degraded()[0]
        result = check_feed(redis_client, 15.0)
        assert not result.ok and result.detail.startswith("degraded:")
        out = io.StringIO()
        call_command("feed_status", "--json", "--max-age", "60", stdout=out)
        assert json.loads(out.getvalue())["status"] == "degraded"

