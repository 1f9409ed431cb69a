"""The engine's columnar fast path (``Engine.run_stream``) against the per-event path it replaces
for streams known in advance: the same windows, the same pre-screen wake-ups, the same SL/TP
hits, the same trades — to the bit, on several seeds."""

from __future__ import annotations

import random
from decimal import Decimal as D

import numpy as np
import pytest

from backtest.data import bar_events, load_series
from backtest.engine import AccountSpec, Engine, EngineConfig, SymbolSetup
from backtest.stream import StreamWindows, stream_from_events
from backtest.windows import WindowBuilder
from marketdata.bars import Bar
from matchtrader.events import DepthEvent, QuoteEvent, TradeEvent
from matchtrader.simulator import fills
from matchtrader.simulator.instruments import SPECS
from signals.strategies import VolumeSurgePreScreen, get_strategy, wakeups
from signals.strategy import StrategyParams

EURUSD = load_series("backtesting:EURUSD", "EURUSD")


def irregular_events(seed: int, n: int = 3000, fractional: bool = False):
    """Quotes and prints with uneven gaps (several per ms, quiet seconds and minutes), prints with
    and without a side, so the tick rule, bar roll-overs and empty stretches all occur."""
    rng = random.Random(seed)
    t, mid, out = 1_700_000_000_000 + rng.randrange(60_000), 1.1, []
    for _ in range(n):
        t += rng.choice([0, 0, 1, 40, 150, 700, 1300, 65_000 if rng.random() < 0.02 else 90])
        mid = round(mid + rng.choice([-2, -1, 0, 0, 1, 2]) * 1e-5, 5)
        if rng.random() < 0.6:
            out.append(QuoteEvent("EURUSD", mid, round(mid + 8e-5, 5), t, t))
        else:
            vol = rng.choice([1.0, 2.0, 5.0, 30.0]) * (rng.random() + 0.5 if fractional else 1)
            out.append(TradeEvent("EURUSD", mid, vol, rng.choice([1, -1, 0]), t, t))
    return out


def history(first_ms: int, k: int = 30) -> list[Bar]:
    m0 = first_ms - first_ms % 60_000 - k * 60_000
    return [Bar(m0 + i * 60_000, 1.1, 1.1002, 1.0998, 1.1001, 10.0 + i, 4.0, 6.0, 7) for i in range(k)]


def assert_same_window(a, b):
    assert a.symbol == b.symbol and a.last_tick_ms == b.last_tick_ms and a.book is None and b.book is None
    for part in ("ticks", "bars_1s", "bars_1m"):
        x, y = getattr(a, part), getattr(b, part)
        for name in x.__slots__:
            u, v = getattr(x, name), getattr(y, name)
            if isinstance(u, np.ndarray):
                assert u.dtype == v.dtype, f"{part}.{name}"
                np.testing.assert_array_equal(u, v, err_msg=f"{part}.{name}")
            else:
                assert u == v


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stream_windows_equal_the_per_event_builders_after_every_event(seed):
    events = irregular_events(seed, fractional=seed == 3)
    hist = history(events[0].ts_ms) + ([Bar(events[400].ts_ms - events[400].ts_ms % 60_000, 1, 1, 1, 1)]
                                       if seed == 2 else [])  # history reaching into the stream
    stream = stream_from_events(events)
    announced = list(range(0, len(events) + 1, 7))
    sw = StreamWindows(stream, hist, announced)
    builder = WindowBuilder()
    builder.book("EURUSD").load_history(hist)
    assert_same_window(sw.window(0), builder.windows(["EURUSD"])["EURUSD"])
    for i, ev in enumerate(events, 1):
        builder.ingest(ev)
        if i % 7 == 0 or i % 11 == 0:  # announced reads, and some that were not announced
            assert_same_window(sw.window(i), builder.windows(["EURUSD"])["EURUSD"])


def test_streams_the_fast_path_cannot_take_are_refused():
    ev = irregular_events(1, 50)
    assert stream_from_events(ev[:10] + [DepthEvent("EURUSD", ((1.1, 1.0),), ((1.2, 1.0),), 1, 1)]) is None
    assert stream_from_events(ev[:10] + [QuoteEvent("GBPUSD", 1.3, 1.3001, ev[10].ts_ms, 0)]) is None
    assert stream_from_events(ev[:10] + [QuoteEvent("EURUSD", 1.1, 1.1001, ev[0].ts_ms - 1, 0)]) is None
    assert stream_from_events([]) is None


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_vectorised_prescreen_wakes_on_exactly_the_ticks_on_tick_does(seed):
    params = [StrategyParams(), StrategyParams(surge_min_ratio=1.5, surge_min_zscore=1.0, min_baseline_s=20,
                                               baseline_window_s=60, recent_window_s=3)][seed % 2]
    if seed <= 2:
        stream = stream_from_events(bar_events(EURUSD.slice(300 * seed, 300 * seed + 300), seed))
    else:
        stream = stream_from_events(irregular_events(seed, 20_000))
    per_tick = VolumeSurgePreScreen(params)
    expected = [i for i, (t, p, v) in enumerate(zip(stream.ts.tolist(), stream.price.tolist(),
                                                     stream.volume.tolist())) if per_tick.on_tick(t, p, v)]
    fast = VolumeSurgePreScreen(params).wakeups(stream.ts, stream.price, stream.volume)
    assert fast is not None and len(expected) > 5, "vectorised, and it does wake"
    assert fast.tolist() == expected


@pytest.mark.parametrize("traded", [False, True])
def test_the_vectorised_prescreen_follows_the_relook_schedule_of_on_tick(traded):
    """Long bursts (the test holds for seconds) and several episodes: the fast phase (a look every
    RELOOK_MS), the slow looks after it (one a beat period) and a new fast phase per episode are
    the same ticks both ways — tick counts and whole traded volumes alike."""
    rng = random.Random(11)
    t0, ts, vol = 1_700_000_000_000 + 337, [], []
    for second in range(240):
        burst = second % 60 in range(40, 45)  # 5 s bursts at 10x the rate, every minute
        n = 50 if burst else rng.randrange(3, 7)
        for k in range(n):
            ts.append(t0 + second * 1000 + int(k * 1000 / n) + rng.choice([0, 1, 3]))
            vol.append(float(rng.choice([1, 2, 3])) if traded else 0.0)
    ts_a, vol_a = np.array(sorted(ts), dtype=np.int64), np.array(vol)
    price = np.full(len(ts_a), 1.1)
    params = StrategyParams(baseline_window_s=30, min_baseline_s=10, recent_window_s=2)
    per_tick = VolumeSurgePreScreen(params)
    expected = [i for i, (t, v) in enumerate(zip(ts_a.tolist(), vol_a.tolist())) if per_tick.on_tick(t, 1.1, v)]
    fast = VolumeSurgePreScreen(params).wakeups(ts_a, price, vol_a)
    assert fast is not None and fast.tolist() == expected
    fired = ts_a[expected]
    gaps = np.diff(fired)
    episodes = 1 + int((gaps >= VolumeSurgePreScreen.REARM_MS + VolumeSurgePreScreen.REFIRE_MAX_MS).sum())
    assert episodes >= 3, "several episodes, each with its own fast phase"
    relooks = int(((gaps >= VolumeSurgePreScreen.RELOOK_MS) & (gaps < VolumeSurgePreScreen.RELOOK_MS + 25)).sum())
    slow = int(((gaps >= VolumeSurgePreScreen.REFIRE_MAX_MS) & (gaps < VolumeSurgePreScreen.REFIRE_MAX_MS + 25)).sum())
    assert relooks >= episodes * 10 and slow >= episodes, (relooks, slow, episodes)


def test_the_prescreen_falls_back_to_on_tick_when_it_cannot_be_exact():
    stream = stream_from_events(irregular_events(5, 5000, fractional=True))
    params = StrategyParams(surge_min_ratio=1.5, surge_min_zscore=1.0, min_baseline_s=20, baseline_window_s=60)
    assert VolumeSurgePreScreen(params).wakeups(stream.ts, stream.price, stream.volume) is None
    per_tick = VolumeSurgePreScreen(params)
    expected = [i for i, (t, p, v) in enumerate(zip(stream.ts.tolist(), stream.price.tolist(),
                                                     stream.volume.tolist())) if per_tick.on_tick(t, p, v)]
    assert wakeups(VolumeSurgePreScreen(params), stream.ts, stream.price, stream.volume).tolist() == expected


def test_the_vectorised_stop_scan_is_the_per_quote_rule():
    rng = np.random.default_rng(7)
    bids = np.round(1.1 + np.cumsum(rng.integers(-3, 4, 4000)) * 1e-5, 5)
    asks = np.round(bids + 8e-5, 5)
    cases = 0
    for side in (fills.BUY, fills.SELL):
        for _ in range(60):
            a, b = (float(x) for x in rng.choice(bids, 2))
            lo, hi = min(a, b), max(a, b)
            sl, tp = (lo, hi) if side == fills.BUY else (hi, lo)
            sl_d = D(repr(sl)) if rng.random() < 0.7 else D(repr(sl)) + D("0.000001")  # also off the float grid
            tp_d = None if rng.random() < 0.2 else D(repr(tp))
            start = int(rng.integers(0, 3000))
            expected = None
            for i in range(start, len(bids)):
                hit = fills.stop_trigger(side, sl_d, tp_d, D(repr(float(bids[i]))), D(repr(float(asks[i]))))
                if hit is not None:
                    expected = (i - start, *hit)
                    break
            got = fills.first_stop_trigger(side, sl_d, tp_d, bids[start:], asks[start:])
            assert got == expected
            cases += expected is not None
    assert cases > 50


def _both(events, setups, accounts, **cfg):
    a = Engine(setups, accounts, EngineConfig(**cfg)).run(events)
    b = Engine(setups, accounts, EngineConfig(**cfg)).run_stream(stream_from_events(events))
    return a, b


def _assert_same_result(a, b):
    for name in ("trades", "skips", "equity", "reasons", "passes", "wakeups", "events", "ticks", "first_ms",
                 "last_ms", "bars"):
        assert getattr(a, name) == getattr(b, name), name
    assert [(s.now_ms, s.tick_ms, s.side, s.strength, s.entry_price, s.stop_loss, s.take_profit, s.woken, s.bar)
            for s in a.signals] == [(s.now_ms, s.tick_ms, s.side, s.strength, s.entry_price, s.stop_loss,
                                     s.take_profit, s.woken, s.bar) for s in b.signals]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_stream_path_gives_the_per_event_paths_trades(seed):
    # eager parameters and a short time stop: many signals, SL/TP/time/opposite exits, two accounts
    params = {"surge_min_ratio": 1.5, "surge_min_zscore": 1.0, "time_stop_s": 30, "cooldown_ms": 5000}
    events = list(bar_events(EURUSD.slice(700 * seed, 700 * seed + 500), seed))
    accounts = [AccountSpec("A"), AccountSpec("B", D("2500"), "EUR", D("1"), max_open_positions=1)]
    a, b = _both(events, [SymbolSetup("EURUSD", SPECS["EURUSD"], params=params)], accounts, slippage_points=1)
    assert len(a.trades) >= 10 and {t.reason for t in a.trades} >= {"sl", "time"}
    _assert_same_result(a, b)


def test_the_stream_path_with_another_strategy_and_no_prescreen():
    events = list(bar_events(EURUSD.slice(0, 400), 9))
    setup = SymbolSetup("EURUSD", SPECS["EURUSD"], strategy="ma_cross")
    assert get_strategy("ma_cross")
    for prescreen in (True, False):
        a, b = _both(events, [setup], [AccountSpec()], use_prescreen=prescreen)
        assert a.trades
        _assert_same_result(a, b)


def test_the_stream_path_with_a_second_symbol_in_the_run_analyses_both_on_the_beat():
    # one streamed symbol plus one with history only: beats analyse both (the run-wide pass),
    # wake-ups the streamed one; the one-symbol shortcut of run_stream must not be taken
    events = list(bar_events(EURUSD.slice(300, 700), 4))
    params = {"surge_min_ratio": 1.5, "surge_min_zscore": 1.0, "time_stop_s": 30, "cooldown_ms": 5000}
    setups = [SymbolSetup("EURUSD", SPECS["EURUSD"], params=params), SymbolSetup("GBPUSD", SPECS["GBPUSD"])]
    hist = {"GBPUSD": history(events[0][0].ts_ms)}
    a = Engine(setups, [AccountSpec()], history=hist).run(events)
    b = Engine(setups, [AccountSpec()], history=hist).run_stream(stream_from_events(events))
    one = Engine(setups[:1], [AccountSpec()]).run_stream(stream_from_events(events))
    assert a.trades and a.reasons.get("stale_data", 0) >= a.passes - a.wakeups - 5  # GBPUSD: no ticks
    _assert_same_result(a, b)
    assert [t.open_ms for t in one.trades] == [t.open_ms for t in a.trades]
    assert sum(one.reasons.values()) + (a.passes - a.wakeups) == sum(a.reasons.values())


def test_the_stream_path_on_trade_prints_only_no_quote_ever():
    events = [TradeEvent("EURUSD", 1.1 + (i % 7) * 1e-5, 1.0, 1, 1_700_000_000_000 + i * 300, 0) for i in range(400)]
    a, b = _both(events, [SymbolSetup("EURUSD", SPECS["EURUSD"])], [AccountSpec()])
    assert a.passes > 100
    _assert_same_result(a, b)


def test_running_sums_are_the_rollers_sequential_sums_on_both_layouts():
    from backtest.stream import _running, _zero_plus

    rng = np.random.default_rng(3)
    values = rng.random(3000) * 1e3 - 100
    for lengths in (rng.integers(1, 25, 200), np.array([2000, 1, 3, 996])):  # a padded matrix, then stepped
        lengths = lengths[: np.searchsorted(np.cumsum(lengths), len(values))]
        n = int(lengths.sum())
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        expected_sum, expected_max = [], []
        for a, k in zip(starts.tolist(), lengths.tolist()):
            acc, hi = 0.0, values[a]
            for v in values[a:a + k].tolist():
                acc += v
                hi = v if v > hi else hi
                expected_sum.append(acc)
                expected_max.append(hi)
        assert _running(values[:n], starts, lengths, np.add, _zero_plus).tolist() == expected_sum
        assert _running(values[:n], starts, lengths, np.maximum).tolist() == expected_max


def test_the_stream_path_equals_the_per_event_path_under_an_enforced_prop_profile():
    from datetime import time

    from backtest.propcheck import PropMonitor, PropRules
    from prop import rules as R

    series = EURUSD.slice(1400, 1900)
    events = list(bar_events(series, 2))
    rules = PropRules("t", R.LossRules(R.Basis.BALANCE, D("60"), R.MaxLossMode.TRAILING, D("120")),
                      R.Caps(lots_per_day=D("2"), orders_per_day=12), R.Session("Europe/Prague"), time(0, 0),
                      "Europe/Prague", D("10000"), min_hold_s=60)
    setup = SymbolSetup("EURUSD", SPECS["EURUSD"], params={"surge_min_ratio": 1.5, "surge_min_zscore": 1.0,
                                                           "time_stop_s": 30, "cooldown_ms": 5000})
    out = []
    for fast in (False, True):
        monitor = PropMonitor([rules], ["A"], enforce=True)
        engine = Engine([setup], [AccountSpec("A", risk_pct=D("1"))], prop=monitor, bar_times=list(series.times_ms))
        res = engine.run_stream(stream_from_events(events)) if fast else engine.run(events)
        out.append((res, monitor.summary()))
    (a, pa), (b, pb) = out
    assert pa["total"] > 0 and pa == pb
    _assert_same_result(a, b)
