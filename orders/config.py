"""The engine's settings as one value for the pure decisions (:class:`orders.policy.EngineConfig`).

Read from Django settings once per task by the I/O layers; the decisions never read settings.
"""

from __future__ import annotations

from django.conf import settings

from .policy import EngineConfig


def engine_config() -> EngineConfig:
    return EngineConfig(
        simulation_mode=settings.SIMULATION_MODE, trading_enabled=settings.TRADING_ENABLED,
        signal_max_age_s=settings.ORDERS_SIGNAL_MAX_AGE_S, max_attempts=settings.ORDERS_MAX_SUBMIT_ATTEMPTS,
        backoff_base_s=settings.ORDERS_BACKOFF_BASE_S, backoff_cap_s=settings.ORDERS_BACKOFF_CAP_S,
        max_retry_after_s=settings.ORDERS_MAX_RETRY_AFTER_S,
    )
