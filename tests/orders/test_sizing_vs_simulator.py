"""The risk budget holds against the simulator's own PnL: a position sized by ``orders.sizing``
and stopped out exactly at its stop (no slippage, commission counted) loses at most the budget,
on accounts in USD, EUR, GBP and JPY, for direct, inverted and cross conversions; for a cross,
while the converting pair moves up to 1 % against the account before the stop."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matchtrader import protocol as P
from matchtrader.simulator.exchange import Exchange, NoRate
from matchtrader.simulator.instruments import SPECS
from orders.sizing import SymbolSpec, quote_to_account_rate, size_order

COMMISSION = D("3.5")
START = {"EURUSD": D("1.08500"), "GBPUSD": D("1.27000"), "USDJPY": D("151.500"), "AUDUSD": D("0.65500"),
         "USDCHF": D("0.88500"), "USDCAD": D("1.36000"), "XAUUSD": D("2350.00"), "BTCUSD": D("65000.00"),
         "ETHUSD": D("3400.00"), "US500": D("5200.0")}


def _exchange() -> Exchange:
    ex = Exchange(SPECS, commission_per_lot=COMMISSION)
    for sym, px in START.items():
        ex.on_quote(sym, px, px + D(SPECS[sym].spread_points) * D(10) ** -SPECS[sym].price_precision, 0)
    return ex


def _tick(sym: str) -> D:
    return D(10) ** -SPECS[sym].price_precision


def _converting_pair(quote: str, acc: str) -> str | None:
    for name in (f"{quote}{acc}", f"{acc}{quote}"):
        if name in SPECS:
            return name
    return None


def test_unknown_currency_is_an_error_not_a_rate_of_one():
    ex = _exchange()
    with pytest.raises(ValueError):
        ex.create_account("x@sim.test", "pw", currency="XYZ")
    with pytest.raises(NoRate):
        ex.rate_to_account("ZAR", "EUR")  # no pair converts ZAR


def test_non_usd_account_books_in_its_currency():
    ex = _exchange()
    acc = ex.create_account("eur@sim.test", "pw", balance=D("10000"), currency="EUR")
    _, pid = ex.open_position(acc.uuid, "EURUSD", "BUY", D("1"), None, None, 1)
    ask = ex.prices["EURUSD"][1]
    ex.on_quote("EURUSD", ask + D("0.00100"), ask + D("0.00108"), 2)
    ex.close_position(acc.uuid, pid, None, 3)
    closed = acc.closed[-1]
    # +0.00100 x 100,000 = 100 USD = 100 / EURUSD mid in EUR
    mid = (ask + D("0.00100") + ask + D("0.00108")) / 2
    assert closed["profit"] == (D(100) / mid).quantize(D("0.01"))
    assert ex.account_summary(acc)["currency"] == "EUR"


CASES = [  # (account currency, symbol): direct, inverted and cross conversions
    ("USD", "EURUSD"), ("USD", "XAUUSD"), ("USD", "USDJPY"), ("USD", "USDCHF"),  # quote = acct / inverted
    ("JPY", "USDJPY"), ("CHF", "USDCHF"), ("EUR", "EURUSD"), ("GBP", "GBPUSD"),  # quote = acct / inverted
    ("EUR", "GBPUSD"), ("EUR", "XAUUSD"), ("GBP", "BTCUSD"), ("JPY", "EURUSD"),  # cross
    ("CHF", "XAUUSD"), ("CAD", "US500"), ("AUD", "EURUSD"),
]


@settings(max_examples=250, deadline=None)
@given(case=st.sampled_from(CASES), side=st.sampled_from(["BUY", "SELL"]), stop_ticks=st.integers(5, 5_000),
       risk_pct=st.decimals("0.1", "3", places=2), equity=st.decimals("500", "200000", places=2),
       drift=st.floats(0.0, 1.0), price_factor=st.floats(0.7, 1.4))
def test_loss_at_stop_never_exceeds_the_budget(case, side, stop_ticks, risk_pct, equity, drift, price_factor):
    acc_ccy, sym = case
    spec = SPECS[sym]
    ex = _exchange()
    tick = _tick(sym)
    # move the symbol somewhere else first (the inverted case depends on its level)
    mid = (START[sym] * D(str(price_factor))).quantize(tick)
    spread = D(spec.spread_points) * tick
    ex.on_quote(sym, mid, mid + spread, 1)
    acc = ex.create_account(f"{acc_ccy}@sim.test", "pw", balance=equity, leverage=1000, currency=acc_ccy)
    bid, ask = ex.prices[sym]
    entry = ask if side == "BUY" else bid
    sl = entry - stop_ticks * tick if side == "BUY" else entry + stop_ticks * tick
    if sl <= 0:
        return
    pair = None
    cross_rates = {}
    if spec.quote != acc_ccy and spec.base != acc_ccy:
        pair = _converting_pair(spec.quote, acc_ccy)
        if pair is None:  # e.g. JPY account, EURUSD: USD -> JPY through USDJPY
            pair = _converting_pair(spec.quote, acc_ccy)
        assert pair is not None, (spec.quote, acc_ccy)
        b, a = ex.prices[pair]
        cross_rates[pair] = (b + a) / 2
    rate = quote_to_account_rate(quote_currency=spec.quote, base_currency=spec.base, account_currency=acc_ccy,
                                 price=entry, stop_price=sl, cross_rates=cross_rates)
    assert rate is not None
    result = size_order(equity=equity, risk_pct=risk_pct, entry_price=entry, stop_loss=sl,
                        spec=SymbolSpec(spec.contract_size, spec.volume_step, spec.volume_min, spec.volume_max),
                        quote_to_account_rate=rate, commission_per_lot=COMMISSION)
    if not result.tradable:
        return
    try:
        _, pid = ex.open_position(acc.uuid, sym, side, result.volume, sl, None, 2)
    except Exception:  # noqa: BLE001 - margin or stop-level rejects are not this property
        return
    if pair is not None:  # the converting pair moves up to 1 % against the account
        b, a = ex.prices[pair]
        worse = D(1) + D(str(drift)) / 100 if pair.startswith(spec.quote) else D(1) - D(str(drift)) / 100
        ex.on_quote(pair, b * worse, a * worse, 3)
    # the stop is hit exactly: the closing side quotes the stop price (no slippage)
    if side == "BUY":
        ex.on_quote(sym, sl, sl + spread, 4)
    else:
        ex.on_quote(sym, sl - spread, sl, 4)
    assert pid not in ex.positions
    closed = acc.closed[-1]
    assert closed["closeReason"] == P.CLOSE_REASON_SL and closed["closePrice"] == sl
    loss = -closed["netProfit"]
    assert loss <= result.risk_amount, (loss, result.risk_amount, result.volume, rate)
