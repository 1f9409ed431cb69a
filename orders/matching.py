"""Which broker position (if any) did an order of ours open? Pure: broker rows in, one row out.

The Platform API has no client order id, so after a lost answer (or when linking a fill) we match
on what we sent: same symbol, side and volume, opened no earlier than our first send (minus a
clock-skew allowance), and not already claimed by another Order/Position of the account. Several
candidates → the earliest (our previous orders were linked first, under the same account lock).

On the Trader API every open carries the intent's short tag in ``comment``
(:func:`matchtrader.trader_client.order_tag`). Where the broker echoes it, ``tag`` decides: the
position carrying our tag is ours (whatever its time), and a position carrying ANOTHER tag is never
ours. Untagged positions (Platform API, or a broker that drops the comment) fall back to the rule
above.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol


class BrokerPositionLike(Protocol):
    id: str
    symbol: str
    side: str
    volume: Decimal
    open_time: datetime | None


def find_match(
    candidates: Iterable[BrokerPositionLike],
    *,
    symbol: str,
    side: str,
    volume: Decimal,
    sent_at: datetime,
    claimed: set[str],
    clock_skew: timedelta = timedelta(seconds=2),
    tag: str = "",
):
    candidates = list(candidates)
    if tag:
        tagged = [c for c in candidates if getattr(c, "comment", "") == tag and c.id not in claimed]
        if tagged:
            return min(tagged, key=lambda c: (c.open_time or sent_at, c.id))
        candidates = [c for c in candidates if not getattr(c, "comment", "")]
    not_before = sent_at - clock_skew
    found = []
    for c in candidates:
        if c.id in claimed or c.symbol != symbol or c.side != side or Decimal(c.volume) != Decimal(volume):
            continue
        if c.open_time is None or c.open_time < not_before:
            continue
        found.append(c)
    if not found:
        return None
    return min(found, key=lambda c: (c.open_time, c.id))


def unexplained(broker_ids: Iterable[str], known_ids: set[str]) -> list[str]:
    """Broker positions that no Position/Order of ours accounts for."""
    return sorted(set(broker_ids) - known_ids)
