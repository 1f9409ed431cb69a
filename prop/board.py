"""What the dashboard shows of the prop rules: per account, the share of each limit used (daily
loss, maximum loss, lots, modifications) as bars, and the guard's recent alerts.

Bars: green below 50 % used, amber from 50 %, red from 80 % or once the headroom is inside the
profile's close-only buffer. The loss figures are the breach guard's last computation
(``RuleState.headroom``, live equity against each floor); the budgets are today's ``DailyUsage``
rows against the profile's caps. The accounts closest to a limit come first (at most ``limit``).
Three queries whatever the number of accounts.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from accounts.models import AuditLog

from . import state
from .models import DailyUsage, RuleState
from .rules import Rule

AMBER_PCT = Decimal("50")
RED_PCT = Decimal("80")
ALERT_ACTIONS = (AuditLog.Action.FIRM_RULE, AuditLog.Action.CLOSE_ONLY)


def level(used_pct: Decimal, buffer_pct: Decimal = Decimal("0")) -> str:
    if used_pct >= RED_PCT or (buffer_pct and used_pct >= 100 - buffer_pct):
        return "red"
    if used_pct >= AMBER_PCT:
        return "amber"
    return "ok"


def _bar(label: str, used_pct: Decimal, text: str, buffer_pct=Decimal("0")) -> dict:
    used = max(Decimal("0"), used_pct)
    return {"label": label, "used_pct": float(min(used, Decimal("100"))), "level": level(used, buffer_pct),
            "text": text}


def headroom_rows(limit: int = 12) -> list[dict]:
    now = timezone.now()
    states = list(RuleState.objects.select_related("account").filter(account__enabled=True))
    if not states:
        return []
    accounts = [s.account for s in states]
    rules = state.rules_for(accounts, now)
    usage = {(u.account_id, u.day): u for u in DailyUsage.objects.filter(
        account_id__in=[a.pk for a in accounts], day__in={r.day.day for r in rules.values()})}
    rows = []
    for s in states:
        a, ar = s.account, rules[s.account.pk]
        bars = []
        names = {Rule.DAILY_LOSS: "Daily loss", Rule.MAX_LOSS: "Max loss"}
        for rule, label in names.items():
            h = (s.headroom or {}).get(str(rule))
            if h:
                bars.append(_bar(label, Decimal(h["used_pct"]), f"{h['headroom']} left of {h['limit']}",
                                 ar.loss.close_only_buffer_pct))
        u = usage.get((a.pk, ar.day.day))
        if ar.caps.lots_per_day:
            used = u.lots if u else Decimal("0")
            bars.append(_bar("Lots", used / ar.caps.lots_per_day * 100, f"{used} of {ar.caps.lots_per_day}"))
        if ar.caps.modifications_per_day:
            used = Decimal(u.modifications if u else 0)
            bars.append(_bar("Modifications", used / ar.caps.modifications_per_day * 100,
                             f"{used} of {ar.caps.modifications_per_day}"))
        if bars:
            rows.append({"account": a.name, "account_id": a.pk, "profile": ar.profile.name, "halted": a.halted,
                         "halt_cause": a.halt_cause, "close_only": s.close_only, "bars": bars,
                         "worst": max(b["used_pct"] for b in bars)})
    rows.sort(key=lambda r: (-r["worst"], r["account"]))
    return rows[:limit]


def alerts(hours: int = 24, limit: int = 10) -> list[AuditLog]:
    since = timezone.now() - timedelta(hours=hours)
    return list(AuditLog.objects.filter(action__in=ALERT_ACTIONS, created_at__gte=since)
                .select_related("account").order_by("-created_at")[:limit])
