"""The ONE vocabulary of why an order was not sent, or not executed (pure).

Why one: five classes (the task's ``Skip`` and ``Fail``, ``risk.RiskReason``, ``sizing.SkipReason``,
``pricing.PRICE_MOVED``) said the same things in different words (``trading_disabled`` and
``mode_mismatch`` were one rule; a close that ran out of attempts said ``close_failed`` whatever
the error). Every reason an ``Order.reason`` can hold that is OURS is here; the database field's
choices (``orders.models.NotSentReasonChoices``) are built from this enum. A ``rejected`` order's
reason is the broker's own reject code (``OrderRejected.code``), kept verbatim.

Renamed by the data migration ``orders/migrations/0005_one_reason_vocabulary.py``:
``trading_disabled`` → ``mode_mismatch``, ``close_failed`` → ``broker_unavailable``.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # skipped: the order was never sent
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_HALTED = "account_halted"
    CLOSE_ONLY = "close_only"
    MONITOR_ONLY = "monitor_only"
    NEEDS_RECONCILIATION = "needs_reconciliation"
    MODE_MISMATCH = "mode_mismatch"  # live account while live trading is off, or the reverse
    SYMBOL_NOT_ALLOWED = "symbol_not_allowed"
    SIGNAL_EXPIRED = "signal_expired"
    PRICE_MOVED = "price_moved"
    KILL_SWITCH = "kill_switch"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    MAX_OPEN_POSITIONS = "max_open_positions"
    MAX_VOLUME_PER_SYMBOL = "max_volume_per_symbol"
    NO_STOP_LOSS = "no_stop_loss"
    NO_ENTRY_PRICE = "no_entry_price"
    NO_EQUITY = "no_equity"
    ZERO_STOP_DISTANCE = "zero_stop_distance"
    NO_CONVERSION_RATE = "no_conversion_rate"
    BELOW_MIN_VOLUME = "below_min_volume"
    # an exit the broker no longer needed (it closed the position by SL/TP first): skipped before
    # sending, or cancelled when the broker answered POSITION_NOT_FOUND. Not a failure.
    NOT_NEEDED = "not_needed"
    # prop-firm rules (prop/rules.py, prop/copying.py); DAILY_LOSS_LIMIT and CLOSE_ONLY above are theirs too
    MAX_LOSS_LIMIT = "max_loss_limit"
    DAILY_LOTS_CAP = "daily_lots_cap"
    DAILY_ORDERS_CAP = "daily_orders_cap"
    DAILY_MODIFICATIONS_CAP = "daily_modifications_cap"
    MAX_OPEN_ORDERS = "max_open_orders"
    NEWS_BLACKOUT = "news_blackout"
    TRADING_HOURS = "trading_hours"
    WEEKEND = "weekend"
    COPY_ACROSS_OWNERS = "copy_across_owners"
    COPY_BETWEEN_EVALUATIONS = "copy_between_evaluations"
    OWNER_NOT_IN_STRATEGY = "owner_not_in_strategy"
    OWNER_UNKNOWN = "owner_unknown"
    # failed: sent (or about to be) and surely not executed, or not knowable
    BROKER_UNAVAILABLE = "broker_unavailable"
    RATE_LIMITED = "rate_limited"
    AUTH_FAILED = "auth_failed"
    INVALID_REQUEST = "invalid_request"
    NOT_EXECUTED = "not_executed"
    OUTCOME_UNKNOWN = "outcome_unknown"  # the reason of an ``unknown`` order until reconciliation
    # missed: the pair never got its outcome from a send (orders.delivery; the sweep records them)
    WORKER_LOST = "worker_lost"  # a worker started the pair and died (or crashed) without an outcome
    BROKER_QUEUE_LOST = "broker_queue_lost"  # no worker ever started it: the message was lost
    DATABASE_UNAVAILABLE = "database_unavailable"  # the chunk kept failing on PostgreSQL errors
    REDIS_UNAVAILABLE = "redis_unavailable"  # the chunk kept failing on Redis errors
    SIGNAL_EXPIRED_BEFORE_DELIVERY = "signal_expired_before_delivery"  # the chunk ran too late


# stored values written before the vocabulary was one (the data migration maps them)
RENAMED = {"trading_disabled": Reason.MODE_MISMATCH, "close_failed": Reason.BROKER_UNAVAILABLE}
