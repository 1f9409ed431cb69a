"""What is wrong right now, as a list of ``Condition`` (key, title, detail). Read-only: the
database and Redis are read, nothing is changed. The health checks (dashboard/health.py) are the
one home of "is the feed stale / a worker missing / beat running"; this module adds the rules
that only matter to a person (rates over a window, repairs, a loss nearing its limit).

=====================  ==============================================================  ==========
key                    fires when                                                      severity
=====================  ==============================================================  ==========
kill_switch            the global kill switch is on (with its reason)                  critical
account_halted:<id>    an enabled account is halted (with its reason)                  critical
feed_stale             the feed check fails (HEALTH_FEED_MAX_AGE_S)                    critical
beat_missing           the beat check fails                                            critical
worker_missing         the workers check fails (none alive, or a queue nobody eats)    critical
reject_rate            rejected ÷ sent orders over ALERTS_RATE_WINDOW_S ≥                warning
                       ALERTS_REJECT_RATE_PCT (at least ALERTS_RATE_MIN_ORDERS sent)
unknown_rate           orders whose outcome is unknown ÷ sent, same window, ≥            critical
                       ALERTS_UNKNOWN_RATE_PCT
reconcile_repair       reconciliation repaired something in the last ALERTS_RATE_WINDOW_S warning
daily_loss:<id>        today's loss ≥ (100 − ALERTS_DAILY_LOSS_WARN_PCT) % of the limit  warning
=====================  ==============================================================  ==========
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    title: str
    detail: str = ""
    severity: str = "warning"


def _health_conditions(now) -> list[Condition]:
    from dashboard.health import run_checks

    out = []
    titles = {"feed": ("feed_stale", "Market-data feed stale"), "beat": ("beat_missing", "Celery beat missing"),
              "workers": ("worker_missing", "Celery worker missing")}
    for result in run_checks(["redis", *titles]):
        if result.name in titles and not result.ok and result.detail != "unknown: Redis is down":
            key, title = titles[result.name]
            out.append(Condition(key, title, result.detail, "critical"))
        elif result.name == "redis" and not result.ok:
            out.append(Condition("redis_down", "Redis unreachable", result.detail, "critical"))
    return out


def _switch_and_halts(now) -> list[Condition]:
    from accounts.models import Account, TradingSwitch

    out = []
    switch = TradingSwitch.objects.filter(id=1).first()
    if switch and switch.kill_switch:
        by = f" by {switch.changed_by}" if switch.changed_by else ""
        out.append(Condition("kill_switch", "Kill switch ON", f"{switch.reason or 'no reason given'}{by}", "critical"))
    for pk, name, reason in Account.objects.filter(enabled=True, halted=True).values_list("pk", "name", "halt_reason"):
        out.append(Condition(f"account_halted:{pk}", f"Account {name} halted", reason, "critical"))
    return out


def _order_rates(now) -> list[Condition]:
    from orders.lifecycle import OrderStatus as S
    from orders.models import Order

    since = now - timedelta(seconds=settings.ALERTS_RATE_WINDOW_S)
    sent_statuses = [S.SUBMITTED, S.ACCEPTED, S.FILLED, S.REJECTED, S.UNKNOWN]
    agg = Order.objects.filter(created_at__gte=since, status__in=sent_statuses).aggregate(
        sent=Count("id"), rejected=Count("id", filter=Q(status=S.REJECTED)),
        unknown=Count("id", filter=Q(status=S.UNKNOWN)))
    out = []
    sent = agg["sent"]
    if sent < settings.ALERTS_RATE_MIN_ORDERS:
        return out
    window = f"last {settings.ALERTS_RATE_WINDOW_S // 60:g} min" if settings.ALERTS_RATE_WINDOW_S >= 60 \
        else f"last {settings.ALERTS_RATE_WINDOW_S} s"
    for key, count, limit, title, severity in (
        ("reject_rate", agg["rejected"], settings.ALERTS_REJECT_RATE_PCT, "Broker rejects above threshold", "warning"),
        ("unknown_rate", agg["unknown"], settings.ALERTS_UNKNOWN_RATE_PCT, "Unknown order outcomes above threshold",
         "critical"),
    ):
        pct = 100 * count / sent
        if count and pct >= limit:
            detail = f"{count} of {sent} sent orders ({pct:.0f} % ≥ {limit:g} %) in the {window}"
            if key == "reject_rate":
                codes = (Order.objects.filter(created_at__gte=since, status=S.REJECTED).values_list("reason")
                         .annotate(n=Count("id")).order_by("-n")[:3])
                detail += "; codes: " + ", ".join(f"{r or '?'} × {n}" for r, n in codes)
            out.append(Condition(key, title, detail, severity))
    return out


def _reconcile_repairs(now) -> list[Condition]:
    from accounts.models import AuditLog

    since = now - timedelta(seconds=settings.ALERTS_RATE_WINDOW_S)
    rows = list(AuditLog.objects.filter(action=AuditLog.Action.RECONCILE, created_at__gte=since)
                .select_related("account").order_by("-created_at")[:50])
    if not rows:
        return []
    accounts = sorted({r.account.name for r in rows if r.account})
    repairs = sorted({str(r.details.get("repair", "?")) for r in rows})
    detail = f"{len(rows)}{'+' if len(rows) == 50 else ''} repair(s) ({', '.join(repairs)}) on " \
             f"{', '.join(accounts[:5]) or '?'}{' …' if len(accounts) > 5 else ''}"
    return [Condition("reconcile_repair", "Reconciliation repaired the database", detail, "warning")]


def daily_loss_near_limit(loss: Decimal, limit: Decimal, warn_pct: float) -> bool:
    """True when today's loss has used at least (100 − warn_pct) % of the limit. Pure."""
    if limit <= 0 or loss <= 0:
        return False
    return loss >= limit * (Decimal(100) - Decimal(str(warn_pct))) / Decimal(100)


def _daily_loss(now) -> list[Condition]:
    from accounts.models import Account
    from orders.reads import exposures as load_exposures

    accounts = list(Account.objects.filter(enabled=True, halted=False))
    if not accounts:
        return []
    out, by_id = [], {a.pk: a for a in accounts}
    for acct_id, exposure in load_exposures(accounts, 0, now).items():
        acct = by_id[acct_id]
        loss = -exposure.daily_pnl
        if daily_loss_near_limit(loss, acct.daily_loss_limit, settings.ALERTS_DAILY_LOSS_WARN_PCT):
            pct = 100 * loss / acct.daily_loss_limit
            out.append(Condition(f"daily_loss:{acct_id}", f"Account {acct.name} near its daily loss limit",
                                 f"loss today {loss} {acct.currency} = {pct:.0f} % of the limit {acct.daily_loss_limit}",
                                 "warning"))
    return out


SOURCES = (_switch_and_halts, _health_conditions, _order_rates, _reconcile_repairs, _daily_loss)


def evaluate(now=None) -> tuple[list[Condition], list[str]]:
    """-> (active conditions, errors). One failing source is reported, never hides the others."""
    now = now or timezone.now()
    found, errors = [], []
    for source in SOURCES:
        try:
            found.extend(source(now))
        except Exception as exc:  # noqa: BLE001 - a broken rule must not silence the others
            errors.append(f"{source.__name__}: {exc.__class__.__name__}: {str(exc)[:200]}")
    return found, errors
