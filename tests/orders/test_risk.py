"""Pre-trade risk checks (pure)."""

from decimal import Decimal as D

import pytest

from orders.reasons import Reason as RiskReason
from orders.risk import Exposure, RiskLimits, TradingState, check_pre_trade

LIMITS = RiskLimits(max_open_positions=3, max_volume_per_symbol=D("1.00"))
SIM = TradingState()


def test_within_every_limit_is_allowed():
    d = check_pre_trade(LIMITS, Exposure(open_positions=2, symbol_volume=D("0.5")), SIM, D("0.5"))
    assert d.allowed and d.reason == ""


def test_max_open_positions_blocks_at_the_limit():
    d = check_pre_trade(LIMITS, Exposure(open_positions=3), SIM, D("0.1"))
    assert not d.allowed and d.reason == RiskReason.MAX_OPEN_POSITIONS


STEP = dict(lot_step=D("0.01"), min_volume=D("0.01"))


def test_max_volume_per_symbol_counts_the_new_order():
    d = check_pre_trade(LIMITS, Exposure(symbol_volume=D("0.60")), SIM, D("0.40"), **STEP)  # exactly 1.00
    assert d.allowed and d.volume == D("0.40") and d.detail == ""


def test_size_above_the_room_is_clamped_to_the_room_not_skipped():
    # 1.00 − 0.60 open = 0.40 lots of room; the risk size 0.41 is a ceiling the limit lowers
    d = check_pre_trade(LIMITS, Exposure(symbol_volume=D("0.60")), SIM, D("0.41"), **STEP)
    assert d.allowed and d.volume == D("0.40") and d.reason == ""
    # the desk's case: risk size 25 lots, cap 10, nothing open → 10 lots
    d = check_pre_trade(RiskLimits(3, D("10")), Exposure(), SIM, D("25"), **STEP)
    assert d.allowed and d.volume == D("10")


def test_room_is_floored_to_the_lot_step():
    # 1.00 − 0.655 = 0.345 → 0.34 (never rounded up past the cap)
    d = check_pre_trade(LIMITS, Exposure(symbol_volume=D("0.655")), SIM, D("0.50"), **STEP)
    assert d.allowed and d.volume == D("0.34")
    # a lot step of 0.5: 1.00 − 0.30 = 0.70 → 0.5
    d = check_pre_trade(LIMITS, Exposure(symbol_volume=D("0.30")), SIM, D("2"), lot_step=D("0.5"),
                        min_volume=D("0.5"))
    assert d.allowed and d.volume == D("0.5")


@pytest.mark.parametrize("open_volume", ["1.00", "0.995", "1.20"])
def test_room_below_the_min_volume_skips_with_max_volume_per_symbol(open_volume):
    # room 0, 0.005 (floors to 0.00) and −0.20: below the 0.01 minimum
    d = check_pre_trade(LIMITS, Exposure(symbol_volume=D(open_volume)), SIM, D("0.25"), **STEP)
    assert not d.allowed and d.reason == RiskReason.MAX_VOLUME_PER_SYMBOL and d.volume == 0


def test_room_below_a_larger_min_volume_skips():
    # room 0.40 but the symbol's minimum is 0.5 lots
    d = check_pre_trade(LIMITS, Exposure(symbol_volume=D("0.60")), SIM, D("1"), lot_step=D("0.1"),
                        min_volume=D("0.5"))
    assert not d.allowed and d.reason == RiskReason.MAX_VOLUME_PER_SYMBOL


def test_allowed_volume_is_the_requested_one_under_the_cap():
    assert check_pre_trade(LIMITS, Exposure(symbol_volume=D("0.10")), SIM, D("0.25"), **STEP).volume == D("0.25")


# The daily loss limit is a rule of the account's profile now (the default profile carries the
# per-account limit and the UTC-midnight day): tests/prop/test_rules.py::test_default_profile_*.


def test_kill_switch_blocks_everything_first():
    d = check_pre_trade(LIMITS, Exposure(open_positions=99), TradingState(kill_switch=True), D("0.1"))
    assert not d.allowed and d.reason == RiskReason.KILL_SWITCH


def test_live_account_needs_live_trading_enabled():
    live_off = TradingState(is_live_account=True, live_trading_enabled=False)
    live_on = TradingState(is_live_account=True, live_trading_enabled=True)
    assert check_pre_trade(LIMITS, Exposure(), live_off, D("0.1")).reason == RiskReason.MODE_MISMATCH
    assert check_pre_trade(LIMITS, Exposure(), live_on, D("0.1")).allowed
