"""Celery queue names and message priorities: the one place they are spelled.

A module of constants (no Celery import) so the settings' routes, the Procfile's workers, the
health check and the dashboard's queue depths all read the same names as the tasks.
"""

from __future__ import annotations


class Queues:
    """Queues split by kind of work, so a burst of analysis never delays an order."""

    DEFAULT = "default"
    ANALYSIS = "analysis"
    ORDERS = "orders"
    OPS = "ops"  # alerts and housekeeping (retention): slow I/O that must never hold a trading worker
    BACKTEST = "backtest"  # sweeps: their own low-priority worker (Procfile "backtest")
    # Queues some live worker must consume for trading to work (the health check's default);
    # a backtest worker is optional.
    TRADING = (DEFAULT, ANALYSIS, ORDERS, OPS)
    ALL = (*TRADING, BACKTEST)


class Priority:
    """Message priorities on the Redis broker, where 0 is served FIRST: kombu keeps one list per
    queue and step (0, 3, 6, 9) and its BRPOP asks for every queue's step-0 list before any step-9
    one. With a prefetch of 1, follow-up bookkeeping (linking fills to positions) published at
    ``FOLLOW_UP`` waits in Redis while a signal's order chunks are pending, instead of taking the
    worker's slots ahead of them."""

    NORMAL = 0
    FOLLOW_UP = 9
