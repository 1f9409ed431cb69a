"""Sizing: risk % of equity over the stop distance, hand-computed cases."""

from decimal import Decimal
from decimal import Decimal as D

import pytest

from orders.reasons import Reason as SkipReason
from orders.sizing import SymbolSpec, quote_to_account_rate, size_order

FX = SymbolSpec(contract_size=D("100000"), lot_step=D("0.01"), min_volume=D("0.01"), max_volume=D("100"))
GOLD = SymbolSpec(contract_size=D("100"), lot_step=D("0.01"), min_volume=D("0.01"), max_volume=D("50"))
BTC = SymbolSpec(contract_size=D("1"), lot_step=D("0.01"), min_volume=D("0.01"), max_volume=D("10"))


@pytest.mark.parametrize(
    "equity, pct, entry, stop, spec, rate, expected",
    [
        # 10,000 × 0.5 % = 50 USD; 0.00200 × 100,000 = 200 USD/lot → 0.25 lots
        ("10000", "0.5", "1.10000", "1.09800", FX, "1", "0.25"),
        # 100 USD / (0.0030 × 100,000 = 300 USD/lot) = 0.3333 → rounded DOWN to 0.33
        ("10000", "1", "1.10000", "1.09700", FX, "1", "0.33"),
        # sell: stop above entry, same distance
        ("10000", "0.5", "1.09800", "1.10000", FX, "1", "0.25"),
        # gold: 5.00 × 100 = 500 USD/lot; 50 USD → 0.10
        ("10000", "0.5", "2000.00", "1995.00", GOLD, "1", "0.10"),
        # bitcoin: 1000 × 1 = 1000 USD/lot; 100 USD → 0.10
        ("10000", "1", "60000", "59000", BTC, "1", "0.10"),
        # USDJPY on a USD account: 0.5 × 100,000 = 50,000 JPY/lot = 333.33 USD/lot at 150; 100 USD → 0.30
        ("10000", "1", "150.000", "149.500", FX, D(1) / D("150.000"), "0.30"),
    ],
)
def test_size_is_risk_over_stop_distance_rounded_down(equity, pct, entry, stop, spec, rate, expected):
    result = size_order(equity=D(equity), risk_pct=D(pct), entry_price=D(entry), stop_loss=D(stop), spec=spec,
                        quote_to_account_rate=rate)
    assert result.volume == D(expected)
    assert result.reason == ""
    assert result.tradable


def test_size_never_exceeds_the_risk_budget():
    # 0.333.. lots would risk exactly 100; 0.33 risks 99 → never more than the budget
    result = size_order(equity=D("10000"), risk_pct=D("1"), entry_price=D("1.1"), stop_loss=D("1.097"), spec=FX)
    assert result.volume * D("0.003") * D("100000") <= result.risk_amount


def test_below_min_volume_becomes_zero_with_reason():
    # 100 × 0.5 % = 0.5 USD; 200 USD/lot → 0.0025 → below 0.01
    result = size_order(equity=D("100"), risk_pct=D("0.5"), entry_price=D("1.1"), stop_loss=D("1.098"), spec=FX)
    assert result.volume == 0
    assert result.reason == SkipReason.BELOW_MIN_VOLUME
    assert not result.tradable


def test_clamped_to_max_volume_on_the_step():
    result = size_order(equity=D("100000000"), risk_pct=D("5"), entry_price=D("2000"), stop_loss=D("1999"),
                        spec=GOLD)
    assert result.volume == D("50.00")
    assert result.clamped_to_max


def test_coarse_lot_step_rounds_down_to_it():
    spec = SymbolSpec(contract_size=D("1"), lot_step=D("0.5"), min_volume=D("0.5"), max_volume=D("100"))
    # 100 / (10 × 1) = 10 → 10.0; 95 / 10 = 9.5; 99 / 10 = 9.9 → 9.5
    assert size_order(equity=D("9900"), risk_pct=D("1"), entry_price=D("100"), stop_loss=D("90"),
                      spec=spec).volume == D("9.5")


@pytest.mark.parametrize(
    "kw, reason",
    [
        (dict(stop_loss=None), SkipReason.NO_STOP_LOSS),
        (dict(entry_price=None), SkipReason.NO_ENTRY_PRICE),
        (dict(equity=D("0")), SkipReason.NO_EQUITY),
        (dict(equity=None), SkipReason.NO_EQUITY),
        (dict(stop_loss=D("1.1")), SkipReason.ZERO_STOP_DISTANCE),
        (dict(quote_to_account_rate=None), SkipReason.NO_CONVERSION_RATE),
    ],
)
def test_unsizeable_inputs_are_zero_with_a_reason(kw, reason):
    args = dict(equity=D("10000"), risk_pct=D("1"), entry_price=D("1.1"), stop_loss=D("1.09"), spec=FX)
    args.update(kw)
    result = size_order(**args)
    assert result.volume == 0 and result.reason == reason


def test_conversion_rates():
    assert quote_to_account_rate(quote_currency="USD", base_currency="EUR", account_currency="USD",
                                 price=D("1.1")) == 1
    assert quote_to_account_rate(quote_currency="JPY", base_currency="USD", account_currency="USD",
                                 price=D("150")) == D(1) / D(150)
    # EURGBP on a USD account: GBP→USD from GBPUSD, or inverted USDGBP
    assert quote_to_account_rate(quote_currency="GBP", base_currency="EUR", account_currency="USD",
                                 price=D("0.85"), cross_rates={"GBPUSD": D("1.25")}) == D("1.25") * D("1.01")
    assert quote_to_account_rate(quote_currency="GBP", base_currency="EUR", account_currency="USD",
                                 price=D("0.85"), cross_rates={"USDGBP": D("0.8")}) == D("1.25") * D("1.01")
    assert quote_to_account_rate(quote_currency="GBP", base_currency="EUR", account_currency="USD", price=D("0.85"),
                                 cross_rates={"GBPUSD": D("1.25")}, cross_margin_pct=0) == D("1.25")
    # the inverted path converts at the STOP: where the broker books the loss
    assert quote_to_account_rate(quote_currency="JPY", base_currency="USD", account_currency="USD",
                                 price=D("150"), stop_price=D("145")) == D(1) / D(145)
    assert quote_to_account_rate(quote_currency="GBP", base_currency="EUR", account_currency="USD",
                                 price=D("0.85")) is None


def test_partial_close_volume_floors_and_keeps_the_minimum_remainder():
    from orders.sizing import partial_close_volume

    step, minimum = Decimal("0.01"), Decimal("0.05")
    assert partial_close_volume(Decimal("0.109"), position_volume=Decimal("0.25"), lot_step=step,
                                min_volume=minimum) == (Decimal("0.10"), "")
    volume, why = partial_close_volume(Decimal("0.22"), position_volume=Decimal("0.25"), lot_step=step,
                                       min_volume=minimum)
    assert volume == 0 and "below the minimum volume 0.05" in why
