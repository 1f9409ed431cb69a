"""Our own mark-to-market and worst cases at the stop, pure, with the engine's conversion.

Why our own mark: the loss rules are measured on live equity = the LOWER of the broker's reported
equity and our mark (:func:`prop.rules.live_equity`), so a stale or optimistic broker figure never
gives room that is not there.

Conversion: one home, the order engine's sizing (:func:`orders.sizing.quote_to_account_rate`,
:func:`orders.sizing.loss_per_lot_at_stop`): a profit or loss in the symbol's quote currency
becomes account currency at the rate AT THE PRICE THE POSITION WOULD CLOSE AT (the stop for a
worst case, the mark for a valuation) — where the broker books it: ``1 / price`` when the account
currency is the symbol's base (USDJPY on a USD account), the cross rate raised by the sizing's
margin when a third pair converts. The pre-trade headroom therefore prices an order's stop
exactly as the sizing that chose its volume did.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from orders import sizing

ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class Spec:
    contract_size: Decimal
    base_currency: str
    quote_currency: str


def _rate_at(spec: Spec, account_currency: str, exit_price: Decimal, cross_rates: dict | None) -> Decimal | None:
    """The rate a close at ``exit_price`` is booked at (sizing's rule, the exit as the "stop")."""
    return sizing.quote_to_account_rate(quote_currency=spec.quote_currency, base_currency=spec.base_currency,
                                        account_currency=account_currency, price=exit_price, stop_price=exit_price,
                                        cross_rates=cross_rates)


def loss_per_lot_at_stop(spec: Spec, account_currency: str, *, entry: Decimal, stop: Decimal | None,
                         cross_rates=None) -> Decimal | None:
    """Worst-case loss of one lot if the stop is hit (account currency); None without a stop or a rate."""
    return sizing.loss_per_lot_at_stop(entry=entry, stop=stop, contract_size=spec.contract_size,
                                       quote_currency=spec.quote_currency, base_currency=spec.base_currency,
                                       account_currency=account_currency, cross_rates=cross_rates)


def close_price(side: str, bid: Decimal, ask: Decimal) -> Decimal:
    """A long closes at the bid, a short at the ask."""
    return bid if side.upper() == "BUY" else ask


def pnl(side: str, volume: Decimal, open_price: Decimal, price: Decimal, spec: Spec, account_currency: str,
        cross_rates=None) -> Decimal | None:
    """Profit (negative: loss) of a position closed at ``price``, at the rate of that close."""
    sign = Decimal(1) if side.upper() == "BUY" else Decimal(-1)
    raw = (Decimal(price) - Decimal(open_price)) * sign * Decimal(volume) * spec.contract_size
    rate = _rate_at(spec, account_currency, Decimal(price), cross_rates)
    return None if rate is None else raw * rate


def remaining_risk(side: str, volume: Decimal, open_price: Decimal, stop: Decimal | None, price: Decimal,
                   spec: Spec, account_currency: str, cross_rates=None) -> Decimal | None:
    """Further loss the position can take from ``price`` until its stop (≥ 0); None = unbounded
    (no stop, no rate)."""
    if stop is None:
        return None
    now = pnl(side, volume, open_price, price, spec, account_currency, cross_rates)
    at_stop = pnl(side, volume, open_price, Decimal(stop), spec, account_currency, cross_rates)
    if now is None or at_stop is None:
        return None
    return max(ZERO, now - at_stop)
