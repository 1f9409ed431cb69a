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
kill_switch  the global kill switch (``TradingSwitch``) is off                          advisory
halts     no enabled account is halted (names and reasons listed)                     advisory
broker_state  the oldest broker read (``Account.balance_updated_at``) of the enabled,   no
          unhalted accounts is younger than HEALTH_BROKER_STATE_MAX_AGE_S
queue     the "orders" queue holds at most HEALTH_ORDERS_QUEUE_MAX messages on the      no
          Celery broker (every priority list counted)
clock     our clock agrees with the broker's (the HTTP ``Date`` header of FEED_BASE_URL)  no
          within HEALTH_CLOCK_MAX_SKEW_S, beyond the header's 1 s resolution and half the
          round trip; the measurement is cached in Redis for HEALTH_CLOCK_CACHE_S
========  =========================================================================  =========

"Critical" decides the HTTP status of ``/healthz`` (a web process whose database is gone is
not serving); ``manage.py healthcheck`` exits non-zero when any selected check fails.
``status(results, strict)`` turns results into ok / degraded / down and the HTTP code.
"Advisory" checks report a state an operator (or a risk rule) chose on purpose: they make the
status "degraded" but never a 503, not even with ``?strict=1``, so a load balancer never takes
the admin away while the kill switch is on.
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

CHECKS = ("database", "redis", "feed", "beat", "workers", "analysis", "kill_switch", "halts", "broker_state",
          "queue", "clock")
CRITICAL = frozenset({"database", "redis"})
ADVISORY = frozenset({"kill_switch", "halts"})
CLOCK_CACHE_KEY = "ops:health:clock"  # JSON of the last clock measurement (see check_clock)
ANALYSIS_LAST_RUN_KEY = LAST_RUN_MS_KEY  # written by signals.tasks.analyze_market
ANALYSIS_TASK = ANALYZE_TASK


@dataclass(slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    critical: bool = False
    age_s: float | None = None
    advisory: bool = False

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
        # The class only: a driver's message names the host, port and user (it is in the logs of
        # whoever runs the check, never in an HTTP answer).
        return CheckResult("database", False, f"down: {exc.__class__.__name__}", critical=True)


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
    degraded = health.degraded()
    if degraded:  # alive, but it lost data in the last minute: /healthz says "degraded"
        return CheckResult("feed", False, "degraded: " + "; ".join(degraded), age_s=age)
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


def check_kill_switch() -> CheckResult:
    from accounts.models import TradingSwitch

    try:
        switch = TradingSwitch.objects.filter(id=1).first()
    except Exception as exc:  # noqa: BLE001
        return CheckResult("kill_switch", False, f"unreadable: {exc.__class__.__name__}", advisory=True)
    if switch is not None and switch.kill_switch:
        since = switch.changed_at.strftime("%Y-%m-%d %H:%M:%S UTC") if switch.changed_at else "?"
        by = f" by {switch.changed_by}" if switch.changed_by else ""
        return CheckResult("kill_switch", False, f"kill switch ON since {since}{by}: {switch.reason or 'no reason given'}",
                           advisory=True)
    return CheckResult("kill_switch", True, "ok: trading allowed", advisory=True)


def check_halts() -> CheckResult:
    from accounts.models import Account

    try:
        halted = list(Account.objects.filter(enabled=True, halted=True).order_by("name")
                      .values_list("name", "halt_reason")[:6])
        total = Account.objects.filter(enabled=True, halted=True).count() if len(halted) > 5 else len(halted)
    except Exception as exc:  # noqa: BLE001
        return CheckResult("halts", False, f"unreadable: {exc.__class__.__name__}", advisory=True)
    if halted:
        listed = "; ".join(f"{name}: {reason}" for name, reason in halted[:5])
        more = f" (+{total - 5} more)" if total > 5 else ""
        return CheckResult("halts", False, f"{total} account(s) halted: {listed}{more}", advisory=True)
    return CheckResult("halts", True, "ok: no enabled account halted", advisory=True)


def check_broker_state(max_age_s: float) -> CheckResult:
    """How old our picture of the broker's state is: the oldest balance/positions read among the
    accounts that trade (``orders.sync_accounts`` refreshes them)."""
    from accounts.models import Account
    from django.db.models import Count, Min, Q

    try:
        agg = Account.objects.filter(enabled=True, halted=False).aggregate(
            n=Count("id"), never=Count("id", filter=Q(balance_updated_at=None)), oldest=Min("balance_updated_at"))
    except Exception as exc:  # noqa: BLE001
        return CheckResult("broker_state", False, f"unreadable: {exc.__class__.__name__}")
    if not agg["n"]:
        return CheckResult("broker_state", True, "ok: no trading account")
    if agg["never"]:
        return CheckResult("broker_state", False, f"{agg['never']} of {agg['n']} account(s) never read from the broker")
    age = max(0.0, time.time() - agg["oldest"].timestamp())
    if age > max_age_s:
        return CheckResult("broker_state", False, f"oldest broker read {age:.0f}s ago (> {max_age_s:g}s)", age_s=age)
    return CheckResult("broker_state", True, f"ok: {agg['n']} account(s), oldest read {age:.0f}s ago", age_s=age)


def check_queue(max_depth: int) -> CheckResult:
    """Messages waiting in the "orders" queue on the Celery broker: a backlog means signals are
    traded late (workers too few, stuck, or a broker slowing every call)."""
    from dashboard.data import queue_depths

    depths = queue_depths(_redis(settings.BROKER_REDIS_URL))
    depth = depths.get("orders")
    if depth is None:
        return CheckResult("queue", False, "Celery broker unreachable")
    if depth > max_depth:
        return CheckResult("queue", False, f"orders queue backing up: {depth} messages waiting (> {max_depth})")
    return CheckResult("queue", True, f"ok: {depth} message(s) waiting in orders")


def measure_clock_offset(url: str, timeout_s: float = 2.0) -> dict:
    """One HEAD/GET to the broker: -> {offset_s, bound_s, rtt_s} where ``offset_s`` is the broker's
    clock minus ours at mid-request and ``bound_s`` the least |offset| consistent with the
    ``Date`` header (whole seconds, so the true broker time lies in [Date, Date + 1)) and the
    round trip. Raises on a network error or a missing header."""
    from email.utils import parsedate_to_datetime

    import requests

    t0 = time.time()
    resp = requests.get(url, timeout=timeout_s, allow_redirects=False)
    t1 = time.time()
    header = resp.headers.get("Date")
    if not header:
        raise ValueError("the broker's answer has no Date header")
    broker_s = parsedate_to_datetime(header).timestamp()
    mid, half_rtt = (t0 + t1) / 2, (t1 - t0) / 2
    # Our mid-request time may be anywhere in [mid - half_rtt, mid + half_rtt]; the broker's in
    # [broker_s, broker_s + 1). The least skew consistent with both:
    low, high = broker_s - (mid + half_rtt), broker_s + 1 - (mid - half_rtt)
    bound = 0.0 if low <= 0 <= high else min(abs(low), abs(high))
    return {"offset_s": round(broker_s + 0.5 - mid, 3), "bound_s": round(bound, 3), "rtt_s": round(t1 - t0, 3),
            "at_ms": _now_ms(), "url": url}


def check_clock(client, max_skew_s: float) -> CheckResult:
    url = settings.HEALTH_CLOCK_URL or settings.FEED_BASE_URL
    if not url:
        return CheckResult("clock", True, "ok: no broker URL to compare with")
    import json

    cached = None
    try:
        raw = client.get(CLOCK_CACHE_KEY)
        cached = json.loads(raw) if raw else None
    except Exception:  # noqa: BLE001 - measured afresh below
        cached = None
    if not cached or cached.get("url") != url:
        try:
            cached = measure_clock_offset(url)
        except Exception as exc:  # noqa: BLE001 - cached too: a dead broker must not cost every probe 2 s
            cached = {"error": exc.__class__.__name__, "url": url, "at_ms": _now_ms()}
        try:
            client.set(CLOCK_CACHE_KEY, json.dumps(cached), ex=max(1, int(settings.HEALTH_CLOCK_CACHE_S)))
        except Exception:  # noqa: BLE001
            pass
    if "error" in cached:
        return CheckResult("clock", False, f"broker clock unreadable at {url}: {cached['error']}")
    if cached["bound_s"] > max_skew_s:
        return CheckResult("clock", False, f"host clock off from the broker's by about {cached['offset_s']:+.1f}s "
                                           f"(at least {cached['bound_s']:.1f}s > {max_skew_s:g}s)")
    return CheckResult("clock", True, f"ok: within {max_skew_s:g}s of the broker (Date header, "
                                      f"round trip {cached['rtt_s'] * 1000:.0f} ms)")


def run_checks(names=CHECKS, redis_url: str | None = None) -> list[CheckResult]:
    """Run the named checks, in the order given. When Redis is down, the checks that read it say
    so at once instead of each waiting for its own timeout."""
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; expected some of {', '.join(CHECKS)}")
    client = _redis(redis_url)
    try:
        per_check = {
            "feed": lambda: check_feed(client, settings.HEALTH_FEED_MAX_AGE_S),
            "beat": lambda: check_beat(client, settings.HEALTH_BEAT_MAX_AGE_S),
            "workers": lambda: check_workers(client, settings.HEALTH_WORKER_MAX_AGE_S),
            "analysis": lambda: check_analysis(client, settings.HEALTH_ANALYSIS_MAX_AGE_S),
            "queue": lambda: check_queue(settings.HEALTH_ORDERS_QUEUE_MAX),
            "clock": lambda: check_clock(client, settings.HEALTH_CLOCK_MAX_SKEW_S),
        }
        database_only = {
            "kill_switch": check_kill_switch,
            "halts": check_halts,
            "broker_state": lambda: check_broker_state(settings.HEALTH_BROKER_STATE_MAX_AGE_S),
        }
        redis_result = check_redis(client) if any(n in per_check or n == "redis" for n in names) else None
        results = []
        for name in names:
            if name == "database":
                results.append(check_database())
            elif name in database_only:
                results.append(database_only[name]())
            elif name == "redis":
                results.append(redis_result)
            elif not redis_result.ok:
                results.append(CheckResult(name, False, "unknown: Redis is down"))
            else:
                results.append(per_check[name]())
        return results
    finally:
        client.close()


def overall(results: list[CheckResult], strict: bool = False) -> tuple[str, int]:
    """-> (status, HTTP code): "down"/503 when a critical check fails; "degraded"/200 when another
    fails (503 with ``strict``, except for advisory checks, see the module docstring); "ok"/200."""
    failed = [r for r in results if not r.ok]
    if any(r.critical for r in failed):
        return "down", 503
    if not failed:
        return "ok", 200
    if strict and any(not r.advisory for r in failed):
        return "degraded", 503
    return "degraded", 200
