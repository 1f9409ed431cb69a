"""Backtest input (bars → deterministic ticks, validation) and the in-memory windows against the
feed's own Redis writer and reader."""

from __future__ import annotations

import numpy as np
import pytest

from backtest.data import BacktestDataError, TickPlan, bar_events, load_series
from backtest.engine import AccountSpec, Engine, EngineConfig, SymbolSetup
from backtest.windows import WindowBuilder
from marketdata.reader import read_windows
from marketdata.store import MarketDataWriter
from matchtrader.events import QuoteEvent, TradeEvent
from matchtrader.simulator.instruments import SPECS
from signals.analysis.synthetic import PlantedSurge, make_market_window
from signals.strategy import DEFAULT_PARAMS, evaluate
from tests.signals.fixtures import history_bars, window_events


def eurusd(n=300, start=0):
    return load_series("backtesting:EURUSD", "EURUSD").slice(start, start + n)


def test_ticks_from_bars_respect_ohlc_and_volume_and_are_reproducible_under_a_seed():
    series = eurusd(20)
    first = list(bar_events(series, seed=7))
    again = list(bar_events(series, seed=7))
    other = list(bar_events(series, seed=8))
    assert first == again and first != other
    for k, bar in enumerate(series.bars):
        bids = [ev.bid for ev, i in first if i == k and isinstance(ev, QuoteEvent)]
        vols = [ev.volume for ev, i in first if i == k and isinstance(ev, TradeEvent)]
        assert len(bids) == 60 and bids[0] == bar.open and bids[-1] == bar.close
        assert max(bids) == bar.high and min(bids) == bar.low
        assert sum(vols) == pytest.approx(float(bar.volume))
    ts = [ev.ts_ms for ev, _ in first if isinstance(ev, QuoteEvent)]
    assert ts[0] == series.times_ms[0] and set(np.diff(ts)) == {TickPlan().tick_interval_ms}


def test_a_backtest_is_deterministic_under_a_seed():
    def once(seed):
        engine = Engine([SymbolSetup("EURUSD", SPECS["EURUSD"])], [AccountSpec()])
        res = engine.run(bar_events(eurusd(600), seed))
        return [(s.now_ms, s.side, s.strength) for s in res.signals], [(t.open_ms, t.close_price, t.net) for t in res.trades]

    a, b = once(3), once(3)
    assert a == b and a[0], "same seed, same signals and trades (and there are some)"
    assert once(4) != a


def test_bad_input_gets_a_clear_error(tmp_path):
    with pytest.raises(BacktestDataError, match="unknown symbol 'NOPE'"):
        load_series("backtesting:EURUSD", "NOPE")
    with pytest.raises(BacktestDataError, match="no bars of EURUSD in the range"):
        load_series("backtesting:EURUSD", "EURUSD", start="2030-01-01", end="2030-02-01")
    with pytest.raises(BacktestDataError, match="ships no"):
        load_series("backtesting:NOPE", "EURUSD")
    bad = tmp_path / "bad.csv"
    bad.write_text(",Open,High,Low,Close,Volume\n2020-01-01 00:00,1.1,1.2,1.0,1.15,10\n2020-01-01 01:00,1.1,abc,1.0,1.1,5\n")
    with pytest.raises(BacktestDataError, match="corrupt CSV"):
        load_series(str(bad), "EURUSD")
    bad.write_text(",Open,High,Low,Close,Volume\n2020-01-01 00:00,1.1,1.2,1.0,1.15,10\n2020-01-01 01:00,1.1,1.0,1.2,1.1,5\n")
    with pytest.raises(BacktestDataError, match="line 3: OHLC inconsistent"):
        load_series(str(bad), "EURUSD")
    bad.write_text(",Open,High,Low,Close,Volume\n2020-01-01 00:00,1.1,1.2,1.0,nan,10\n")
    with pytest.raises(BacktestDataError, match="line 2: prices must be finite"):
        load_series(str(bad), "EURUSD")
    bad.write_text(",Open,High,Low,Close,Volume\n2020-01-01 01:00,1.1,1.2,1.0,1.1,10\n2020-01-01 00:00,1.1,1.2,1.0,1.1,10\n")
    with pytest.raises(BacktestDataError, match="line 3: time .* is not after"):
        load_series(str(bad), "EURUSD")
    with pytest.raises(BacktestDataError, match="No such file|no such file|not found|Errno"):
        load_series(str(tmp_path / "missing.csv"), "EURUSD")


@pytest.mark.parametrize("surge", [None, PlantedSurge(direction=1), PlantedSurge(direction=-1)])
def test_in_memory_windows_equal_what_the_feed_writes_and_the_reader_reads(redis_client, surge):
    w = make_market_window("EURUSD", seed=5, surge=surge, n_ticks=2_500, history_s=400)
    events = window_events(w)
    writer = MarketDataWriter(redis_client)
    writer.warmup_bars("EURUSD", history_bars(w), "1m")
    writer.ingest(events)
    assert writer.flush()
    writer.close()
    live = read_windows(redis_client, ["EURUSD"])["EURUSD"]

    builder = WindowBuilder()
    builder.book("EURUSD").load_history(history_bars(w))
    for ev in events:
        builder.ingest(ev)
    mine = builder.windows(["EURUSD"])["EURUSD"]

    for part in ("ticks", "bars_1s", "bars_1m"):
        a, b = getattr(live, part), getattr(mine, part)
        for name in a.__slots__:
            x, y = getattr(a, name), getattr(b, name)
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y, err_msg=f"{part}.{name}")
    assert live.last_tick_ms == mine.last_tick_ms
    np.testing.assert_array_equal(live.book.bid_sizes, mine.book.bid_sizes)
    now = live.last_tick_ms + 200
    assert evaluate(live, DEFAULT_PARAMS, now, None, 0.00001) == evaluate(mine, DEFAULT_PARAMS, now, None, 0.00001)


def test_the_engine_drives_the_strategys_prescreen_hook_between_beats():
    def once(prescreen):
        engine = Engine([SymbolSetup("EURUSD", SPECS["EURUSD"])], [AccountSpec()],
                        EngineConfig(use_prescreen=prescreen))
        return engine.run(bar_events(eurusd(800), 3))

    woken, beat_only = once(True), once(False)
    assert woken.wakeups > 0 and beat_only.wakeups == 0
    assert woken.passes == beat_only.passes + woken.wakeups
    early = [s for s in woken.signals if s.woken]
    assert early, "some signals come from a wake-up, between two beats"
    assert all(s.now_ms % 1000 != 0 or s.now_ms == s.tick_ms for s in early)
    # a wake-up only ever brings a signal forward: the first signal is no later than the beat's
    assert woken.signals[0].now_ms <= beat_only.signals[0].now_ms
