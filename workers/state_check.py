"""Database vs broker: which open positions disagree, and for how long (``manage.py check_state_sync``).

Each pass reads every enabled account's open positions at the broker and in PostgreSQL; a
position open on one side only is a *difference*, remembered with the time it was first seen.
A difference that lasts longer than ``max_age_s`` is a failure: the database's picture of the
broker is late. Also counts exit (close) orders the broker rejected, which should be zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from matchtrader.errors import BrokerError


@dataclass
class StateCheck:
    max_age_s: float = 5.0
    first_seen: dict = field(default_factory=dict)  # (account id, broker position id, side) -> monotonic
    worst_age_s: float = 0.0
    late: set = field(default_factory=set)
    passes: int = 0
    read_errors: int = 0

    def differences(self, account) -> set[tuple]:
        from orders import broker
        from orders.models import Position

        db_open = set(Position.objects.filter(account=account, status=Position.Status.OPEN)
                      .values_list("broker_position_id", flat=True))
        try:
            broker_open = {p.id for p in broker.client_for(account).open_positions()}
        except BrokerError:
            self.read_errors += 1
            return set()
        # re-read the database after the broker: a position opened in between is not a difference
        db_after = set(Position.objects.filter(account=account, status=Position.Status.OPEN)
                       .values_list("broker_position_id", flat=True))
        only_db = (db_open & db_after) - broker_open
        only_broker = broker_open - (db_open | db_after)
        return {(account.pk, pid, "db_only") for pid in only_db} | {(account.pk, pid, "broker_only") for pid in only_broker}

    def check_once(self, accounts) -> list[tuple]:
        now = time.monotonic()
        current: set = set()
        for account in accounts:
            current |= self.differences(account)
        for key in list(self.first_seen):
            if key not in current:
                del self.first_seen[key]
        for key in current:
            self.first_seen.setdefault(key, now)
        self.passes += 1
        out = []
        for key, since in self.first_seen.items():
            age = now - since
            self.worst_age_s = max(self.worst_age_s, age)
            if age > self.max_age_s:
                self.late.add(key)
                out.append((*key, age))
        return out


def rejected_exit_orders(since) -> int:
    from orders.lifecycle import OrderStatus
    from orders.models import Order

    return Order.objects.filter(purpose=Order.Purpose.CLOSE, status=OrderStatus.REJECTED, created_at__gte=since).count()
