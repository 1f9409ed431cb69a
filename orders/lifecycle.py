"""The order life cycle as an explicit transition table. Anything not listed raises.

    new ──► submitted ──► filled ─────────────► (terminal)
     │          │    └──► accepted ──► filled / cancelled / rejected
     │          ├──► rejected  (broker said no: recorded with its code, never retried)
     │          ├──► failed    (surely not executed: retries exhausted, auth failure)
     │          ├──► cancelled (an exit the broker no longer needed: position already closed by SL/TP)
     │          └──► unknown   (the answer was lost after sending) ──► reconciliation decides:
     │                             filled / accepted (it executed) · failed (it did not)
     ├──► skipped   (sizing rounded to zero, a risk limit, kill switch: never sent)
     ├──► failed    (could not even be prepared)
     └──► cancelled

``new → submitted`` is the only way to the broker, and it is a compare-and-set in the database:
of two deliveries of the same task, exactly one wins the right to send.
"""

from __future__ import annotations


class OrderStatus:
    NEW = "new"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    FILLED = "filled"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"

    CHOICES = [
        (NEW, "New"),
        (SUBMITTED, "Submitted"),
        (ACCEPTED, "Accepted (pending at broker)"),
        (FILLED, "Filled"),
        (REJECTED, "Rejected by broker"),
        (FAILED, "Failed"),
        (CANCELLED, "Cancelled"),
        (UNKNOWN, "Unknown (outcome lost, awaiting reconciliation)"),
        (SKIPPED, "Skipped (not sent)"),
    ]


S = OrderStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.NEW: frozenset({S.SUBMITTED, S.SKIPPED, S.FAILED, S.CANCELLED}),
    # submitted -> cancelled: a close the broker answers "position not found" was not needed (the
    # broker had closed the position by SL/TP first); not a rejection, nothing went wrong
    S.SUBMITTED: frozenset({S.ACCEPTED, S.FILLED, S.REJECTED, S.FAILED, S.UNKNOWN, S.CANCELLED}),
    S.UNKNOWN: frozenset({S.ACCEPTED, S.FILLED, S.FAILED}),
    S.ACCEPTED: frozenset({S.FILLED, S.CANCELLED, S.REJECTED}),
    S.FILLED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.SKIPPED: frozenset(),
}

TERMINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
OPEN_AT_BROKER = frozenset({S.SUBMITTED, S.ACCEPTED, S.UNKNOWN})


class IllegalTransition(Exception):
    def __init__(self, current: str, target: str):
        super().__init__(f"illegal order transition {current!r} -> {target!r}")
        self.current, self.target = current, target


class StaleTransition(Exception):
    """The row was no longer in the expected state: another worker moved it first."""

    def __init__(self, order_id, expected: str, target: str):
        super().__init__(f"order {order_id} is no longer {expected!r}; not moved to {target!r}")
        self.order_id, self.expected, self.target = order_id, expected, target


def check_transition(current: str, target: str) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(current, target)
