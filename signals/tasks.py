"""Beat-driven analysis. Thin: guards against double-fire and overlap, then ``run_analysis``.

Guards, and why each:

- ``expires`` = the period (and the beat entry's ``expire_seconds`` too, see migration 0002):
  a message that waited in a backlog (worker paused, restarted) is dropped, never replayed stale.
- Double-fire: a beat restart, a schedule reload or two beat processes by mistake can send the
  same period twice. A beat-sent run claims the period with ``SET NX PX`` on
  ``signals:analyze:spacing`` for 80 % of the period, so a second message within that window is
  a no-op. (Keying on ``floor(now)`` instead would both skip legitimate runs and let duplicates
  through whenever the beat's phase sits near a second boundary: the run times jitter across it.)
  A caller that knows its slot passes ``slot=``; each slot then runs at most once.
- Overlap: a beat pass slower than the period must not run concurrently with the next one (two
  whole-market passes competing for the worker). A token-owned Redis lock, released only by its
  owner, expiring after ``RUN_LOCK_TIMEOUT_S``, so a killed worker never wedges the analysis. (A
  double signal is the cool-down claim's to refuse, whatever overlaps: see the event path below.)
  The worker's thread pool enforces no Celery time limits (the limits below are kept for a prefork
  worker); a hung pass holds its thread, and the lock expires after ``RUN_LOCK_TIMEOUT_S`` so the
  other thread keeps the beat going.

The event path (issue 16): ``signals.analyze_symbols`` — the feed's pre-screen (the strategy's
``prescreen`` hook, ``workers.feed``) saw a symbol move and asks for an analysis of just that
symbol now instead of at the next beat. Its guards:

- One surge → one signal: NOT the run lock (a wake-up never waits behind a beat pass, which takes
  ~50 ms over 100 symbols): the cool-down is claimed per symbol by compare-and-set
  (``signals.service.claim_cooldowns``), so of a beat pass and a wake-up that analyse the same
  symbol at once, one signals and the other's decision becomes ``cooldown``. The analysis worker
  runs two threads (Procfile ``analysis``: ``--pool threads --concurrency 2``), so a wake-up
  starts while a beat pass runs, and reuses the configuration that pass loaded (one process).
- Double-fire: the pre-screen re-looks a few times per surge, a redelivered or duplicated
  wake-up is one more read of the same window, and the cool-down claim refuses a second signal.
- ``expires`` = ``EVENT_EXPIRES_S``: a wake-up that waited longer than a beat period is worthless
  (the beat analysed the symbol meanwhile) and is dropped.
- It does not claim the beat's spacing slot: the beat keeps its one pass per period whatever
  the wake-ups do.

Why a Celery task and not a Redis stream the worker blocks on: see README "Tick to trade".
"""

from __future__ import annotations

import json
import time

import redis as redis_lib
from celery import shared_task

from tradeops import redis_clients
from tradeops.logging import get_logger

from .names import ANALYZE_TASK, LAST_RUN_KEY, LAST_RUN_MS_KEY
from .service import run_analysis

log = get_logger(__name__)

ANALYZE_PERIOD_S = 1
SOFT_TIME_LIMIT_S = 10  # a pass over 100 symbols takes ~50 ms; 10 s means something is wrong
TIME_LIMIT_S = 15
RUN_LOCK_KEY = "signals:analyze:lock"
RUN_LOCK_TIMEOUT_S = TIME_LIMIT_S + 5  # outlives the hard limit: a live run never loses its lock
ANALYZE_SYMBOLS_TASK = "signals.analyze_symbols"
EVENT_EXPIRES_S = ANALYZE_PERIOD_S
WAKE_COUNT_KEY = "signals:wakes"  # hash symbol -> wake-ups analysed (ops, tests, the wake-rate figure)
WAKE_OUTCOME_KEY = "signals:wake_outcomes"  # hash reason -> wake-ups that ended so (how many looks a surge needs)
SLOT_KEY = "signals:analyze:slot:{slot}"
SPACING_KEY = "signals:analyze:spacing"
SPACING_FRACTION = 0.8
BEAT_HEARTBEAT_KEY = LAST_RUN_MS_KEY  # read by dashboard.health

def get_redis():
    return redis_clients.shared("default")


def claim_slot(r, slot: int | None) -> bool:
    """True if this run may go ahead (see the module docstring)."""
    if slot is not None:
        return bool(r.set(SLOT_KEY.format(slot=slot), 1, nx=True, ex=60))
    return bool(r.set(SPACING_KEY, 1, nx=True, px=max(1, int(ANALYZE_PERIOD_S * 1000 * SPACING_FRACTION))))


@shared_task(name=ANALYZE_TASK, ignore_result=True, expires=ANALYZE_PERIOD_S, acks_late=False,
             soft_time_limit=SOFT_TIME_LIMIT_S, time_limit=TIME_LIMIT_S)
def analyze_market(slot: int | None = None):
    """One analysis pass over every enabled symbol (``slot``: optional explicit period id)."""
    r = get_redis()
    if not claim_slot(r, slot):
        log.info("analysis_slot_already_run", slot=slot)
        return None
    lock = r.lock(RUN_LOCK_KEY, timeout=RUN_LOCK_TIMEOUT_S, blocking=False)
    if not lock.acquire(blocking=False):
        log.warning("analysis_overlap_skipped", slot=slot)
        return None
    try:
        result = run_analysis(r)
    finally:
        try:
            lock.release()
        except redis_lib.exceptions.LockError:  # expired (a pass longer than the lock): not ours
            log.warning("analysis_lock_lost")
    done_ms = int(time.time() * 1000)
    summary = {"ts_ms": done_ms, "symbols": result.symbols, "signals": result.signals, "reasons": result.reasons,
               "read_ms": round(result.read_ms, 2), "analyse_ms": round(result.analyse_ms, 2),
               "store_ms": round(result.store_ms, 2)}
    pipe = r.pipeline(transaction=False)
    pipe.set(BEAT_HEARTBEAT_KEY, done_ms)
    pipe.set(LAST_RUN_KEY, json.dumps(summary))
    pipe.execute()
    if result.signals:
        log.info("analysis_signals", signals=result.signals, symbols=result.symbols)
    return summary


@shared_task(name=ANALYZE_SYMBOLS_TASK, ignore_result=True, expires=EVENT_EXPIRES_S, acks_late=False,
             soft_time_limit=SOFT_TIME_LIMIT_S, time_limit=TIME_LIMIT_S)
def analyze_symbols(symbols: list[str], wakes: dict[str, dict] | None = None):
    """Analyse just ``symbols`` now (the feed's pre-screen woke them); ``wakes``: their hops."""
    from . import hops

    received = hops.mono_ms()
    r = get_redis()
    result = run_analysis(r, only=list(symbols), wakes={s: {**(wakes or {}).get(s, {}), "woken": received}
                                                        for s in symbols})
    pipe = r.pipeline(transaction=False)
    for s in symbols:
        pipe.hincrby(WAKE_COUNT_KEY, s, 1)
    for reason, n in result.reasons.items():
        pipe.hincrby(WAKE_OUTCOME_KEY, reason, n)
    pipe.execute()
    if result.signals:
        log.info("analysis_signals", signals=result.signals, symbols=result.symbols, path="event")
    return {"symbols": result.symbols, "signals": result.signals, "reasons": result.reasons}
