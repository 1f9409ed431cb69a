"""Re-anchoring SL/TP on the live price (pure): exact Decimal numbers by hand."""

from decimal import Decimal as D

import pytest

from orders.pricing import live_price_for, reanchor_stops
from orders.reasons import Reason

PRICE_MOVED = Reason.PRICE_MOVED

TICK = D("0.00001")
HALF = D("0.5")


def anchor(side, entry, sl, tp, live, tick=TICK, dev=HALF):
    return reanchor_stops(side=side, entry=D(entry), stop_loss=D(sl), take_profit=D(tp),
                          live=None if live is None else D(live), tick=tick, max_deviation=dev)


def test_buy_after_a_favourable_move_keeps_the_distances_from_the_live_ask():
    # signal: entry 1.10000, SL 20 pips below, TP 40 pips above; ask now 1.09950 (cheaper)
    a = anchor("BUY", "1.10000", "1.09800", "1.10400", "1.09950")
    assert (a.entry, a.stop_loss, a.take_profit, a.skip_reason) == (D("1.09950"), D("1.09750"), D("1.10350"), "")
    assert a.reanchored


def test_sell_after_the_price_fell_below_the_signal_target_is_re_anchored():
    # the demo-run bug: SELL TP 1.09051 but the bid is already 1.08955. Falling is adverse for a
    # SELL entry: 0.00196 ≤ 0.5 × a 0.00500 stop distance → re-anchored, TP now below the bid
    a = anchor("SELL", "1.09151", "1.09651", "1.09051", "1.08955")
    assert (a.skip_reason, a.stop_loss, a.take_profit) == ("", D("1.09455"), D("1.08855"))
    assert a.take_profit < D("1.08955") < a.stop_loss
    # the same move with a 0.00200 stop (limit 0.00100) is no longer the signal's trade
    assert anchor("SELL", "1.09151", "1.09351", "1.09051", "1.08955").skip_reason == PRICE_MOVED


def test_adverse_move_up_to_the_limit_is_traded_beyond_it_is_skipped():
    # BUY, stop distance 0.00200, limit 0.5 × 0.00200 = 0.00100 of adverse move
    at_limit = anchor("BUY", "1.10000", "1.09800", "1.10400", "1.10100")
    assert at_limit.skip_reason == "" and (at_limit.stop_loss, at_limit.take_profit) == (D("1.09900"), D("1.10500"))
    beyond = anchor("BUY", "1.10000", "1.09800", "1.10400", "1.10101")
    assert beyond.skip_reason == PRICE_MOVED and beyond.stop_loss is None and beyond.take_profit is None


def test_sell_adverse_move_is_downwards():
    # SELL: a LOWER bid is adverse; stop distance 0.00200 → 0.00100 allowed
    assert anchor("SELL", "1.10000", "1.10200", "1.09600", "1.09899").skip_reason == PRICE_MOVED
    ok = anchor("SELL", "1.10000", "1.10200", "1.09600", "1.10300")  # favourable, however far
    assert (ok.skip_reason, ok.stop_loss, ok.take_profit) == ("", D("1.10500"), D("1.09900"))


def test_deviation_setting_is_a_fraction_of_the_stop_distance():
    assert anchor("BUY", "1.10000", "1.09800", "1.10400", "1.10041", dev=D("0.2")).skip_reason == PRICE_MOVED
    assert anchor("BUY", "1.10000", "1.09800", "1.10400", "1.10040", dev=D("0.2")).skip_reason == ""


def test_live_price_is_rounded_to_the_tick_first():
    # USDJPY tick 0.001: ask 150.0004 → 150.000 (half-even), SL/TP exact multiples of the tick
    a = anchor("BUY", "150.010", "149.510", "151.010", "150.0004", tick=D("0.001"))
    assert (a.entry, a.stop_loss, a.take_profit) == (D("150.000"), D("149.500"), D("151.000"))


def test_no_live_price_keeps_the_signal_prices_rounded():
    a = anchor("BUY", "1.100001", "1.097999", "1.10400", None)
    assert (a.entry, a.stop_loss, a.take_profit, a.reanchored) == (D("1.10000"), D("1.09800"), D("1.10400"), False)


NOW = 1_000_000


@pytest.mark.parametrize(
    "quote, side, expected",
    [
        ({"bid": 1.1, "ask": 1.10008, "ts_ms": NOW, "recv_ms": NOW}, "BUY", D("1.10008")),
        ({"bid": 1.1, "ask": 1.10008, "ts_ms": NOW, "recv_ms": NOW}, "SELL", D("1.1")),
        ({"bid": 1.1, "ask": 1.10008, "ts_ms": NOW, "recv_ms": NOW - 5000}, "BUY", D("1.10008")),  # at the limit
        ({"bid": 1.1, "ask": 1.10008, "ts_ms": NOW, "recv_ms": NOW - 5001}, "BUY", None),  # stale
        (None, "BUY", None),
        ({}, "SELL", None),
    ],
)
def test_live_price_is_ask_for_buy_bid_for_sell_and_none_when_stale(quote, side, expected):
    assert live_price_for(side, quote, now_ms=NOW, max_age_ms=5000) == expected


def test_edited_stops_round_the_stop_towards_less_loss_and_the_target_to_nearest():
    from decimal import Decimal as Dec

    from orders.pricing import edited_stops

    tick = Dec("0.00001")
    assert edited_stops(side="BUY", stop_loss=Dec("1.098504"), take_profit=Dec("1.104996"), tick=tick) == (
        Dec("1.09851"), Dec("1.10500"))
    assert edited_stops(side="SELL", stop_loss=Dec("1.101506"), take_profit=None, tick=tick) == (Dec("1.10150"), None)
