"""Parity: the live path and the backtest give the same signals on the same ticks.

Live: simulator (real socket) → feed (thread) → Redis → ``signals.service.run_analysis`` (what the
beat task runs) → Signal rows. The test records, at the feed's writer, every event it ingested and
the 1 m warm-up history it loaded, and the times at which the analysis ran. To know exactly which
ticks each live pass saw, the simulator is paused before a pass and the pass runs once Redis holds
every recorded tick (the tape length equals the recorded tick count).

Backtest: ``backtest.engine.Engine`` replays the recorded events with the same warm-up bars and
runs its passes at the same times after the same number of events (``schedule``).

Same: every pass's decision reason, and every signal's tick_at, side, strength, entry, SL, TP and
time stop (converted to a Signal row by the live service's own ``build_signal``). A BUY surge and
then a SELL surge are planted, so both sides' exit plans (SL below / above the entry) are compared.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import redis as redis_lib
from django.conf import settings

from backtest.engine import AccountSpec, Engine, SymbolSetup
from marketdata import redis_keys
from matchtrader.events import QuoteEvent, TradeEvent
from matchtrader.simulator.instruments import SPECS
from matchtrader.simulator.testing import running_simulator
from signals import service
from signals.models import Signal, StrategyConfig
from tests.factories import make_symbol
from tests.waiting import wait_for
from workers.feed import FeedConfig, FeedWorker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PARAMS = {  # short windows so the test has history within seconds (as in test_beat_e2e)
    "baseline_window_s": 60, "min_baseline_s": 8, "recent_window_s": 3, "use_swing_levels": False,
    "rsi_overbought": 100.0, "rsi_oversold": 0.0, "cooldown_ms": 4_000,
}


class Recorder:
    """Taps the feed's writer: the events it ingests and the history bars it loads."""

    def __init__(self, writer):
        self.events: list = []
        self.history: list = []
        self.ticks = 0
        ingest, load_history = writer.ingest, writer.load_history

        def tap_ingest(events):
            events = list(events)
            self.events.extend(events)
            self.ticks += sum(1 for e in events if type(e) in (QuoteEvent, TradeEvent))
            return ingest(events)

        def tap_history(symbol, bars, timeframe="1m"):
            self.history.extend(bars)
            return load_history(symbol, bars, timeframe)

        writer.ingest, writer.load_history = tap_ingest, tap_history


def test_live_path_and_backtest_give_the_same_signals(redis_client):
    symbol = make_symbol("EURUSD", digits=5, tick_size=Decimal("0.00001"), enabled=True)
    StrategyConfig.objects.create(params=PARAMS)
    passes: list[tuple[int, int]] = []
    live_reasons: list[dict] = []
    with running_simulator(seed=23, symbols=("EURUSD",), tick_rate=10.0, history_minutes=60,
                           surges_per_hour=0.0) as sim:
        sim.control.create_account("feed@parity.test", "feed-pw-1")
        feed_redis = redis_lib.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
        feed = FeedWorker(FeedConfig.from_settings(base_url=sim.url, ws_url=sim.ws_url, email="feed@parity.test",
                                                   password="feed-pw-1", broker_id="0", warmup_minutes=60),
                          redis=feed_redis, symbol_source=lambda: {"EURUSD"})
        rec = Recorder(feed.writer)
        tape = redis_keys.tape("EURUSD")

        def one_pass():
            seen = rec.ticks
            sim.control.market(paused=False)
            wait_for(lambda: rec.ticks >= seen + 16, 10, "new ticks")
            sim.control.market(paused=True)
            # every tick the feed recorded is in Redis, and stays so (the market is paused)
            wait_for(lambda: redis_client.strlen(tape) // redis_keys.TICK.size == rec.ticks and rec.history, 10,
                     "Redis holds every recorded tick")
            time.sleep(0.05)
            assert redis_client.strlen(tape) // redis_keys.TICK.size == rec.ticks
            n, now_ms = len(rec.events), int(time.time() * 1000)
            run = service.run_analysis(redis_client, now_ms)
            passes.append((n, now_ms))
            live_reasons.append(run.reasons)

        try:
            with feed.running():
                for _ in range(12):
                    one_pass()
                sim.control.surge("EURUSD", side="BUY", intensity=6.0, seconds=6.0)
                for _ in range(10):
                    one_pass()
                # let the BUY surge end and its cool-down pass (the last signal >= 6 s old; a surge can
                # signal more than once) before the SELL surge
                deadline = time.monotonic() + 40
                while time.monotonic() < deadline:
                    one_pass()
                    last = Signal.objects.order_by("-created_at").first()
                    if last is not None and time.time() - last.created_at.timestamp() > 6:
                        break
                # the baseline now holds the BUY surge's volume: a stronger SELL surge, stronger again
                # if the first gave no SELL (the path inside a surge varies with timing); every pass is
                # compared either way
                for intensity in (12.0, 24.0, 48.0):
                    sim.control.surge("EURUSD", side="SELL", intensity=intensity, seconds=6.0)
                    for _ in range(10):
                        one_pass()
                    if Signal.objects.filter(side="SELL").exists():
                        break
        finally:
            sim.control.market(paused=False)
            feed_redis.close()

    live = list(Signal.objects.order_by("created_at", "id"))
    assert live, f"the planted surges gave no live signal: {live_reasons}"
    assert live[0].side == "BUY" and "SELL" in {s.side for s in live}, (
        f"both sides, each with its exit plan, compared: {[s.side for s in live]}, reasons {live_reasons}")
    print(f"live signals: {[(s.side, str(s.strength)) for s in live]}; passes: {len(passes)}")

    engine = Engine([SymbolSetup("EURUSD", SPECS["EURUSD"], params=PARAMS)], [AccountSpec()],
                    history={"EURUSD": rec.history})
    res = engine.run(rec.events, schedule=passes)

    assert len(res.pass_log) == len(passes)
    assert live_reasons == [{reason: 1} for _, reasons in res.pass_log for reason in reasons.values()]
    fields = ("tick_at", "side", "strength", "entry_price", "stop_loss", "take_profit", "time_stop_seconds")
    replayed = [service.build_signal(symbol, s.decision) for s in res.signals]
    assert [tuple(getattr(s, f) for f in fields) for s in replayed] == [tuple(getattr(s, f) for f in fields)
                                                                         for s in live]
    assert [s.now_ms for s in res.signals] == [now for now, reasons in res.pass_log if "signal" in reasons.values()]
