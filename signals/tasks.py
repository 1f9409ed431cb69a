"""Beat-driven analysis. Thin: guards against overlap and double-fire, then ``run_analysis``."""

from __future__ import annotations

import time

import redis as redis_lib
from celery import shared_task
from django.conf import settings

from tradeops.logging import get_logger

from .service import run_analysis

log = get_logger(__name__)

ANALYZE_TASK = "signals.analyze_market"
ANALYZE_PERIOD_S = 1
RUN_LOCK_KEY = "signals:analyze:lock"
SLOT_KEY = "signals:analyze:slot:{slot}"
BEAT_HEARTBEAT_KEY = "signals:analyze:last_run_ms"

_redis = None


def get_redis():
    global _redis
    if _redis is None:
        _redis = redis_lib.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    return _redis


@shared_task(name=ANALYZE_TASK, ignore_result=True, expires=ANALYZE_PERIOD_S, acks_late=False)
def analyze_market(slot: int | None = None):
    """One analysis pass over every enabled symbol.

    - ``expires`` (≤ the period) drops messages that waited in a backlog: stale analysis is
      never replayed after a worker pause.
    - A beat restart can fire the same period twice: the per-second slot key makes the second a
      no-op. An overlapping run (a slow pass) is skipped by the run lock.
    """
    r = get_redis()
    slot = slot if slot is not None else int(time.time() // ANALYZE_PERIOD_S)
    if not r.set(SLOT_KEY.format(slot=slot), 1, nx=True, ex=60):
        log.info("analysis_slot_already_run", slot=slot)
        return None
    if not r.set(RUN_LOCK_KEY, 1, nx=True, px=10_000):
        log.warning("analysis_overlap_skipped", slot=slot)
        return None
    try:
        result = run_analysis(r)
        r.set(BEAT_HEARTBEAT_KEY, int(time.time() * 1000))
    finally:
        r.delete(RUN_LOCK_KEY)
    if result.signals:
        log.info("analysis_signals", signals=result.signals, symbols=result.symbols)
    return {"symbols": result.symbols, "signals": result.signals, "reasons": result.reasons,
            "read_ms": round(result.read_ms, 2), "analyse_ms": round(result.analyse_ms, 2)}
