"""The strategy interface (signals.strategies): registry, per-symbol choice, pre-screen hook, and
the second strategy (moving-average cross)."""

from __future__ import annotations

import numpy as np
import pytest

from marketdata.windows import BarWindow
from signals import service
from signals.analysis.synthetic import PlantedSurge, make_market_window
from signals.models import StrategyConfig
from signals.strategies import STRATEGIES, VolumeSurgePreScreen, get_strategy
from signals.strategy import DEFAULT_PARAMS, Reason, Side, StrategyParams, StrategyParamsError, analyse_all
from tests.factories import make_symbol

NOW = 1_700_000_000_000
TICK = 0.00001


def test_registry_has_both_strategies_and_refuses_an_unknown_name():
    assert {"volume_surge", "ma_cross"} <= set(STRATEGIES)
    assert get_strategy(None).name == "volume_surge"
    with pytest.raises(StrategyParamsError, match="unknown strategy 'nope'"):
        get_strategy("nope")


def test_volume_surge_through_the_interface_is_the_same_decision_as_evaluate():
    window = make_market_window(now_ms=NOW, seed=3, surge=PlantedSurge(direction=1))
    strategy = get_strategy("volume_surge")
    via_interface = analyse_all([window], {"EURUSD": DEFAULT_PARAMS}, NOW, {}, {"EURUSD": TICK},
                                {"EURUSD": strategy})["EURUSD"]
    direct = analyse_all([window], {"EURUSD": DEFAULT_PARAMS}, NOW, {}, {"EURUSD": TICK})["EURUSD"]
    assert via_interface == direct
    assert direct.side is Side.BUY


def test_prescreen_wakes_on_a_surge_every_tick_or_two_at_first_then_once_a_beat_and_not_on_a_steady_rate():
    ps = VolumeSurgePreScreen(StrategyParams(baseline_window_s=60, min_baseline_s=10))
    woke = []
    t = NOW
    for second in range(70):  # 5 ticks a second: steady
        for k in range(5):
            woke.append(ps.on_tick(t + second * 1000 + k * 200, 1.1, 0.0))
    assert not any(woke)
    fired = []
    tick_ms = 20
    for second in range(70, 76):  # 50 ticks a second (the bench's rate) for 6 s
        for k in range(1000 // tick_ms):
            ts = t + second * 1000 + k * tick_ms
            if ps.on_tick(ts, 1.1, 0.0):
                fired.append(ts)
    # 10x the rate against a 5 s recent window: the analysis' ratio needs about 1 s of it
    assert fired and t + 71_000 <= fired[0] < t + 73_000, "wakes as soon as the analysis' surge test passes"
    gaps = [(a - fired[0], b - a) for a, b in zip(fired, fired[1:])]
    fast = [g for at, g in gaps if at < VolumeSurgePreScreen.FAST_PHASE_MS]
    slow = [g for at, g in gaps if at >= VolumeSurgePreScreen.FAST_PHASE_MS]
    # the fast phase: a re-look at the first tick RELOOK_MS after the last one (every tick here),
    # so evidence that arrives during the first second waits at most RELOOK_MS + one tick for a look
    assert fast and all(VolumeSurgePreScreen.RELOOK_MS <= g < VolumeSurgePreScreen.RELOOK_MS + tick_ms
                        for g in fast), fast
    assert len(fast) >= VolumeSurgePreScreen.FAST_PHASE_MS // (VolumeSurgePreScreen.RELOOK_MS + tick_ms) - 1
    # then once a beat period (the beat looks that often anyway)
    assert slow and all(VolumeSurgePreScreen.REFIRE_MAX_MS <= g < VolumeSurgePreScreen.REFIRE_MAX_MS + tick_ms
                        for g in slow), slow
    # the stated bound: FAST_PHASE_MS / RELOOK_MS + 1 looks in the fast phase, then one a second
    bound = VolumeSurgePreScreen.FAST_PHASE_MS // VolumeSurgePreScreen.RELOOK_MS + 1 + 5
    assert len(fired) <= bound, f"a 6 s surge costs a bounded number of looks: {len(fired)} > {bound}"


def test_prescreen_starts_a_new_episode_at_the_short_interval_once_the_test_stopped_holding():
    ps = VolumeSurgePreScreen(StrategyParams(baseline_window_s=60, min_baseline_s=10, recent_window_s=2))
    t = NOW

    def run(first_second: int, seconds: int, rate: int) -> list[int]:
        fired = []
        for second in range(first_second, first_second + seconds):
            for k in range(rate):
                ts = t + second * 1000 + int(k * 1000 / rate)
                if ps.on_tick(ts, 1.1, 0.0):
                    fired.append(ts)
        return fired

    assert not run(0, 70, 5)
    first = run(70, 4, 40)
    first += run(74, 1, 5)  # the 2 s recent window still holds the burst: the episode's slow looks
    assert not run(75, 29, 5), "calm again: quiet"
    second = run(104, 4, 40)
    tick_ms = 1000 // 40
    relook_ms = -(-VolumeSurgePreScreen.RELOOK_MS // tick_ms) * tick_ms  # the first tick RELOOK_MS on
    for fired in (first, second):  # each episode starts with its own fast phase (40 ticks/s: every tick)
        assert len(fired) >= 10 and fired[1] - fired[0] == relook_ms, fired
        assert fired[-1] - fired[-2] >= VolumeSurgePreScreen.REFIRE_MAX_MS, fired


def test_prescreen_is_a_necessary_condition_of_the_analysis_surge():
    """Wherever the analysis' own volume test (thresholds without the no-book multiplier) says
    surge at a tick, the pre-screen has fired in that second."""
    from signals.analysis.volume import analyse_volume

    params = StrategyParams(baseline_window_s=60, min_baseline_s=10)
    ps = VolumeSurgePreScreen(params)
    rng = np.random.default_rng(5)
    ts_list: list[int] = []
    fired_seconds: set[int] = set()
    fired_ts: list[int] = []
    t = NOW
    for second in range(200):
        rate = 40 if 120 <= second < 126 or 160 <= second < 163 else int(rng.integers(3, 8))
        for k in range(rate):
            ts = t + second * 1000 + int(k * 1000 / rate)
            ts_list.append(ts)
            if ps.on_tick(ts, 1.1, 0.0):
                fired_seconds.add(ts // 1000)
                fired_ts.append(ts)
    ts_arr = np.array(ts_list, dtype=np.int64)
    surges = 0
    for i in range(0, len(ts_list), 3):
        sub = _tick_window(ts_arr[: i + 1])
        vs = analyse_volume(sub, None, int(ts_arr[i]), recent_s=params.recent_window_s,
                            baseline_s=params.baseline_window_s, min_baseline_s=params.min_baseline_s,
                            min_ratio=params.surge_min_ratio, min_zscore=params.surge_min_zscore,
                            std_floor=params.zscore_std_floor, volume_source="ticks")
        if vs.is_surge:
            surges += 1
            # a wake-up at most one re-look interval (at most REFIRE_MAX_MS) before (or at) this tick
            assert any(0 <= int(ts_arr[i]) - f <= VolumeSurgePreScreen.REFIRE_MAX_MS for f in fired_ts), \
                f"analysis surge at tick {i} without a wake-up"
    assert surges > 0
    assert len(fired_seconds) <= 12, fired_seconds  # only in the two planted bursts (9 s) and their tail


def _tick_window(ts: np.ndarray):
    from marketdata.windows import TickWindow

    n = len(ts)
    p = np.full(n, 1.1)
    return TickWindow("EURUSD", ts, p, p, p, np.zeros(n), np.zeros(n, dtype=np.int8))


def _bars_1m(closes: list[float], now_ms: int) -> BarWindow:
    n = len(closes)
    ts = np.array([now_ms - (n - i) * 60_000 for i in range(n)], dtype=np.int64)
    c = np.array(closes, dtype=np.float64)
    z = np.zeros(n)
    return BarWindow("EURUSD", "1m", ts, c, c, c, c, z, z, z, np.ones(n, dtype=np.int64))


def test_ma_cross_buys_on_an_upward_cross_with_fixed_ticks_stops():
    strategy = get_strategy("ma_cross")
    params = strategy.parse_params({"fast": 2, "slow": 4, "sl_ticks": 10, "tp_ticks": 20})
    window = make_market_window(now_ms=NOW, seed=1)
    window.bars_1m = _bars_1m([1.1000, 1.0990, 1.0980, 1.0970, 1.0960, 1.1050], NOW)
    d = strategy.evaluate(window, params, NOW, None, TICK)
    assert d.reason is Reason.SIGNAL and d.side is Side.BUY
    assert round(d.exit.take_profit - d.exit.entry_price, 5) == 0.0002
    assert round(d.exit.entry_price - d.exit.stop_loss, 5) == 0.0001
    window.bars_1m = _bars_1m([1.1] * 6, NOW)
    assert strategy.evaluate(window, params, NOW, None, TICK).reason is Reason.NO_CROSS
    with pytest.raises(StrategyParamsError, match="fast"):
        strategy.parse_params({"fast": 0})


@pytest.mark.django_db
def test_a_symbol_row_chooses_its_strategy_and_the_default_row_only_applies_to_its_own():
    eur, gbp = make_symbol("EURUSD"), make_symbol("GBPUSD")
    StrategyConfig.objects.create(params={"surge_min_ratio": 4.0})
    StrategyConfig.objects.create(symbol=gbp, strategy="ma_cross", params={"fast": 3})
    chosen = service.load_strategies([eur, gbp])
    assert chosen["EURUSD"][0].name == "volume_surge" and chosen["EURUSD"][1].surge_min_ratio == 4.0
    assert chosen["GBPUSD"][0].name == "ma_cross" and chosen["GBPUSD"][1].fast == 3
