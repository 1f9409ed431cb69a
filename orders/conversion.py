"""Conversion rates for sizing when neither side of the symbol is the account's currency (pure).

EURUSD on a USD account needs no rate, USDJPY on a USD account uses its own price
(:func:`orders.sizing.quote_to_account_rate`); GBPUSD on a EUR account, or XAUUSD on a GBP account,
needs a third instrument: the pair of the symbol's quote currency and the account's currency
(EURUSD, GBPUSD), in either direction. The pair is found in our Symbol table by its currencies
(broker symbol names carry suffixes), its price is the mid of the latest quote the feed wrote to
Redis, and when the feed does not carry that pair (or its quote is old) the broker is asked once
(``quotations``). Those reads, and a per-process cache (a fan-out asks once, not once per
account), are :func:`orders.reads.cross_rates`; this module turns what they read into rates.
No rate at all → the order is skipped ``no_conversion_rate`` (never sized on a guess).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal


def mid(bid, ask) -> Decimal:
    return (Decimal(str(bid)) + Decimal(str(ask))) / 2


def rates_from_feed(pairs: Iterable[tuple[str, str]], quotes: dict[str, dict], *, now_ms: int,
                    max_age_ms: float) -> dict[str, Decimal]:
    """``{pair: mid}`` of the feed quotes (``{symbol: {"bid", "ask", "recv_ms"}}``) not older than
    ``max_age_ms``."""
    return {pair: mid(q["bid"], q["ask"]) for name, pair in pairs
            if (q := quotes.get(name)) and now_ms - q["recv_ms"] <= max_age_ms}


def rates_from_quotations(pairs: Iterable[tuple[str, str]], quotes) -> dict[str, Decimal]:
    """``{pair: mid}`` of a broker ``quotations`` answer (rows with ``symbol``, ``bid``, ``ask``)."""
    names = dict(pairs)
    return {names[q.symbol]: mid(q.bid, q.ask) for q in quotes if q.symbol in names}
