"""The bar roller against hand-computed series (pure: no Redis)."""

from __future__ import annotations

import pytest

from marketdata.bars import Bar, BarRoller, roll

T0 = 1_700_000_040_000  # a whole minute (…:00.000 UTC)


def test_one_second_bars_hand_computed():
    # given: ticks over three seconds; prints with known sides, quotes (volume 0) in between
    ticks = [
        (T0 + 100, 1.10, 0.0, 0),  # quote mid opens second 0
        (T0 + 200, 1.12, 2.0, 1),  # buy print, new high
        (T0 + 900, 1.09, 3.0, -1),  # sell print, new low, closes second 0
        (T0 + 1_000, 1.11, 1.0, 1),  # second 1 opens exactly on the boundary
        (T0 + 1_999, 1.115, 0.0, 0),
        (T0 + 3_500, 1.08, 4.0, -1),  # second 2 is empty (no bar); second 3 forms
    ]
    closed_1s, closed_1m, f1s, f1m = roll(ticks)
    # then
    assert closed_1s == [
        Bar(T0, 1.10, 1.12, 1.09, 1.09, 5.0, 2.0, 3.0, 3),
        Bar(T0 + 1_000, 1.11, 1.115, 1.11, 1.115, 1.0, 1.0, 0.0, 2),
    ]
    assert closed_1m == []
    assert f1s == Bar(T0 + 3_000, 1.08, 1.08, 1.08, 1.08, 4.0, 0.0, 4.0, 1)
    # the forming minute merges the closed seconds and the forming one
    assert f1m == Bar(T0, 1.10, 1.12, 1.08, 1.08, 10.0, 3.0, 7.0, 6)


def test_minute_bar_closes_on_first_tick_of_next_minute():
    ticks = [
        (T0 + 5_000, 100.0, 1.0, 1),
        (T0 + 30_000, 101.0, 2.0, 1),
        (T0 + 59_999, 99.0, 1.5, -1),
        (T0 + 60_000, 99.5, 1.0, 1),  # next minute
        (T0 + 125_000, 98.0, 1.0, -1),  # skips minute 2 entirely
    ]
    closed_1s, closed_1m, f1s, f1m = roll(ticks)
    assert [b.ts_ms for b in closed_1s] == [T0 + 5_000, T0 + 30_000, T0 + 59_000, T0 + 60_000]
    assert closed_1m == [
        Bar(T0, 100.0, 101.0, 99.0, 99.0, 4.5, 3.0, 1.5, 3),
        Bar(T0 + 60_000, 99.5, 99.5, 99.5, 99.5, 1.0, 1.0, 0.0, 1),
    ]
    assert f1m == Bar(T0 + 120_000, 98.0, 98.0, 98.0, 98.0, 1.0, 0.0, 1.0, 1)


def test_unknown_side_uses_tick_rule_including_zero_ticks():
    ticks = [
        (T0 + 0, 10.0, 1.0, 0),  # no direction yet: in volume, in neither side
        (T0 + 10, 10.5, 2.0, 0),  # uptick → buy
        (T0 + 20, 10.5, 3.0, 0),  # zero tick → carries buy
        (T0 + 30, 10.2, 0.0, 0),  # quote mid lower → direction down
        (T0 + 40, 10.2, 4.0, 0),  # zero tick vs the quote → sell
        (T0 + 50, 10.3, 5.0, -1),  # known side wins over an uptick
    ]
    _, _, f1s, _ = roll(ticks)
    assert f1s.volume == 15.0
    assert f1s.buy_volume == 5.0
    assert f1s.sell_volume == 9.0
    assert f1s.ticks == 6


def test_late_tick_folds_into_forming_bar_and_closed_bars_are_final():
    r = BarRoller()
    assert r.update(T0 + 1_500, 5.0, 1.0, 1) is None
    closed = r.update(T0 + 2_100, 6.0, 1.0, 1)
    assert closed == [("1s", Bar(T0 + 1_000, 5.0, 5.0, 5.0, 5.0, 1.0, 1.0, 0.0, 1))]
    # a tick stamped in the closed second arrives late: it joins the forming bar
    assert r.update(T0 + 1_800, 4.0, 2.0, -1) is None
    f1s, _ = r.forming()
    assert f1s == Bar(T0 + 2_000, 6.0, 6.0, 4.0, 4.0, 3.0, 1.0, 2.0, 2)
    assert closed[0][1].low == 5.0  # untouched


def test_period_validation():
    with pytest.raises(ValueError):
        BarRoller(small_ms=7_000, big_ms=60_000)
