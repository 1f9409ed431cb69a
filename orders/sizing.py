"""Position sizing: pure functions, Decimal in and out, no ORM, no clock.

Risk a fixed share of equity between the entry and the stop-loss:

    risk_amount   = equity × risk_pct / 100                       (account currency)
    loss_per_lot  = |entry − stop| × contract_size × rate         (account currency per lot)
    volume        = floor_to_step(risk_amount / loss_per_lot, lot_step), clamped to [min, max]

``rate`` converts the symbol's quote currency into the account currency (1 when they are the
same) AT THE STOP, where the broker books the loss, on the conservative side:

* base = account currency (USDJPY on a USD account): the broker divides the JPY loss by the
  close price, so the rate is ``1 / stop`` (sizing at ``1 / entry`` lost up to 3.4 % more than
  the budget on a 500-pip BUY stop);
* cross (GBPUSD on a EUR account): the converting pair's price at the stop is unknown; its rate
  now is raised by ``CROSS_RATE_MARGIN_PCT`` so the budget holds while that pair moves up to
  that much against the account before the stop is hit.

``commission_per_lot`` (account currency, round trip) is part of the loss per lot, and the size
steps down one lot step when the broker's cent rounding of that loss would cross the budget. Rounding is always DOWN, so the realised risk never exceeds the budget; a volume below the
broker minimum becomes zero (we never round *up* into more risk), and the order is recorded as
``skipped`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext

from tradeops.money import floor_to_step, to_decimal

from .reasons import Reason

ZERO = Decimal("0")
RAW_QUANTUM = Decimal("1e-12")
# The broker books each amount rounded to the cent (half up): the PnL and the commission can each
# round half a cent against us; the size steps down a lot step when that rounding would cross the budget.
BOOKING_QUANTUM = Decimal("0.01")
CROSS_RATE_MARGIN_PCT = Decimal("1")  # cross rates: headroom for the converting pair's move until the stop



@dataclass(frozen=True, slots=True)
class SymbolSpec:
    contract_size: Decimal
    lot_step: Decimal
    min_volume: Decimal
    max_volume: Decimal


@dataclass(frozen=True, slots=True)
class SizeResult:
    volume: Decimal
    reason: str = ""  # why the volume is zero (a Reason), or "" when tradable
    risk_amount: Decimal = ZERO
    clamped_to_max: bool = False

    @property
    def tradable(self) -> bool:
        return self.volume > 0


def size_order(
    *,
    equity,
    risk_pct,
    entry_price,
    stop_loss,
    spec: SymbolSpec,
    quote_to_account_rate=Decimal("1"),
    commission_per_lot=ZERO,
) -> SizeResult:
    """The volume (lots) that risks ``risk_pct`` % of ``equity`` if the stop is hit."""
    if entry_price is None:
        return SizeResult(ZERO, Reason.NO_ENTRY_PRICE)
    if stop_loss is None:
        return SizeResult(ZERO, Reason.NO_STOP_LOSS)
    if equity is None or to_decimal(equity) <= 0:
        return SizeResult(ZERO, Reason.NO_EQUITY)
    if quote_to_account_rate is None or to_decimal(quote_to_account_rate) <= 0:
        return SizeResult(ZERO, Reason.NO_CONVERSION_RATE)
    equity, risk_pct = to_decimal(equity), to_decimal(risk_pct)
    distance = abs(to_decimal(entry_price) - to_decimal(stop_loss))
    if distance == 0:
        return SizeResult(ZERO, Reason.ZERO_STOP_DISTANCE)
    with localcontext() as ctx:
        ctx.prec = 50
        risk_amount = equity * risk_pct / Decimal(100)
        loss_per_lot = (distance * to_decimal(spec.contract_size) * to_decimal(quote_to_account_rate)
                        + max(to_decimal(commission_per_lot), ZERO))
        # Round away division noise (1/150 is not exact) before flooring to the lot step, so an
        # exact 0.30 never becomes 0.2999...→0.29. 1e-12 lot is far below any broker's step.
        raw = (risk_amount / loss_per_lot).quantize(RAW_QUANTUM, rounding=ROUND_HALF_EVEN)
        volume = floor_to_step(raw, spec.lot_step)
        price_loss = distance * to_decimal(spec.contract_size) * to_decimal(quote_to_account_rate)
        commission = max(to_decimal(commission_per_lot), ZERO)

        def booked_loss(v: Decimal) -> Decimal:  # as the broker books it: each amount to the cent, half up
            return ((price_loss * v).quantize(BOOKING_QUANTUM, rounding=ROUND_HALF_UP)
                    + (commission * v).quantize(BOOKING_QUANTUM, rounding=ROUND_HALF_UP))

        if volume > 0 and booked_loss(volume) > risk_amount:
            volume -= to_decimal(spec.lot_step)
    clamped = False
    if volume > spec.max_volume:
        volume, clamped = floor_to_step(spec.max_volume, spec.lot_step), True
    if volume < spec.min_volume or volume <= 0:
        return SizeResult(ZERO, Reason.BELOW_MIN_VOLUME, risk_amount)
    return SizeResult(volume, "", risk_amount, clamped)


def quote_to_account_rate(
    *, quote_currency: str, base_currency: str, account_currency: str, price, stop_price=None,
    cross_rates: dict | None = None, cross_margin_pct=CROSS_RATE_MARGIN_PCT,
) -> Decimal | None:
    """Rate converting an amount in the symbol's quote currency into the account currency, at
    the stop (see the module docstring: the conservative side for every path).

    * quote == account (EURUSD on a USD account): 1.
    * base == account (USDJPY on a USD account): 1 / the stop price (1 / ``price`` without a stop).
    * otherwise a cross rate from ``cross_rates`` ({"GBPUSD": Decimal(...)}), direct or inverted,
      times (1 + ``cross_margin_pct`` / 100).
    Returns None when no rate is known (the caller skips the order rather than guess).
    """
    quote, base, acct = (quote_currency or "").upper(), (base_currency or "").upper(), (account_currency or "").upper()
    if not quote or quote == acct:
        return Decimal("1")
    at = stop_price if stop_price is not None else price
    if base == acct and at and to_decimal(at) > 0:
        return Decimal("1") / to_decimal(at)
    cross_rates = cross_rates or {}
    headroom = 1 + to_decimal(cross_margin_pct) / 100
    direct = cross_rates.get(f"{quote}{acct}")
    if direct:
        return to_decimal(direct) * headroom
    inverse = cross_rates.get(f"{acct}{quote}")
    if inverse:
        return Decimal("1") / to_decimal(inverse) * headroom
    return None


def partial_close_volume(requested, *, position_volume, lot_step, min_volume) -> tuple[Decimal, str]:
    """The volume a partial close sends: ``requested`` floored to the lot step (Decimal, never up:
    we never close more than asked). Returns (volume, "") or (ZERO, why not): nothing left after
    rounding, the whole position or more (that is a close, not a partial one), or a remainder
    below the symbol's minimum volume (the broker refuses it; close the position instead)."""
    requested, position_volume = to_decimal(requested), to_decimal(position_volume)
    if requested <= 0:
        return ZERO, "the volume to close must be positive"
    volume = floor_to_step(requested, lot_step)
    if volume <= 0:
        return ZERO, f"{requested} is below one lot step ({lot_step})"
    if volume >= position_volume:
        return ZERO, f"{volume} is the whole position ({position_volume}): close it instead"
    if min_volume and position_volume - volume < to_decimal(min_volume):
        return ZERO, (f"closing {volume} of {position_volume} would leave {position_volume - volume}, "
                      f"below the minimum volume {min_volume}: close the position instead")
    return volume, ""


def loss_per_lot_at_stop(*, entry, stop, contract_size, quote_currency: str, base_currency: str,
                         account_currency: str, cross_rates: dict | None = None,
                         commission_per_lot=ZERO) -> Decimal | None:
    """The loss of one lot if ``stop`` is hit from ``entry``, in account currency, converted as
    sizing converts it (:func:`quote_to_account_rate` AT THE STOP: ``1 / stop`` when the account
    currency is the base, the cross rate + ``CROSS_RATE_MARGIN_PCT``) plus ``commission_per_lot``.
    None without a stop, a distance or a rate. The pre-trade headroom and the breach guard's mark
    (:mod:`prop.marks`) use this, so a loss is converted in one place."""
    if stop is None or entry is None:
        return None
    distance = abs(to_decimal(entry) - to_decimal(stop))
    rate = quote_to_account_rate(quote_currency=quote_currency, base_currency=base_currency,
                                 account_currency=account_currency, price=entry, stop_price=stop,
                                 cross_rates=cross_rates)
    if rate is None or distance == 0:
        return None
    return distance * to_decimal(contract_size) * rate + max(to_decimal(commission_per_lot), ZERO)
