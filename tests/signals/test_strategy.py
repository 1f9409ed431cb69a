"""The strategy on synthetic windows: fires on a planted surge, stays quiet otherwise."""

import dataclasses
import json

import numpy as np
import pytest

from marketdata.windows import BarWindow
from signals.analysis.synthetic import DEFAULT_NOW_MS, PlantedSurge, make_flat_window, make_market_window
from signals.strategy import DEFAULT_PARAMS, Reason, Side, StrategyParams, analyse_all, evaluate, exit_plan

TICK = 0.00001
NOW = DEFAULT_NOW_MS


def run(window, params=DEFAULT_PARAMS, now_ms=NOW, last_signal_ms=None):
    return evaluate(window, params, now_ms, last_signal_ms, TICK)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_book", [True, False])
def test_planted_buy_surge_fires(seed, with_book):
    window = make_market_window(seed=seed, surge=PlantedSurge(direction=1), with_book=with_book)
    d = run(window)
    assert d.reason is Reason.SIGNAL and d.is_signal
    assert d.side is Side.BUY
    assert 0.0 < d.strength <= 1.0
    assert d.tick_ts_ms == window.last_tick_ms
    assert d.exit.stop_loss < d.exit.entry_price < d.exit.take_profit
    assert d.exit.entry_price == pytest.approx(window.ticks.ask[-1])
    assert d.exit.basis == "atr" and d.exit.time_stop_s == DEFAULT_PARAMS.time_stop_s
    f = d.features
    assert f["volume_ratio"] >= 3.0 and f["buy_ratio"] >= 0.6
    assert ("imbalance" in f) == with_book and f["book"] == ("present" if with_book else "absent")
    json.dumps(f, allow_nan=False)  # flat and JSON-serialisable
    assert all(isinstance(v, (int, float, str)) for v in f.values())


def test_planted_sell_surge_fires_a_sell():
    d = run(make_market_window(seed=0, surge=PlantedSurge(direction=-1)))
    assert d.side is Side.SELL
    assert d.exit.take_profit < d.exit.entry_price < d.exit.stop_loss
    assert d.features["imbalance"] <= -DEFAULT_PARAMS.min_imbalance


@pytest.mark.parametrize("seed", range(5))
def test_calm_market_stays_quiet(seed):
    d = run(make_market_window(seed=seed))
    assert d.reason is Reason.NO_SURGE and not d.is_signal and d.exit is None


def test_flat_market_stays_quiet():
    d = run(make_flat_window())
    assert d.reason is Reason.NO_SURGE
    assert d.features["volume_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert d.features["buy_ratio"] == 0.5


def test_cooldown_suppresses_a_second_signal():
    window = make_market_window(seed=0, surge=PlantedSurge())
    first = run(window)
    assert first.is_signal
    again = run(window, now_ms=NOW + 500, last_signal_ms=NOW)
    assert again.reason is Reason.COOLDOWN
    # after the cool-down the same conditions fire again (now_ms kept, the last signal long ago)
    assert run(window, last_signal_ms=NOW - DEFAULT_PARAMS.cooldown_ms).is_signal


def test_stale_data_gives_no_signal():
    window = make_market_window(seed=0, surge=PlantedSurge())
    late = NOW + DEFAULT_PARAMS.max_staleness_ms  # newest tick is 200 ms before NOW
    d = run(window, now_ms=late)
    assert d.reason is Reason.STALE_DATA
    assert d.features["staleness_ms"] == DEFAULT_PARAMS.max_staleness_ms + 200
    no_tick = dataclasses.replace(window, last_tick_ms=None)
    assert run(no_tick).reason is Reason.STALE_DATA


def test_insufficient_history_is_skipped_not_an_error():
    window = make_market_window(seed=0, surge=PlantedSurge(), n_ticks=200)
    window = dataclasses.replace(window, bars_1s=BarWindow.empty(window.symbol, "1s"))
    # 200 ticks cover far less than the 60 s of baseline needed
    assert run(window).reason is Reason.INSUFFICIENT_HISTORY


def test_missing_indicators_when_required():
    window = make_market_window(seed=0, surge=PlantedSurge(), n_bars_1m=10)
    assert run(window).is_signal  # RSI/ATR missing: filters skipped, exits from ticks
    assert run(window).exit.basis == "ticks"
    strict = StrategyParams(require_indicators=True)
    assert run(window, strict).reason is Reason.INSUFFICIENT_HISTORY


def test_no_book_uses_the_stricter_threshold():
    # seed 0's surge ratio is about 7.3: above 5 but below 5 x 1.5 = 7.5
    params = StrategyParams(surge_min_ratio=5.0)
    with_book = run(make_market_window(seed=0, surge=PlantedSurge()), params)
    without = run(make_market_window(seed=0, surge=PlantedSurge(), with_book=False), params)
    assert 5.0 < with_book.features["volume_ratio"] < 7.5
    assert with_book.is_signal
    assert without.reason is Reason.NO_SURGE


def test_book_leaning_against_the_surge_blocks():
    window = make_market_window(seed=0, surge=PlantedSurge(direction=1))
    b = window.book
    flipped = dataclasses.replace(b, bid_sizes=b.ask_sizes, ask_sizes=b.bid_sizes)
    d = run(dataclasses.replace(window, book=flipped))
    assert d.reason is Reason.IMBALANCE_DISAGREES and d.features["imbalance"] < 0


def test_wall_just_above_blocks_a_buy():
    # an ask wall on the 6th ask level, 5 ticks above the best ask (the entry): within
    # block_distance_ticks = 5, and outside the top-5 levels of the imbalance
    window = make_market_window(seed=0, surge=PlantedSurge(direction=1), walls=((6, 10.0),))
    d = run(window)
    assert d.reason is Reason.INTO_WALL
    assert d.features["resistance_ticks"] == pytest.approx(5)
    assert d.features["wall_count"] == 1
    # a blocking distance shorter than the wall's distance lets the trade through
    assert run(window, StrategyParams(block_distance_ticks=4.0)).is_signal


def test_flow_against_the_price_blocks():
    window = make_market_window(seed=0, surge=PlantedSurge(direction=1))
    sells = dataclasses.replace(window.ticks, side=np.full(len(window.ticks), -1, dtype=np.int8))
    d = run(dataclasses.replace(window, ticks=sells))
    assert d.reason is Reason.FLOW_DISAGREES and d.features["buy_ratio"] == 0.0


def test_unchanged_price_is_unclear():
    window = make_market_window(seed=0, surge=PlantedSurge(direction=1))
    n = len(window.ticks)
    flat = dataclasses.replace(window.ticks, price=np.full(n, 1.1), side=np.ones(n, dtype=np.int8))
    assert run(dataclasses.replace(window, ticks=flat)).reason is Reason.DIRECTION_UNCLEAR


def test_rsi_extreme_blocks():
    d = run(make_market_window(seed=0, surge=PlantedSurge(direction=1)), StrategyParams(rsi_overbought=50.0))
    assert d.reason is Reason.RSI_EXTREME and d.features["rsi"] >= 50.0


def test_ema_trend_filter_when_required():
    window = make_market_window(seed=0, surge=PlantedSurge(direction=1))
    d = run(window)
    trend_up = d.features["ema_fast"] > d.features["ema_slow"]
    gated = run(window, StrategyParams(require_ema_trend=True))
    assert gated.is_signal == trend_up
    if not trend_up:
        assert gated.reason is Reason.TREND_DISAGREES


def test_min_strength():
    d = run(make_market_window(seed=0, surge=PlantedSurge()), StrategyParams(min_strength=1.0))
    assert d.reason is Reason.WEAK


def test_exit_plan_from_atr_hand_computed():
    # tick 0.0001, entry 1.2345, ATR 0.00123, SL 1 x ATR, TP 1.5 x ATR (defaults)
    # BUY:  SL 1.2345 - 0.00123 = 1.23327 -> floor to grid 1.2332; TP 1.2345 + 0.001845 = 1.236345 -> ceil 1.2364
    # SELL: SL 1.23573 -> ceil 1.2358; TP 1.232655 -> floor 1.2326
    buy = exit_plan(Side.BUY, 1.2345, 0.00123, 0.0001, DEFAULT_PARAMS)
    assert (buy.stop_loss, buy.take_profit, buy.entry_price, buy.basis) == (1.2332, 1.2364, 1.2345, "atr")
    sell = exit_plan(Side.SELL, 1.2345, 0.00123, 0.0001, DEFAULT_PARAMS)
    assert (sell.stop_loss, sell.take_profit) == (1.2358, 1.2326)


def test_exit_plan_from_ticks_without_atr():
    # sl_ticks 20, tp_ticks 30 at tick 0.00001 from 1.10066
    plan = exit_plan(Side.BUY, 1.10066, float("nan"), TICK, DEFAULT_PARAMS)
    assert (plan.stop_loss, plan.take_profit, plan.basis) == (1.10046, 1.10096, "ticks")


def test_exit_plan_keeps_a_minimum_distance():
    # ATR of a tenth of a tick: min_stop_ticks = 2 -> 2 ticks each side
    plan = exit_plan(Side.SELL, 100.0, 0.001, 0.01, DEFAULT_PARAMS)
    assert (plan.stop_loss, plan.take_profit) == (100.02, 99.98)


def test_analyse_all_isolates_failures():
    windows = {
        "A": make_market_window("A", seed=0, surge=PlantedSurge()),
        "B": make_market_window("B", seed=1),
        "C": make_market_window("C", seed=2),
    }
    decisions = analyse_all(windows, {"B": StrategyParams(surge_min_ratio=2.0)}, NOW, {}, {"A": TICK, "B": TICK})
    assert decisions["A"].is_signal
    assert decisions["B"].reason is Reason.NO_SURGE
    assert decisions["C"].reason is Reason.ANALYSIS_ERROR  # no tick size for C
    assert "KeyError" in decisions["C"].features["error"]
    # a plain iterable of windows works too, and the cool-down map is honoured
    again = analyse_all(windows.values(), {}, NOW, {"A": NOW - 1}, {"A": TICK, "B": TICK, "C": TICK})
    assert again["A"].reason is Reason.COOLDOWN and again["C"].reason is Reason.NO_SURGE


def test_venue_clock_ahead_of_ours_still_sees_the_surge():
    # our clock 3 s behind the venue: staleness is negative, the window anchors on the newest tick
    window = make_market_window(seed=0, surge=PlantedSurge())
    d = run(window, now_ms=NOW - 3_000)
    assert d.is_signal and d.features["staleness_ms"] == -2_800


def test_bad_tick_size_is_an_error_not_a_signal():
    with pytest.raises(ValueError, match="tick_size must be > 0"):
        evaluate(make_market_window(seed=0), DEFAULT_PARAMS, NOW, None, 0.0)


def test_quote_only_source_works_from_tick_counts():
    # the real Match-Trader case: no book, no traded volume, only quote updates
    window = make_market_window(seed=0, surge=PlantedSurge(), with_book=False)
    quotes = dataclasses.replace(window.ticks, volume=np.zeros(len(window.ticks)))
    bars = dataclasses.replace(window.bars_1s, volume=np.zeros(len(window.bars_1s)))
    quote_only = dataclasses.replace(window, ticks=quotes, bars_1s=bars)
    d = run(quote_only)
    assert d.is_signal and d.side is Side.BUY
    assert d.features["volume_source"] == "ticks" and d.features["book"] == "absent"
    assert run(quote_only, StrategyParams(volume_source="volume")).reason is Reason.INSUFFICIENT_HISTORY


def test_too_small_a_move_is_unclear():
    window = make_market_window(seed=0, surge=PlantedSurge())
    moved = run(window).features["move_ticks"]
    d = run(window, StrategyParams(min_move_ticks=moved + 1))
    assert d.reason is Reason.DIRECTION_UNCLEAR
