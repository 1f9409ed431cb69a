"""Re-anchoring a signal's stops on the live price: pure, Decimal in and out, no ORM/Redis/clock.

A signal's entry, stop-loss and take-profit were computed when the signal fired; by the time the
order is sent the market may have moved, and a stop or target on the wrong side of the live price
is refused by the broker (``INVALID_STOPS``). Just before sending we therefore:

* take the live price the order will fill at (ask for BUY, bid for SELL); none or stale → keep
  the signal's prices (rounded to the tick);
* if the live price moved AGAINST the signal's entry (up for BUY, down for SELL) by more than
  ``max_deviation`` × the stop distance → skip with ``price_moved`` (the trade is no longer the
  one the signal described);
* otherwise put SL and TP at the signal's distances from the live price:

      BUY:  SL = live − |entry − SL|,  TP = live + |TP − entry|
      SELL: SL = live + |entry − SL|,  TP = live − |TP − entry|

  with the live price first rounded to the tick (half-even) and the distances too, so both stops
  are exact tick multiples and the size (which depends on the stop distance only) is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from tradeops.money import round_to_step, to_decimal

from .reasons import Reason



@dataclass(frozen=True, slots=True)
class Anchored:
    entry: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    skip_reason: str = ""
    reanchored: bool = False  # False: the signal's own prices are used (no live price)


def live_price_for(side: str, quote: dict | None, *, now_ms: int, max_age_ms: int) -> Decimal | None:
    """The price a market order of ``side`` fills at (ask for BUY, bid for SELL) from a
    ``read_quotes`` entry, or None when missing or older than ``max_age_ms`` (by local receive time)."""
    if not quote:
        return None
    stamp = quote.get("recv_ms") or quote.get("ts_ms")
    if stamp is None or now_ms - int(stamp) > max_age_ms:
        return None
    raw = quote.get("ask") if side == "BUY" else quote.get("bid")
    if raw is None:
        return None
    price = to_decimal(raw)
    return price if price > 0 else None


def reanchor_stops(*, side: str, entry, stop_loss, take_profit, live, tick, max_deviation) -> Anchored:
    def px(v):
        return None if v is None else round_to_step(v, tick)

    if live is None or entry is None:
        return Anchored(px(entry), px(stop_loss), px(take_profit))
    entry, live = px(entry), px(live)
    sign = Decimal(1) if side == "BUY" else Decimal(-1)
    sl_dist = None if stop_loss is None else abs(entry - px(stop_loss))
    tp_dist = None if take_profit is None else abs(px(take_profit) - entry)
    adverse = (live - entry) * sign  # > 0: we would pay more (BUY) / receive less (SELL)
    if sl_dist and adverse > to_decimal(max_deviation) * sl_dist:
        return Anchored(live, None, None, Reason.PRICE_MOVED, True)
    new_sl = None if sl_dist is None else live - sign * sl_dist
    new_tp = None if tp_dist is None else live + sign * tp_dist
    return Anchored(live, new_sl, new_tp, "", True)


def edited_stops(*, side: str, stop_loss, take_profit, tick) -> tuple[Decimal | None, Decimal | None]:
    """An operator's SL/TP, in Decimal on the symbol's tick. The stop is rounded towards the
    position's side of the market (a BUY's stop up, a SELL's down: the loss at the stop can only get
    smaller than asked); the target to the nearest tick. None (no level) stays None."""
    sl = tp = None
    if stop_loss is not None:
        sl = round_to_step(stop_loss, tick, ROUND_CEILING if side == "BUY" else ROUND_FLOOR)
    if take_profit is not None:
        tp = round_to_step(take_profit, tick)
    for name, v in (("stop loss", sl), ("take profit", tp)):
        if v is not None and v <= 0:
            raise ValueError(f"{name} must be a positive price")
    return sl, tp
