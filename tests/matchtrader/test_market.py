"""Price processes: replayed real bars respect OHLC and volume; surges show up in prints and depth."""

import random
from decimal import Decimal

import pytest

from matchtrader.simulator.market import Market, expand_bar, load_bars, split_volume

NOW = 1_790_000_000_000


@pytest.mark.parametrize("source,precision", [("backtesting:EURUSD", 5), ("backtesting:BTCUSD", 2),
                                              ("backtesting:GOOG", 2)])
def test_real_bars_expand_within_ohlc_and_volume(source, precision):
    bars = load_bars(source)
    rng = random.Random(3)
    for bar in bars[:200]:
        ticks = expand_bar(bar, 25, rng, precision)
        prices = [p for p, _ in ticks]
        assert prices[0] == bar.open and prices[-1] == bar.close
        assert max(prices) == bar.high and min(prices) == bar.low  # touched, never exceeded
        assert sum(v for _, v in ticks) == bar.volume  # exact (Decimal)
        assert all(v >= 0 for _, v in ticks)


def test_split_volume_exact_for_fractional_totals():
    parts = split_volume(Decimal("2012.25343589"), 7, random.Random(1))
    assert sum(parts) == Decimal("2012.25343589") and len(parts) == 7


def test_market_replays_bars_tick_by_tick():
    m = Market(["EURUSD"], seed=1, now_ms=NOW, tick_rate=10, history_minutes=5,
               replay={"EURUSD": "backtesting:EURUSD"}, replay_ticks_per_bar=12)
    bars = load_bars("backtesting:EURUSD")
    # history = the first 5 bars as M1 candles, live replay starts at bar 5
    hist = m.candles("EURUSD", "M1", 0, NOW)
    assert [c[1:5] for c in hist[:5]] == [[b.open, b.high, b.low, b.close] for b in bars[:5]]
    ticks = [m.step(NOW + i * 100)[0] for i in range(36)]
    for idx in (5, 6, 7):
        mine = [t for t in ticks if t.replay_bar == idx]
        bar = bars[idx]
        assert len(mine) == 12
        assert mine[0].bid == bar.open and mine[-1].bid == bar.close
        assert max(t.bid for t in mine) == bar.high and min(t.bid for t in mine) == bar.low
        assert sum(Decimal(repr(tr.volume)) for t in mine for tr in t.trades) == bar.volume
        assert all(t.ask > t.bid for t in mine)


def test_planted_surge_is_one_sided_with_depth_imbalance_and_price_move():
    m = Market(["EURUSD"], seed=5, now_ms=NOW, tick_rate=10, history_minutes=2, surges_per_hour=0)
    start = m.quote("EURUSD")[0]
    m.plant_surge("EURUSD", side=1, intensity=6, seconds=30, now_ms=NOW)
    ticks = [m.step(NOW + i * 100)[0] for i in range(100)]
    trades = [tr for t in ticks for tr in t.trades]
    buy_vol = sum(tr.volume for tr in trades if tr.side > 0)
    sell_vol = sum(tr.volume for tr in trades if tr.side < 0)
    assert buy_vol > 4 * sell_vol
    assert ticks[-1].bid > start
    bid_depth = sum(s for t in ticks for _, s in t.bids)
    ask_depth = sum(s for t in ticks for _, s in t.asks)
    assert bid_depth > 2 * ask_depth
    # and quiet afterwards: no surge → roughly balanced flow
    after = [m.step(NOW + 40_000 + i * 100)[0] for i in range(300)]
    tr2 = [tr for t in after for tr in t.trades]
    b2 = sum(tr.volume for tr in tr2 if tr.side > 0)
    s2 = sum(tr.volume for tr in tr2 if tr.side < 0)
    assert 0.5 < b2 / s2 < 2


def test_same_seed_same_prices_and_candles_aggregate():
    a = Market(["EURUSD", "XAUUSD"], seed=9, now_ms=NOW, history_minutes=30)
    b = Market(["EURUSD", "XAUUSD"], seed=9, now_ms=NOW, history_minutes=30)
    assert [t.bid for t in a.step(NOW)] == [t.bid for t in b.step(NOW)]
    m1 = a.candles("EURUSD", "M1", 0, NOW + 60_000)
    m5 = a.candles("EURUSD", "M5", 0, NOW + 60_000)
    assert len(m1) >= 30 and 6 <= len(m5) <= 8
    first5 = [c for c in m1 if m5[1][0] <= c[0] < m5[1][0] + 300_000]
    assert m5[1][2] == max(c[2] for c in first5) and m5[1][3] == min(c[3] for c in first5)
    assert m5[1][1] == first5[0][1] and m5[1][4] == first5[-1][4]
