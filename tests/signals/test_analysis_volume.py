"""Volume analyzer against a hand-computed fixture (arithmetic in the comments)."""

import numpy as np
import pytest

from marketdata.windows import BarWindow, TickWindow
from signals.analysis.volume import analyse_volume, buy_ratio_of, buy_sell_volume, per_second_volume, tick_rule_sides


def ticks(ts, price, volume, side=None):
    n = len(ts)
    price = np.asarray(price, dtype=np.float64)
    return TickWindow(
        "T",
        np.asarray(ts, dtype=np.int64),
        price - 0.05,
        price + 0.05,
        price,
        np.asarray(volume, dtype=np.float64),
        np.zeros(n, dtype=np.int8) if side is None else np.asarray(side, dtype=np.int8),
    )


def bars_1s(ts, volume):
    n = len(ts)
    z = np.zeros(n)
    return BarWindow("T", "1s", np.asarray(ts, dtype=np.int64), z, z, z, z, np.asarray(volume, float), z, z, np.ones(n, dtype=np.int64))


# now = 100_999 ms -> current second 100; recent_s = 2 -> recent seconds 99, 100 (window 99_000..100_999 = 2.000 s)
# baseline_s = 4 -> seconds 95..98. The tick at 94_200 is the oldest: its second is only partly
# in the window, so coverage starts at second 95.
FIXTURE = dict(
    ts=[94_200, 95_100, 96_000, 97_500, 98_300, 99_000, 99_900, 100_200],
    price=[10.0, 10.1, 10.1, 10.0, 10.2, 10.3, 10.2, 10.4],
    volume=[1, 1, 2, 1, 2, 5, 3, 4],
)
NOW = 100_999
KW = dict(recent_s=2, baseline_s=4, min_baseline_s=4, min_ratio=3.0, min_zscore=3.0, strength_full_ratio=10.0)


def test_hand_computed_surge_from_ticks():
    # per second 95..100: [1, 2, 1, 2, 5+3, 4] = [1, 2, 1, 2, 8, 4]
    # baseline [1, 2, 1, 2]: mean 1.5, population std 0.5
    # recent volume 12 over 2.000 s -> rate 6; ratio 6 / 1.5 = 4
    # zscore (6 - 1.5) / max(0.5, 0.1 * 1.5) = 9
    # tick rule: prices 10.0 10.1 10.1 10.0 10.2 10.3 10.2 10.4 -> moves 0 + 0 - + + - +
    #   -> sides 0 +1 +1 -1 +1 +1 -1 +1; recent ticks (ts >= 99_000): vols 5, 3, 4 sides +1 -1 +1
    #   -> buy 9, sell 3, buy ratio 0.75
    # price change 10.4 - 10.2 (last price before the window) = 0.2 -> direction +1
    # strength (4 - 1) / (10 - 1) = 1/3
    v = analyse_volume(ticks(**FIXTURE), None, NOW, **KW)
    assert v.enough_history and v.baseline_seconds == 4
    assert v.recent_volume == 12.0
    assert v.recent_rate == 6.0
    assert v.baseline_rate == 1.5 and v.baseline_std == 0.5
    assert v.ratio == 4.0
    assert v.zscore == 9.0
    assert (v.buy_volume, v.sell_volume, v.buy_ratio) == (9.0, 3.0, 0.75)
    assert v.price_change == pytest.approx(0.2)
    assert v.direction == 1
    assert v.is_surge
    assert v.strength == pytest.approx(1 / 3)


def test_partly_elapsed_second_scales_the_rate():
    # now 100_499: the window 99_000..100_499 is 1.500 s long -> rate 12 / 1.5 = 8, ratio 8 / 1.5
    v = analyse_volume(ticks(**FIXTURE), None, 100_499, **KW)
    assert v.recent_rate == 8.0
    assert v.ratio == pytest.approx(8 / 1.5)


def test_thresholds_are_applied():
    v = analyse_volume(ticks(**FIXTURE), None, NOW, **{**KW, "min_ratio": 4.01})
    assert not v.is_surge and v.strength == 0.0
    v = analyse_volume(ticks(**FIXTURE), None, NOW, **{**KW, "min_zscore": 9.01})
    assert not v.is_surge
    v = analyse_volume(ticks(**FIXTURE), None, NOW, **{**KW, "min_recent_volume": 12.5})
    assert not v.is_surge


def test_bars_fill_the_baseline_before_the_tick_window():
    # ticks start at 97_500: they own seconds 98.. ; seconds 95, 96, 97 come from the 1 s bars.
    # The bar of second 98 (volume 100) is ignored because ticks cover that second.
    t = ticks(FIXTURE["ts"][3:], FIXTURE["price"][3:], FIXTURE["volume"][3:])
    b = bars_1s([95_000, 96_000, 97_000, 98_000], [1, 2, 1, 100])
    series, first_covered = per_second_volume(t, b, last_sec=100, n=6)
    assert series.tolist() == [1, 2, 1, 2, 8, 4]
    assert first_covered == 0
    v = analyse_volume(t, b, NOW, **KW)
    assert (v.ratio, v.zscore, v.baseline_seconds) == (4.0, 9.0, 4)


def test_short_history_is_not_enough():
    v = analyse_volume(ticks(**FIXTURE), None, NOW, **{**KW, "min_baseline_s": 5})
    assert not v.enough_history and not v.is_surge
    assert v.ratio == 0.0 and v.zscore == 0.0


def test_dead_baseline_is_not_enough():
    # all baseline seconds have zero volume: a ratio against 0 means nothing
    v = analyse_volume(ticks([94_500, 95_500, 100_100], [1, 1, 2], [1, 0, 5]), None, NOW, **KW)
    assert not v.enough_history


def test_empty_window():
    v = analyse_volume(TickWindow.empty("T"), None, NOW, **KW)
    assert not v.enough_history and v.buy_ratio == 0.5 and v.direction == 0


def test_tick_rule_zero_ticks_take_the_previous_side():
    # prices 1 1 2 2 1 1 1 3 -> moves 0 0 + 0 - 0 0 + -> 0 0 +1 +1 -1 -1 -1 +1
    sides = tick_rule_sides(np.array([1, 1, 2, 2, 1, 1, 1, 3.0]), np.zeros(8, dtype=np.int8))
    assert sides.tolist() == [0, 0, 1, 1, -1, -1, -1, 1]


def test_known_side_wins_over_the_tick_rule():
    # tick rule says +1 for the last tick (uptick) but the venue said sell
    sides = tick_rule_sides(np.array([1.0, 2.0, 3.0]), np.array([0, 1, -1], dtype=np.int8))
    assert sides.tolist() == [0, 1, -1]


def test_buy_sell_volume_uses_ticks_before_the_slice_for_the_rule():
    # sides over all: 0 +1 -1 ; slice from 1: vols 2 (buy), 3 (sell)
    assert buy_sell_volume(np.array([1.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0]), np.zeros(3, np.int8), 1) == (2.0, 3.0)


def test_buy_ratio_neutral_without_volume():
    assert buy_ratio_of(0.0, 0.0) == 0.5
    assert buy_ratio_of(3.0, 1.0) == 0.75


def test_tick_count_instead_of_volume():
    # counts per second 95..100 (the tick of second 94 is outside the coverage): [1, 1, 1, 1, 2, 1]
    # baseline [1, 1, 1, 1]: mean 1, std 0 -> z denominator max(0, 0.1 x 1) = 0.1
    # recent 3 ticks over 2.000 s -> rate 1.5; ratio 1.5; z (1.5 - 1) / 0.1 = 5
    # sides of the recent ticks +1 -1 +1 -> buy 2, sell 1
    v = analyse_volume(ticks(**FIXTURE), None, NOW, **KW, volume_source="ticks")
    assert v.volume_source == "ticks"
    assert (v.recent_volume, v.recent_rate, v.baseline_rate, v.baseline_std) == (3.0, 1.5, 1.0, 0.0)
    assert v.ratio == 1.5 and v.zscore == pytest.approx(5.0)
    assert (v.buy_volume, v.sell_volume) == (2.0, 1.0)
    assert not v.is_surge  # ratio 1.5 < 3


def test_auto_counts_ticks_only_without_traded_volume():
    quote_only = ticks(FIXTURE["ts"], FIXTURE["price"], [0] * 8)
    assert analyse_volume(quote_only, None, NOW, **KW).volume_source == "ticks"
    assert analyse_volume(ticks(**FIXTURE), None, NOW, **KW).volume_source == "volume"
    assert not analyse_volume(quote_only, None, NOW, **KW, volume_source="volume").enough_history


def test_tick_count_of_bars_comes_from_their_ticks_field():
    t = ticks(FIXTURE["ts"][3:], FIXTURE["price"][3:], FIXTURE["volume"][3:])
    b = bars_1s([95_000, 96_000, 97_000], [1, 2, 1])
    b = BarWindow("T", "1s", b.ts_ms, b.open, b.high, b.low, b.close, b.volume, b.buy_volume, b.sell_volume,
                  np.array([3, 4, 5], dtype=np.int64))
    series, _ = per_second_volume(t, b, last_sec=100, n=6, tick_count=True)
    assert series.tolist() == [3, 4, 5, 1, 2, 1]


def test_unknown_volume_source():
    with pytest.raises(ValueError, match="volume source"):
        analyse_volume(ticks(**FIXTURE), None, NOW, **KW, volume_source="trades")


def test_tick_rule_slice_takes_its_history_from_before_the_slice():
    # prices 1 2 2 2 | 2 2 3 2 from index 4: the last change before (1 -> 2) was up -> +1 +1 +1 -1
    price = np.array([1, 2, 2, 2, 2, 2, 3, 2.0])
    assert tick_rule_sides(price, np.zeros(8, np.int8), start=4).tolist() == [1, 1, 1, -1]
    # a change far back (more than one look-back block) is still found
    long_flat = np.concatenate(([1.0], np.full(1_000, 0.5)))
    assert tick_rule_sides(long_flat, np.zeros(1_001, np.int8), start=990).tolist() == [-1] * 11
    # no change at all -> unknown
    assert tick_rule_sides(np.full(600, 3.0), np.zeros(600, np.int8), start=590).tolist() == [0] * 10
    # the slice equals the tail of the whole-window classification
    rng = np.random.default_rng(3)
    prices = 100 + np.cumsum(rng.choice([-1, 0, 0, 0, 1], size=2_000)) * 0.01
    whole = tick_rule_sides(prices, np.zeros(2_000, np.int8))
    for start in (0, 1, 500, 1_999):
        np.testing.assert_array_equal(tick_rule_sides(prices, np.zeros(2_000, np.int8), start), whole[start:])
