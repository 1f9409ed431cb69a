"""The live feed's pre-screen on a calm replay of real EURUSD bars (the ``backtesting`` package's
hourly bars, expanded to ticks exactly as the simulator's replay and the backtest do).

The feed (``marketdata.feed_state.FeedState`` with the strategy's pre-screen installed, as
``workers.feed`` installs it) and the backtest engine drive the SAME hook on the same ticks: they
wake on the same ticks. The wake rate is the figure the README states, and every signal the
strategy gives on the replay was either woken by the pre-screen or taken by a beat pass.
"""

from __future__ import annotations

from backtest.data import bar_events, load_series
from backtest.engine import AccountSpec, Engine, SymbolSetup
from marketdata.feed_state import FeedState
from matchtrader.simulator.instruments import SPECS
from signals.strategies import get_strategy

BARS = 1_800  # 1,800 hourly bars → 3 h of feed time at the simulator's 10 ticks/s


def test_calm_eurusd_replay_wakes_rarely_on_the_same_ticks_as_the_backtest_and_no_signal_is_missed():
    series = load_series("backtesting:EURUSD", "EURUSD").slice(0, BARS)
    events = [ev for ev, _ in bar_events(series, seed=1)]
    strategy = get_strategy("volume_surge")

    # the live feed's state, fed in the feed's batches
    state = FeedState()
    state.set_prescreen("EURUSD", ("volume_surge", repr(strategy.default_params())),
                        strategy.prescreen(strategy.default_params()))
    for i in range(0, len(events), 50):
        state.ingest(events[i:i + 50])
    feed_wakes = state.take_wakes()

    engine = Engine([SymbolSetup("EURUSD", SPECS["EURUSD"])], [AccountSpec()])
    result = engine.run(bar_events(series, seed=1))

    feed_hours = (events[-1].ts_ms - events[0].ts_ms) / 3_600_000
    market_hours = BARS  # one bar = one hour of market
    per_feed_hour = len(feed_wakes) / feed_hours
    per_market_hour = len(feed_wakes) / market_hours
    print(f"pre-screen wake-ups: {len(feed_wakes)} over {feed_hours:.2f} feed hours = {per_feed_hour:.0f} per "
          f"symbol-hour of replay ({per_market_hour:.2f} per hour of market); signals {len(result.signals)} "
          f"({sum(s.woken for s in result.signals)} woken)")

    # the same hook on the same ticks: the same wake-ups
    assert len(feed_wakes) == result.wakeups
    # rare: a wake-up is a tick where the analysis' own surge test passes, looked at again every
    # RELOOK_MS during an episode's first FAST_PHASE_MS: 375 wake-ups = 0.21 per market hour, 125
    # per hour of this 600x-compressed replay (every 6 s a new hourly bar); the doubling schedule
    # before it gave 346 (0.19, 115)
    assert per_market_hour <= 0.25
    assert per_feed_hour <= 150

    # every signal: woken by the pre-screen (a wake-up on that very tick) or taken by a beat pass
    woken_at = {ts for _, ts, _ in feed_wakes}
    assert result.signals
    for s in result.signals:
        if s.woken:
            assert s.now_ms in woken_at
        else:
            assert s.now_ms % engine.config.analysis_period_ms == 0, "neither woken nor a beat pass"
    assert any(s.woken for s in result.signals)
