"""The feed's 1 m history against a broker that restarts, starts late, or left data from an
earlier run in Redis (the bug: a signal entry at 1.10 while the simulator's bid was 1.089).

Real simulator over a real socket, the run's own Redis; the feed in a thread. Every wait polls
a condition with a deadline."""

from __future__ import annotations

import contextlib
import socket
import time

import numpy as np
import pytest

from marketdata import redis_keys as keys
from marketdata.bars import Bar
from marketdata.health import read_gaps
from marketdata.reader import read_windows
from marketdata.store import MarketDataWriter
from matchtrader.events import QuoteEvent
from matchtrader.simulator.server import Simulator
from matchtrader.simulator.testing import running_simulator
from tests.workers.test_feed import FEED_EMAIL, FEED_PASSWORD, feed_config, sim, wait_until  # noqa: F401
from workers.feed import FeedConfig, FeedWorker

M = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def simulator_on(port: int, **config):
    """The real simulator on a FIXED port, so a test can stop it and start another one where the
    feed expects its broker; yields the in-process Simulator."""
    config = dict(dict(heartbeat_s=5.0, history_minutes=30, tick_rate=40), **config)
    with running_simulator(port=port, **config) as handle:
        handle.control.create_account(FEED_EMAIL, FEED_PASSWORD)
        yield handle.sim


def port_config(port: int, **kw) -> FeedConfig:
    base = dict(base_url=f"http://127.0.0.1:{port}", email=FEED_EMAIL, password=FEED_PASSWORD, symbols_poll_s=0.2,
                health_interval_s=0.2, warmup_minutes=30, warmup_retry_s=0.2, warmup_retry_max_s=1.0)
    base.update(kw)
    return FeedConfig(**base)


def sim_closes(simulator: Simulator, symbol: str) -> dict[int, float]:
    """The simulator's own closed M1 candles (what its /candles serves), close by open time."""
    return {int(c[0]): float(c[4]) for c in list(simulator.market.states[symbol].m1)}


def earlier_run(redis_client, symbol: str, price: float) -> None:
    """What a previous run (another simulator price path) left in Redis: 30 closed 1 m bars up to
    the last minute, and ticks a few seconds old."""
    now = int(time.time() * 1000)
    minute = now // M * M
    w = MarketDataWriter(redis_client)
    w.warmup_bars(symbol, [Bar(minute - k * M, price, price + 2e-4, price - 2e-4, price, 10.0, 0, 0, 10)
                           for k in range(30, 0, -1)])
    w.ingest([QuoteEvent(symbol, price, price + 8e-5, now - 3000 + k, now - 3000 + k) for k in range(100)])
    assert w.flush()
    w.close()


def test_feed_started_over_an_earlier_runs_data_does_not_mix_the_two_price_paths(sim, redis_client):
    # given: Redis holds EURUSD around 1.10 from an earlier run; the simulator restarted from its
    # seed and quotes around 1.085
    earlier_run(redis_client, "EURUSD", 1.10073)
    assert abs(read_windows(redis_client, ["EURUSD"])["EURUSD"].bars_1m.close[-1] - 1.10073) < 1e-3
    worker = FeedWorker(feed_config(sim), redis=redis_client, symbol_source=lambda: {"EURUSD"})
    bid = sim.sim.market.quote("EURUSD")[0]
    with worker.running():
        # (the old stream is long already: wait for 40 ticks of the live path)
        wait_until(lambda: (len(t := read_windows(redis_client, ["EURUSD"], ticks=5000)["EURUSD"].ticks) >= 40
                            and abs(t.bid[-40:] - bid).max() < 0.005), what="40 live EURUSD ticks")
        win = read_windows(redis_client, ["EURUSD"], ticks=5000)["EURUSD"]
    # then: the window holds only the simulator's path: history, ticks, quote
    assert abs(win.ticks.bid - bid).max() < 0.005, win.ticks.bid.max()
    assert len(win.bars_1m) >= 25
    assert np.abs(win.bars_1m.close - bid).max() < 0.005, win.bars_1m.close
    assert (np.diff(win.bars_1m.ts_ms) > 0).all()
    assert [g["reason"] for g in read_gaps(redis_client)].count("source_reset") == 1


def test_broker_up_after_the_feed_the_warmup_is_retried_and_live_ticks_flow_meanwhile(redis_client):
    port = free_port()
    worker = FeedWorker(port_config(port), redis=redis_client, symbol_source=lambda: {"EURUSD", "USDJPY"})
    worker.transport.backoff_base = 0.05
    with worker.running():
        # given: the feed runs, its broker is not up: the warm-up failed, and failed again on retry
        wait_until(lambda: set(worker.warmup_pending()) == {"EURUSD", "USDJPY"}
                   and min(worker.warmup_pending().values()) >= 2, what="retried warm-ups")
        assert worker.symbols == {"EURUSD", "USDJPY"}  # subscribed without waiting for the history
        # when: the broker comes up
        with simulator_on(port, seed=3):
            wait_until(lambda: redis_client.xlen(keys.ticks_stream("EURUSD")) >= 5, timeout=20, what="live ticks")
            # then: the history is loaded by a retry, without any restart
            wait_until(lambda: not worker.warmup_pending(), timeout=20, what="warm-ups done")
            wins = read_windows(redis_client, ["EURUSD", "USDJPY"])
    for w in wins.values():
        assert len(w.bars_1m) >= 25
        assert (np.diff(w.bars_1m.ts_ms) > 0).all()


@pytest.mark.parametrize("how", ["after a long gap", "noticed by its sequence numbers"])
def test_simulator_restarted_on_another_path_while_the_feed_runs(redis_client, how):
    long_gap = how == "after a long gap"
    port = free_port()
    cfg = port_config(port, rewarmup_gap_s=0.5 if long_gap else 600)
    worker = FeedWorker(cfg, redis=redis_client, symbol_source=lambda: {"EURUSD"})
    worker.transport.backoff_base = 0.2
    with worker.running():
        with simulator_on(port, seed=3):
            wait_until(lambda: redis_client.xlen(keys.ticks_stream("EURUSD")) >= 20, what="ticks from sim 1")
            wait_until(lambda: not worker.warmup_pending(), what="history of sim 1")
        # when: the simulator restarts with another seed (another price path) where the feed expects it
        wait_until(lambda: worker.writer.connection_state == "disconnected", what="the feed to see the outage")
        if long_gap:
            time.sleep(0.6)  # the outage must LAST longer than rewarmup_gap_s: a duration, not a sync
        with simulator_on(port, seed=5) as sim2:
            reset = wait_until(lambda: [g for g in read_gaps(redis_client) if g["reason"] == "source_reset"],
                               timeout=20, what="source reset")
            reconnect = [g for g in read_gaps(redis_client) if g["reason"] == "reconnect"][0]
            n = redis_client.xlen(keys.ticks_stream("EURUSD"))
            wait_until(lambda: redis_client.xlen(keys.ticks_stream("EURUSD")) >= n + 10, what="ticks after reset")
            win = read_windows(redis_client, ["EURUSD"], ticks=5000, include_forming=False)["EURUSD"]
            closes = sim_closes(sim2, "EURUSD")
    # then: no tick of the first simulator is left, and the 1 m history is the second one's
    assert win.ticks.ts_ms.min() > int(reconnect["from_ms"])
    assert int(reset[0]["recorded_ms"]) >= int(reconnect["to_ms"])
    assert len(win.bars_1m) >= 25 and (np.diff(win.bars_1m.ts_ms) > 0).all()
    # (minutes closed before the reset are the broker's candles; later ones the feed rolls itself)
    history_end = int(reset[0]["recorded_ms"])
    common = [(c, closes[t]) for t, c in zip(win.bars_1m.ts_ms.tolist(), win.bars_1m.close.tolist())
              if t in closes and t + M <= history_end]
    assert len(common) >= 25 and all(a == b for a, b in common)
