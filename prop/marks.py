"""Our own mark-to-market and worst cases at the stop, pure, with the conservative conversion.

Why our own: the loss rules are measured on live equity = the LOWER of the broker's reported equity
and our mark (:func:`prop.rules.live_equity`), so a stale or optimistic broker figure never gives
room that is not there.

Conversion: a profit or loss in the symbol's quote currency becomes account currency at
``orders.sizing.quote_to_account_rate``; when the rate depends on the symbol's own price (USDJPY
on a USD account: 1 / price), a LOSS is converted at the price that makes it largest — the lower
of the prices involved (mark or stop) — so the conservative side is always taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from orders.sizing import quote_to_account_rate

ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class Spec:
    contract_size: Decimal
    base_currency: str
    quote_currency: str


def _rate(spec: Spec, account_currency: str, price: Decimal, cross_rates: dict | None) -> Decimal | None:
    return quote_to_account_rate(quote_currency=spec.quote_currency, base_currency=spec.base_currency,
                                 account_currency=account_currency, price=price, cross_rates=cross_rates)


def conservative_rate(spec: Spec, account_currency: str, prices: list[Decimal], cross_rates=None) -> Decimal | None:
    """The largest rate among those at ``prices`` (a loss converted at it is the largest)."""
    rates = [_rate(spec, account_currency, p, cross_rates) for p in prices if p]
    if not rates or any(r is None for r in rates):
        return None
    return max(rates)


def loss_per_lot_at_stop(spec: Spec, account_currency: str, *, entry: Decimal, stop: Decimal | None,
                         cross_rates=None) -> Decimal | None:
    """Worst-case loss of one lot if the stop is hit (account currency); None without a stop or a rate."""
    if stop is None or entry is None:
        return None
    distance = abs(Decimal(entry) - Decimal(stop))
    rate = conservative_rate(spec, account_currency, [Decimal(entry), Decimal(stop)], cross_rates)
    if rate is None or distance == 0:
        return None
    return distance * spec.contract_size * rate


def close_price(side: str, bid: Decimal, ask: Decimal) -> Decimal:
    """A long closes at the bid, a short at the ask."""
    return bid if side.upper() == "BUY" else ask


def pnl(side: str, volume: Decimal, open_price: Decimal, price: Decimal, spec: Spec, account_currency: str,
        cross_rates=None) -> Decimal | None:
    """Profit (negative: loss) of a position marked at ``price``, conservative rate on a loss."""
    sign = Decimal(1) if side.upper() == "BUY" else Decimal(-1)
    raw = (Decimal(price) - Decimal(open_price)) * sign * Decimal(volume) * spec.contract_size
    if raw >= 0:
        rate = _rate(spec, account_currency, Decimal(price), cross_rates)
    else:
        rate = conservative_rate(spec, account_currency, [Decimal(price), Decimal(open_price)], cross_rates)
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
