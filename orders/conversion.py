"""Conversion rates for sizing when neither side of the symbol is the account's currency.

EURUSD on a USD account needs no rate, USDJPY on a USD account uses its own price
(:func:`orders.sizing.quote_to_account_rate`); GBPUSD on a EUR account, or XAUUSD on a GBP account,
needs a third instrument: the pair of the symbol's quote currency and the account's currency
(EURUSD, GBPUSD), in either direction. The pair is found in our Symbol table by its currencies
(broker symbol names carry suffixes), its price is the mid of the latest quote the feed wrote to
Redis, and when the feed does not carry that pair (or its quote is old) the broker is asked once
(``quotations``). Rates are cached per process for ``CACHE_S``: a fan-out asks once, not once per
account. No rate at all → the order is skipped ``no_conversion_rate`` (never sized on a guess).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from django.conf import settings
from django.db.models import Q

from marketdata.models import Symbol
from matchtrader.errors import BrokerError
from tradeops.logging import get_logger

log = get_logger(__name__)

CACHE_S = 5.0
_cache: dict[tuple[str, str], tuple[float, dict[str, Decimal]]] = {}


def mid(bid, ask) -> Decimal:
    return (Decimal(str(bid)) + Decimal(str(ask))) / 2


def conversion_pairs(quote_currency: str, account_currency: str) -> list[tuple[str, str]]:
    """(broker symbol, currency pair) of the instruments that convert between the two currencies."""
    q, a = quote_currency.upper(), account_currency.upper()
    rows = Symbol.objects.filter(Q(base_currency__iexact=q, quote_currency__iexact=a)
                                 | Q(base_currency__iexact=a, quote_currency__iexact=q)).order_by("name")
    return [(name, f"{base.upper()}{quote.upper()}") for name, base, quote in
            rows.values_list("name", "base_currency", "quote_currency")]


def cross_rates(quote_currency: str, account_currency: str, client: Callable | None = None) -> dict[str, Decimal]:
    """``{"EURUSD": Decimal(mid)}`` for :func:`orders.sizing.quote_to_account_rate`; ``client``: a
    callable returning a broker client, used only when Redis has no fresh quote."""
    key = (quote_currency.upper(), account_currency.upper())
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and now - hit[0] < CACHE_S:
        return hit[1]
    pairs = conversion_pairs(*key)
    rates: dict[str, Decimal] = {}
    if pairs:
        rates = _from_feed(pairs) or (_from_broker(pairs, client) if client is not None else {})
    if not rates:
        log.warning("conversion_rate_unavailable", quote_currency=key[0], account_currency=key[1],
                    instruments=[name for name, _ in pairs])
    _cache[key] = (now, rates)
    return rates


def _from_feed(pairs) -> dict[str, Decimal]:
    from marketdata.reader import read_quotes

    from .broker import get_redis

    try:
        quotes = read_quotes(get_redis(), [name for name, _ in pairs])
    except Exception as exc:  # Redis down: fall back to the broker
        log.warning("conversion_quotes_unreadable", error=type(exc).__name__)
        return {}
    max_age_ms = settings.ORDERS_CONVERSION_MAX_AGE_S * 1000
    now_ms = int(time.time() * 1000)
    return {pair: mid(q["bid"], q["ask"]) for name, pair in pairs
            if (q := quotes.get(name)) and now_ms - q["recv_ms"] <= max_age_ms}


def _from_broker(pairs, client: Callable) -> dict[str, Decimal]:
    names = dict(pairs)
    try:
        quotes = client().quotations(list(names))
    except BrokerError as exc:
        log.warning("conversion_quotes_unavailable", instruments=list(names), error=type(exc).__name__)
        return {}
    return {names[q.symbol]: mid(q.bid, q.ask) for q in quotes if q.symbol in names}


def clear_cache() -> None:
    _cache.clear()
