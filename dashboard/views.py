"""Operations views: the dashboard page, its panels alone (fetched every few seconds by the page),
and ``/healthz``."""

from __future__ import annotations

import hmac
from functools import lru_cache

import redis
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache

from tradeops import redis_clients

from . import charts, data
from .health import CHECKS, overall, run_checks


def _redis(url: str) -> redis.Redis:
    return redis_clients.shared("page", url)


def _fmt_money(v: float) -> str:
    return f"{v:,.0f}"


def build_context(snap: data.Snapshot) -> dict:
    """Charts (SVG strings, marked safe: built from numbers and escaped labels) and tables."""
    wide = charts.Box(width=1400, height=240, left=70)
    half = charts.Box(width=680, height=220)
    # Per-account curves as the change since the window's start: accounts of 10k and 100k share
    # one readable scale, and winners and losers separate at a glance.
    account_series = [
        charts.Series(name, [(t, e - pts[0][1]) for t, e in pts], color=charts.PALETTE[i % len(charts.PALETTE)])
        for i, (name, pts) in enumerate(sorted(snap.equity.accounts.items()))
    ]
    last_equity = {name: pts[-1][1] for name, pts in snap.equity.accounts.items() if pts}
    equity_total = charts.line_chart(
        [charts.Series("Total equity", snap.equity.total, color=charts.TOTAL_COLOR, width=2.2)], box=wide,
        label="Total equity", y_format=charts.fmt_number, max_gap=3 * snap.bucket_s,
        empty_message="No equity snapshots yet (the order engine's sync task writes them)",
    )
    equity_accounts = charts.line_chart(
        account_series, box=half, label="Equity change per account (top movers)", zero_line=True,
        max_gap=3 * snap.bucket_s,
        empty_message="No equity snapshots yet",
    )
    signals_chart = charts.stacked_bar_chart(
        snap.signals.buckets, snap.signals.by_status, box=half, label="Signals per bucket by status",
        bucket_seconds=snap.bucket_s, empty_message="No signal in this window",
    )
    orders_chart = charts.stacked_bar_chart(
        snap.orders.buckets, snap.orders.by_status, box=half, label="Orders per bucket by status",
        bucket_seconds=snap.bucket_s, empty_message="No order in this window",
    )
    exposure_chart = charts.hbar_chart(
        [(row["symbol"], float(row["net"])) for row in snap.exposure], label="Net open lots per symbol",
        empty_message="No open position",
    )
    queue_chart = charts.hbar_chart(
        [(q, float(n)) for q, n in snap.queues.items() if n is not None], label="Celery queue depth",
        empty_message="Broker unreachable",
    )
    feed_rows, lag_chart = [], ""
    if snap.feed is not None:
        now_ms = snap.feed.now_ms
        for name in sorted(set(snap.feed.subscribed) | set(snap.feed.symbols)):
            s = snap.feed.symbols.get(name)
            age = s.age_s(now_ms) if s else None
            feed_rows.append({
                "symbol": name, "lag_ms": s.lag_ms if s else None, "age_s": age, "ticks": s.ticks if s else 0,
                "gaps": s.gaps if s else 0, "malformed": s.malformed if s else 0,
                "stale": age is None or age > settings.HEALTH_FEED_MAX_AGE_S,
            })
        lag_chart = charts.hbar_chart(
            [(r["symbol"], float(r["lag_ms"] or 0)) for r in feed_rows], label="Feed lag per symbol (ms)",
            value_format=lambda v: f"{v:.0f} ms", empty_message="No symbol subscribed",
        )
    total_now = snap.equity.total[-1][1] if snap.equity.total else None
    total_first = snap.equity.total[0][1] if snap.equity.total else None
    return {
        "snap": snap,
        "windows": list(data.WINDOWS),
        "equity_total_svg": mark_safe(equity_total),
        "equity_accounts_svg": mark_safe(equity_accounts),
        "equity_legend": [{"name": s.name, "color": s.color, "last": _fmt_money(last_equity[s.name]),
                           "change": s.points[-1][1]} for s in account_series if s.points],
        "signals_svg": mark_safe(signals_chart),
        "signals_legend": [{"name": k, "color": charts.STATUS_COLORS.get(k, "#9c755f"), "n": sum(v)}
                           for k, v in snap.signals.by_status.items()],
        "orders_svg": mark_safe(orders_chart),
        "orders_legend": [{"name": k, "color": charts.STATUS_COLORS.get(k, "#9c755f"), "n": sum(v)}
                          for k, v in snap.orders.by_status.items()],
        "exposure_svg": mark_safe(exposure_chart),
        "queue_svg": mark_safe(queue_chart),
        "lag_svg": mark_safe(lag_chart),
        "feed_rows": feed_rows,
        "open_positions_total": sum(row["positions"] for row in snap.exposure),
        "total_equity": total_now,
        "total_change": (total_now - total_first) if total_now is not None else None,
    }


def _snapshot(request) -> data.Snapshot:
    return data.collect(
        request.GET.get("window"),
        redis_data=_redis(settings.REDIS_URL),
        redis_broker=_redis(settings.BROKER_REDIS_URL),
    )


@never_cache
@staff_member_required
def dashboard(request):
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "refresh_s": settings.DASHBOARD_REFRESH_S,
        "flower_url": f"{request.scheme}://{request.get_host().rsplit(':', 1)[0]}:{settings.FLOWER_PORT}/",
        **build_context(_snapshot(request)),
    }
    return render(request, "dashboard/index.html", context)


@never_cache
@staff_member_required
def panels(request):
    """The panels alone, for the page's auto-refresh (replaces the panels' HTML in place)."""
    return render(request, "dashboard/_panels.html", build_context(_snapshot(request)))


def _may_see_details(request) -> bool:
    """The detailed JSON is for monitoring (``Authorization: Bearer $HEALTH_TOKEN``) and staff."""
    token = settings.HEALTH_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    try:  # the session lives in the database, which may be the thing that is down
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_active and user.is_staff)
    except Exception:  # noqa: BLE001 - no session, no details; the token still works
        return False


def healthz(request):
    """Health of the web process and of the system around it (the checks of ``manage.py
    healthcheck``, see dashboard/health.py).

    503 when a critical dependency (database, Redis) is down: this process cannot serve. Other
    failures (feed, beat, workers, analysis) answer 200 with ``"status": "degraded"`` so a load
    balancer does not recycle a healthy web process for them; ``?strict=1`` makes any failure 503
    except the advisory ones (kill switch, halted accounts: always 200 degraded, so the admin stays
    reachable while the operator needs it). ``failing`` lists the failed checks by name.
    ``?checks=database,redis`` limits the checks (a cheap liveness probe).

    Without credentials the answer is the status code and one word (``ok``, ``degraded``,
    ``down``): which component is down, queue names and heartbeat ages are for monitoring with
    ``HEALTH_TOKEN`` or a staff session, and even they never see connection strings or driver
    error text (the checks report an error's class only).
    """
    names = [n for n in request.GET.get("checks", "").split(",") if n] or list(CHECKS)
    try:
        results = run_checks(names)
    except ValueError as exc:
        return JsonResponse({"status": "error", "error": str(exc)}, status=400)
    strict = request.GET.get("strict") in ("1", "true", "yes")
    state, status = overall(results, strict)
    if not _may_see_details(request):
        return HttpResponse(state + "\n", status=status, content_type="text/plain; charset=utf-8")
    return JsonResponse(
        {
            "status": state,
            "failing": [r.name for r in results if not r.ok],
            "checks": {r.name: ("ok" if r.ok else r.detail) for r in results},
            "details": {r.name: r.to_dict() for r in results},
        },
        status=status,
    )
