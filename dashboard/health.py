"""System health checks shared by ``manage.py healthcheck`` and ``/healthz``.

Each check answers one question with a short timeout and never raises:

========  =========================================================================  =========
check     how                                                                        critical
========  =========================================================================  =========
database  ``select 1``                                                               yes
redis     ``PING`` on REDIS_URL                                                      yes
feed      the feed's own health record (``marketdata.health.read_health``): heartbeat  no
          and newest tick younger than HEALTH_FEED_MAX_AGE_S
beat      heartbeat key written by celery beat each time it sends a task              no
          (``workers.heartbeat``), else django-celery-beat's ``last_run_at`` of the
          analysis task, younger than HEALTH_BEAT_MAX_AGE_S
workers   heartbeat keys written by every Celery worker every 2 s (``worker-heartbeat``  no
          events, ``workers.heartbeat``), younger than HEALTH_WORKER_MAX_AGE_S; the
          queues each live worker consumes are listed so a missing queue shows
analysis  the analysis task's own last-run key (``signals.tasks``)                    no
========  =========================================================================  =========

"Critical" decides the HTTP status of ``/healthz`` (a web process whose database is gone is
not serving); ``manage.py healthcheck`` exits non-zero when any selected check fails.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import redis as redis_lib
from django.conf import settings
from django.db import connection

from signals.names import ANALYZE_TASK, LAST_RUN_MS_KEY
from tradeops import redis_clients
from workers import heartbeat

CHECKS = ("database", "redis", "feed", "beat", "workers", "analysis")
CRITICAL = frozenset({"database", "redis"})
ANALYSIS_LAST_RUN_KEY = LAST_RUN_MS_KEY  # written by signals.tasks.analyze_market
ANALYSIS_TASK = ANALYZE_TASK


@dataclass(slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    critical: bool = False
    age_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _redis(url: str | None = None) -> redis_lib.Redis:
    return redis_clients.shared("probe", url)


def check_database() -> CheckResult:
    try:
        with connection.cursor() as cursor:
            cursor.execute("select 1")
        return CheckResult("database", True, "ok", critical=True)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return CheckResult("database", False, f"down: {exc.__class__.__name__}: {str(exc)[:120]}", critical=True)


def check_redis(client) -> CheckResult:
    try:
        client.ping()
        return CheckResult("redis", True, "ok", critical=True)
    except Exception as exc:  # noqa: BLE001
        return CheckResult("redis", False, f"down: {exc.__class__.__name__}", critical=True)


def check_feed(client, max_age_s: float) -> CheckResult:
    try:
        from marketdata.health import read_health
    except ImportError:
        return CheckResult("feed", False, "feed health reader not installed")
    try:
        health = read_health(client)
    except Exception as exc:  # noqa: BLE001
        return CheckResult("feed", False, f"unreadable: {exc.__class__.__name__}")
    problems = health.problems(max_age_s)
    age = health.last_tick_age_s
    if problems:
        return CheckResult("feed", False, "; ".join(problems), age_s=age)
    stale = health.stale_symbols(max_age_s)
    detail = f"ok: {len(health.subscribed)} symbol(s), newest tick {age:.1f}s ago" if age is not None else "ok"
    if stale:
        detail += f" (quiet: {', '.join(stale[:5])}{'...' if len(stale) > 5 else ''})"
    return CheckResult("feed", True, detail, age_s=age)


def _age_s(value_ms, now_ms: int) -> float | None:
    if value_ms is None:
        return None
    try:
        return max(0.0, (now_ms - int(value_ms)) / 1000)
    except (TypeError, ValueError):
        return None


def check_beat(client, max_age_s: float) -> CheckResult:
    now = _now_ms()
    try:
        age = _age_s(client.get(heartbeat.BEAT_KEY), now)
    except Exception as exc:  # noqa: BLE001
        return CheckResult("beat", False, f"unreadable: {exc.__class__.__name__}")
    source = "heartbeat"
    if age is None:
        # Fallback: the scheduler's own record (written by DatabaseScheduler's periodic sync).
        try:
            from django_celery_beat.models import PeriodicTask

            last = (PeriodicTask.objects.filter(task=ANALYSIS_TASK, enabled=True)
                    .exclude(last_run_at=None).order_by("-last_run_at").values_list("last_run_at", flat=True).first())
        except Exception:  # noqa: BLE001
            last = None
        if last is not None:
            age, source = max(0.0, now / 1000 - last.timestamp()), "last_run_at"
    if age is None:
        return CheckResult("beat", False, "no beat heartbeat (celery beat not running?)")
    if age > max_age_s:
        return CheckResult("beat", False, f"last beat {age:.1f}s ago (> {max_age_s:g}s, {source})", age_s=age)
    return CheckResult("beat", True, f"ok: last beat {age:.1f}s ago ({source})", age_s=age)


def check_workers(client, max_age_s: float) -> CheckResult:
    now = _now_ms()
    try:
        workers = heartbeat.read_workers(client)
    except Exception as exc:  # noqa: BLE001
        return CheckResult("workers", False, f"unreadable: {exc.__class__.__name__}")
    fresh = {name: w for name, w in workers.items() if (_age_s(w.get("at_ms"), now) or 1e9) <= max_age_s}
    if not fresh:
        return CheckResult("workers", False, "no live Celery worker (no fresh worker heartbeat)")
    queues = sorted({q for w in fresh.values() for q in w.get("queues", [])})
    youngest = min(_age_s(w.get("at_ms"), now) for w in fresh.values())
    missing = [q for q in settings.HEALTH_REQUIRED_QUEUES if queues and q not in queues]
    detail = f"{len(fresh)} worker(s) on queue(s) {', '.join(queues) or '?'}"
    if missing:
        return CheckResult("workers", False, f"{detail}; nobody consumes {', '.join(missing)}", age_s=youngest)
    return CheckResult("workers", True, f"ok: {detail}", age_s=youngest)


def check_analysis(client, max_age_s: float) -> CheckResult:
    try:
        age = _age_s(client.get(ANALYSIS_LAST_RUN_KEY), _now_ms())
    except Exception as exc:  # noqa: BLE001
        return CheckResult("analysis", False, f"unreadable: {exc.__class__.__name__}")
    if age is None:
        return CheckResult("analysis", False, "analysis never ran")
    if age > max_age_s:
        return CheckResult("analysis", False, f"last analysis pass {age:.1f}s ago (> {max_age_s:g}s)", age_s=age)
    return CheckResult("analysis", True, f"ok: last pass {age:.1f}s ago", age_s=age)


def run_checks(names=CHECKS, redis_url: str | None = None) -> list[CheckResult]:
    """Run the named checks, in the order given. When Redis is down, the checks that read it say
    so at once instead of each waiting for its own timeout."""
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; expected some of {', '.join(CHECKS)}")
    client = _redis(redis_url)
    try:
        redis_result = check_redis(client) if any(n != "database" for n in names) else None
        per_check = {
            "feed": lambda: check_feed(client, settings.HEALTH_FEED_MAX_AGE_S),
            "beat": lambda: check_beat(client, settings.HEALTH_BEAT_MAX_AGE_S),
            "workers": lambda: check_workers(client, settings.HEALTH_WORKER_MAX_AGE_S),
            "analysis": lambda: check_analysis(client, settings.HEALTH_ANALYSIS_MAX_AGE_S),
        }
        results = []
        for name in names:
            if name == "database":
                results.append(check_database())
            elif name == "redis":
                results.append(redis_result)
            elif not redis_result.ok:
                results.append(CheckResult(name, False, "unknown: Redis is down"))
            else:
                results.append(per_check[name]())
        return results
    finally:
        client.close()
