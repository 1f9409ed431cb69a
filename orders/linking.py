"""Linking a fan-out chunk's fills to the broker positions they opened (``orders.link_fills``).

The open answer carries an order id only ([Platform API doc §3.6](../docs/match-trader-api.md)), so finding the position id takes one read of
the account's open positions. For a chunk this is done with per-chunk statements, like the
fan-out itself: the accounts' locks in one statement, tokens and rate budget in one Redis round
trip, claimed position ids in one query, one read per account (in flight together), and the Positions, opening Trades
and Order links written in one transaction (:func:`orders.recording.record_opens`).

An order left unlinked by a pass (its account's lock busy — the chunk that filled it publishes
the link while it still holds the lock —, its broker read failed, or its position not yet
visible) is tried again by the task a few times with a short backoff
(``ORDERS_LINK_FILL_RETRIES``, :func:`retry_delay_s`); past those, reconciliation links it (and
until then the exposure counts such an order as an open position). Without the retry, a fast
worker picking the link up before the chunk's unlock left every fill of the chunk unlinked until
the next reconciliation.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.conf import settings

from matchtrader.errors import BrokerError
from matchtrader.trader_client import order_tag
from tradeops.backoff import exponential
from tradeops.logging import get_logger

from . import broker, reads
from .bulk import account_locks
from .lifecycle import OrderStatus
from .locks import account_lock
from .matching import find_match
from .models import Order
from .recording import record_opens

log = get_logger(__name__)


def _read(client):
    try:
        return broker.read_with_retry(client.open_positions, attempts=2)
    except BrokerError as exc:
        return exc


def _read_all(clients: dict) -> dict:
    """Every account's open positions, the reads in flight together (the fan-out's pool: a real
    broker is tens of ms away); a read that failed comes back as its error."""
    if len(clients) <= 1:
        return {account_id: _read(client) for account_id, client in clients.items()}
    futures = {account_id: broker.send_pool().submit(_read, client) for account_id, client in clients.items()}
    return {account_id: future.result() for account_id, future in futures.items()}


def link_fills(order_ids: list[int]) -> int:
    """Link every still-unlinked filled order of ``order_ids``; returns how many were linked."""
    pending = Order.objects.filter(pk__in=order_ids, status=OrderStatus.FILLED, position__isnull=True)
    account_ids = sorted(set(pending.values_list("account_id", flat=True)))
    if not account_ids:
        return 0
    with account_locks(account_ids) as (locked, busy):
        if busy:
            log.info("link_fills_deferred_busy", accounts=busy)
        # read under the locks: a reconciliation may have linked some meanwhile
        orders = list(pending.filter(account_id__in=locked).select_related("symbol", "signal", "account"))
        linked = link_locked(orders)
    log.info("fills_linked", orders=len(order_ids), linked=linked, busy=len(busy))
    return linked


def still_unlinked(order_ids: list[int]) -> list[int]:
    """Those of ``order_ids`` that are filled and still have no position (what a retry re-links)."""
    return sorted(Order.objects.filter(pk__in=order_ids, status=OrderStatus.FILLED, position__isnull=True)
                  .values_list("pk", flat=True))


def retry_delay_s(retries_done: int) -> float:
    """0.5 s, 1 s, 2 s, 4 s, … capped at 8 s: soon enough to know the positions within seconds,
    spaced enough to let a busy account's chunk finish."""
    return exponential(retries_done + 1, 0.5, 8.0)


def link_locked(orders: list[Order]) -> int:
    """Link filled, unlinked ``orders`` whose accounts' locks the caller holds: one open-positions
    read per account, the matches recorded in one transaction. Returns how many were linked."""
    by_account: dict[int, list[Order]] = defaultdict(list)
    for order in orders:
        by_account[order.account_id].append(order)
    if not by_account:
        return 0
    clients = broker.prepare_calls([group[0].account for group in by_account.values()])
    claimed = reads.claimed_ids(list(by_account), [o.pk for o in orders])
    skew = timedelta(seconds=settings.ORDERS_MATCH_CLOCK_SKEW_S)
    matches = []
    broker_reads = _read_all({account_id: clients[account_id] for account_id in by_account})
    for account_id, group in by_account.items():
        positions = broker_reads[account_id]
        if isinstance(positions, BrokerError):
            log.info("fill_link_deferred", account_id=account_id, error=type(positions).__name__)
            continue
        for order in sorted(group, key=lambda o: (o.submitted_at or o.created_at, o.pk)):
            match = find_match(positions, symbol=order.symbol.name, side=order.side, volume=order.volume,
                               sent_at=order.submitted_at or order.created_at, claimed=claimed[account_id],
                               clock_skew=skew, tag=order_tag(order.idempotency_key))
            if match is not None:
                claimed[account_id].add(match.id)
                matches.append((order, match))
    record_opens(matches)
    return len(matches)


def link_order_fill(order_id: int) -> bool:
    """Body of ``orders.link_fill``: link one filled order to its broker position (waits for the
    account lock, unlike the chunk's ``orders.link_fills``)."""
    order = Order.objects.select_related("symbol", "signal", "account").get(pk=order_id)
    if order.position_id or order.status != OrderStatus.FILLED:
        return bool(order.position_id)
    with account_lock(order.account_id, settings.ORDERS_ACCOUNT_LOCK_WAIT_S):
        order.refresh_from_db(fields=["position", "broker_position_id"])
        if order.position_id is None:
            link_locked([order])
    return order.position_id is not None
