"""Position sizing: pure functions, Decimal in and out, no ORM, no clock.

Risk a fixed share of equity between the entry and the stop-loss:

    risk_amount   = equity × risk_pct / 100                       (account currency)
    loss_per_lot  = |entry − stop| × contract_size × rate         (account currency per lot)
    volume        = floor_to_step(risk_amount / loss_per_lot, lot_step), clamped to [min, max]

``rate`` converts the symbol's quote currency into the account currency (1 when they are the
same). Rounding is always DOWN, so the realised risk never exceeds the budget; a volume below the
broker minimum becomes zero (we never round *up* into more risk), and the order is recorded as
``skipped`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from tradeops.money import floor_to_step, to_decimal

from .reasons import Reason

ZERO = Decimal("0")
RAW_QUANTUM = Decimal("1e-12")



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
        loss_per_lot = distance * to_decimal(spec.contract_size) * to_decimal(quote_to_account_rate)
        # Round away division noise (1/150 is not exact) before flooring to the lot step, so an
        # exact 0.30 never becomes 0.2999...→0.29. 1e-12 lot is far below any broker's step.
        raw = (risk_amount / loss_per_lot).quantize(RAW_QUANTUM, rounding=ROUND_HALF_EVEN)
    volume = floor_to_step(raw, spec.lot_step)
    clamped = False
    if volume > spec.max_volume:
        volume, clamped = floor_to_step(spec.max_volume, spec.lot_step), True
    if volume < spec.min_volume or volume <= 0:
        return SizeResult(ZERO, Reason.BELOW_MIN_VOLUME, risk_amount)
    return SizeResult(volume, "", risk_amount, clamped)


def quote_to_account_rate(
    *, quote_currency: str, base_currency: str, account_currency: str, price, cross_rates: dict | None = None
) -> Decimal | None:
    """Rate converting an amount in the symbol's quote currency into the account currency.

    * quote == account (EURUSD on a USD account): 1.
    * base == account (USDJPY on a USD account): 1 / price of the symbol itself.
    * otherwise a cross rate from ``cross_rates`` ({"GBPUSD": Decimal(...)}), direct or inverted.
    Returns None when no rate is known (the caller skips the order rather than guess).
    """
    quote, base, acct = (quote_currency or "").upper(), (base_currency or "").upper(), (account_currency or "").upper()
    if not quote or quote == acct:
        return Decimal("1")
    if base == acct and price:
        return Decimal("1") / to_decimal(price)
    cross_rates = cross_rates or {}
    direct = cross_rates.get(f"{quote}{acct}")
    if direct:
        return to_decimal(direct)
    inverse = cross_rates.get(f"{acct}{quote}")
    if inverse:
        return Decimal("1") / to_decimal(inverse)
    return None
