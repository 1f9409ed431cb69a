"""The fill model: what a market order, a stop-loss and a take-profit fill at, and what they cost.

ONE pure module used by both the exchange simulator (``exchange.Exchange``) and the backtest
engine (``backtest.engine``), so the two can never disagree about what a fill is. Decimal in,
Decimal out; no clock, no state.

Rules (the numbers a test computes by hand):

- A market BUY fills at the ask, a SELL at the bid, each worsened by ``slippage`` (a price
  distance, ``slippage_points`` × point): BUY ask + slippage, SELL bid − slippage.
- A position is valued and closed on its closing side: a BUY at the bid, a SELL at the ask.
- Stop-loss / take-profit trigger on the closing side of the quote: a BUY's SL when bid ≤ SL,
  its TP when bid ≥ TP; a SELL's SL when ask ≥ SL, its TP when ask ≤ TP. The stop-loss is checked
  first (a quote that somehow satisfies both is the conservative outcome). The fill is at the
  triggering quote itself, so a gap THROUGH a stop fills at the gap price (worse than the stop),
  and a gap through a take-profit at the (better) gap price — as a real market order would.
- Commission: ``commission_per_lot`` × volume per side of the round trip charged at the open,
  negative, rounded half-up to cents. A partial close takes its pro-rata share of it.
- Over a stream of quotes known in advance (the backtest's fast path), ``first_stop_trigger``
  finds the first quote ``stop_trigger`` fires on with numpy, then confirms it with
  ``stop_trigger`` itself: one rule, two speeds (tests/backtest/test_stream.py compares them).
- Profit in the quote currency = (close − open) × volume × contract size (SELL mirrored); the
  account-currency conversion is the caller's (``pnl_to_account``).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

BUY = "BUY"
SELL = "SELL"
REASON_SL = "sl"
REASON_TP = "tp"
ZERO = Decimal("0")
CENTS = Decimal("0.01")


def q(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def slippage_price(slippage_points: int, price_precision: int) -> Decimal:
    return Decimal(slippage_points) * Decimal(1).scaleb(-price_precision)


def market_fill(side: str, bid: Decimal, ask: Decimal, slippage: Decimal = ZERO) -> Decimal:
    """Price of a market order opening ``side`` (or closing the opposite side)."""
    return ask + slippage if side == BUY else bid - slippage


def closing_quote(side: str, bid: Decimal, ask: Decimal) -> Decimal:
    """The quote a ``side`` position is valued and closed at: bid for BUY, ask for SELL."""
    return bid if side == BUY else ask


def close_fill(side: str, bid: Decimal, ask: Decimal, slippage: Decimal = ZERO) -> Decimal:
    """Price of a market close of a ``side`` position (the opposite order)."""
    return market_fill(SELL if side == BUY else BUY, bid, ask, slippage)


def stop_trigger(side: str, sl: Decimal | None, tp: Decimal | None, bid: Decimal, ask: Decimal
                 ) -> tuple[str, Decimal] | None:
    """(``"sl"``/``"tp"``, fill price) when this quote triggers the position's SL or TP, else None."""
    px = bid if side == BUY else ask
    if side == BUY:
        if sl is not None and px <= sl:
            return REASON_SL, px
        if tp is not None and px >= tp:
            return REASON_TP, px
    else:
        if sl is not None and px >= sl:
            return REASON_SL, px
        if tp is not None and px <= tp:
            return REASON_TP, px
    return None


def first_stop_trigger(side: str, sl: Decimal | None, tp: Decimal | None, bids: np.ndarray, asks: np.ndarray
                       ) -> tuple[int, str, Decimal] | None:
    """The first of a run of quotes (float64 arrays) on which ``stop_trigger`` fires: (index,
    ``"sl"``/``"tp"``, fill price), or None. A float quote's Decimal value is ``Decimal(repr(x))``
    (how the backtest engine converts a received float). Candidates are found with the float
    comparison widened by one ulp (so none is missed when SL/TP are not floats), then each is
    confirmed, in order, by ``stop_trigger``: the answer is exactly the per-quote loop's."""
    if sl is None and tp is None:
        return None
    px = bids if side == BUY else asks
    sl_worse = side == BUY  # BUY: SL at or below, TP at or above; SELL the reverse
    hit = np.zeros(len(px), dtype=bool)
    if sl is not None:
        f = float(sl)
        hit |= (px <= math.nextafter(f, math.inf)) if sl_worse else (px >= math.nextafter(f, -math.inf))
    if tp is not None:
        f = float(tp)
        hit |= (px >= math.nextafter(f, -math.inf)) if sl_worse else (px <= math.nextafter(f, math.inf))
    for i in np.flatnonzero(hit).tolist():
        fired = stop_trigger(side, sl, tp, Decimal(repr(float(bids[i]))), Decimal(repr(float(asks[i]))))
        if fired is not None:
            return i, fired[0], fired[1]
    return None


def stops_problem(side: str, ref: Decimal, sl: Decimal | None, tp: Decimal | None) -> str | None:
    """Why SL/TP are on the wrong side of ``ref`` (the position's closing price), or None.
    BUY: SL below and TP above; SELL the reverse (the broker refuses the order otherwise)."""
    if side == BUY:
        if sl is not None and sl >= ref:
            return f"Stop loss {sl} must be below {ref}"
        if tp is not None and tp <= ref:
            return f"Take profit {tp} must be above {ref}"
    else:
        if sl is not None and sl <= ref:
            return f"Stop loss {sl} must be above {ref}"
        if tp is not None and tp >= ref:
            return f"Take profit {tp} must be below {ref}"
    return None


def open_commission(volume: Decimal, commission_per_lot: Decimal) -> Decimal:
    """Commission charged at the open (negative, cents)."""
    return -q(commission_per_lot * volume, 2)


def commission_share(commission: Decimal, part: Decimal, volume: Decimal) -> Decimal:
    """The share of a position's ``commission`` that goes with closing ``part`` of ``volume``."""
    return commission if part == volume else q(commission * part / volume, 2)


def pnl_quote(side: str, open_price: Decimal, close_price: Decimal, volume: Decimal, contract_size: Decimal) -> Decimal:
    """Profit in the symbol's quote currency."""
    diff = (close_price - open_price) if side == BUY else (open_price - close_price)
    return diff * volume * contract_size


def pnl_to_account(in_quote: Decimal, *, base: str, quote: str, account_currency: str, close_price: Decimal,
                   quote_rate: Decimal | None = None) -> Decimal:
    """Quote-currency profit in the account currency: as is when the quote is the account's,
    ÷ the close price when the base is (USDJPY on USD), else × ``quote_rate`` (quote → account),
    which the caller must know: a missing rate is an error, never a silent 1."""
    if quote == account_currency:
        return in_quote
    if base == account_currency:
        return in_quote / close_price
    if quote_rate is None:
        raise ValueError(f"no rate converts {quote} into {account_currency}")
    return in_quote * quote_rate
