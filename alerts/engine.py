"""Deduplication, rate limit and delivery of alerts.

``plan`` is pure: given the stored states and the conditions active now, it says which messages
are due — *firing* when a condition appears, *repeat* when it is still active and the last
message is older than ALERTS_REPEAT_S, *resolved* once when it clears. ``run_once`` applies the
plan: each message is claimed by a compare-and-set on its ``AlertState`` row (``last_sent_at``),
so two evaluations at once never send it twice, then it goes to every enabled channel; each
channel's answer is recorded in ``Delivery``. A channel that fails does not stop the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from tradeops.logging import get_logger

from .channels import SENDERS, DeliveryError
from .conditions import Condition, evaluate
from .models import AlertState, Channel, Delivery

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Due:
    key: str
    kind: str  # firing | repeat | resolved
    condition: Condition | None


def plan(states: dict[str, tuple[bool, datetime | None]], active: list[Condition], now: datetime,
         repeat_s: float) -> list[Due]:
    """``states``: key -> (active, last_sent_at) as stored. Pure."""
    due, seen = [], set()
    for c in active:
        seen.add(c.key)
        was_active, last_sent = states.get(c.key, (False, None))
        if not was_active:
            due.append(Due(c.key, "firing", c))
        elif last_sent is None or (now - last_sent).total_seconds() >= repeat_s:
            due.append(Due(c.key, "repeat", c))
    for key, (was_active, _) in states.items():
        if was_active and key not in seen:
            due.append(Due(key, "resolved", None))
    return due


def _claim(item: Due, now: datetime, repeat_s: float) -> AlertState | None:
    """Compare-and-set: record the transition and return the row if this caller won the right to
    send the message; None when another evaluation already did."""
    c = item.condition
    if item.kind == "firing":
        state, created = AlertState.objects.get_or_create(
            key=item.key, defaults=dict(title=c.title, detail=c.detail, severity=c.severity, active=True, since=now,
                                        last_seen_at=now, last_sent_at=now, messages_sent=1))
        if created:
            return state
        won = AlertState.objects.filter(pk=state.pk, active=False).update(
            title=c.title, detail=c.detail, severity=c.severity, active=True, since=now, last_seen_at=now,
            last_sent_at=now, resolved_at=None, messages_sent=F("messages_sent") + 1)
    elif item.kind == "repeat":
        won = AlertState.objects.filter(
            Q(last_sent_at__isnull=True) | Q(last_sent_at__lte=now - timedelta(seconds=repeat_s)),
            key=item.key, active=True,
        ).update(detail=c.detail, last_seen_at=now, last_sent_at=now, messages_sent=F("messages_sent") + 1)
    else:
        won = AlertState.objects.filter(key=item.key, active=True).update(
            active=False, resolved_at=now, last_sent_at=now, messages_sent=F("messages_sent") + 1)
    return AlertState.objects.get(key=item.key) if won else None


def render(state: AlertState, kind: str, now: datetime) -> tuple[str, str, dict]:
    """-> (subject, text, JSON payload) of one message."""
    prefix = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED", "test": "TEST"}[kind]
    subject = f"[tradeops {prefix}] {state.title}"
    since = state.since.strftime("%Y-%m-%d %H:%M:%S UTC")
    if kind == "resolved":
        lasted = int((now - state.since).total_seconds())
        text = f"{state.title}: resolved after {lasted} s (since {since})."
    else:
        text = f"{state.title}: {state.detail}\nsince {since}" if state.detail else f"{state.title}\nsince {since}"
    payload = {"key": state.key, "status": kind, "severity": state.severity, "title": state.title,
               "detail": state.detail, "since": state.since.isoformat(), "sent_at": int(time.time())}
    return subject, text, payload


def deliver(state: AlertState, kind: str, now: datetime, channels=None) -> list[Delivery]:
    subject, text, payload = render(state, kind, now)
    channels = list(Channel.objects.filter(enabled=True)) if channels is None else channels
    out = []
    for channel in channels:
        error = ""
        try:
            SENDERS[channel.kind](channel, subject, text, payload)
        except DeliveryError as exc:
            error = str(exc)[:500]
            log.warning("alert_delivery_failed", key=state.key, kind=kind, channel=channel.name, error=error)
        else:
            log.info("alert_delivered", key=state.key, kind=kind, channel=channel.name)
        out.append(Delivery.objects.create(at=now, channel=channel, key=state.key, kind=kind,
                                           text=f"{subject}\n{text}", ok=not error, error=error))
    return out


def run_once(now: datetime | None = None) -> dict:
    """Evaluate every condition, send what is due. -> a summary (for the task result and tests)."""
    now = now or timezone.now()
    repeat_s = settings.ALERTS_REPEAT_S
    active, errors = evaluate(now)
    for e in errors:
        log.error("alert_condition_failed", error=e)
    states = {k: (a, s) for k, a, s in AlertState.objects.values_list("key", "active", "last_sent_at")}
    sent = []
    due = plan(states, active, now, repeat_s)
    if errors:  # a rule that could not be read is not a condition that cleared
        due = [d for d in due if d.kind != "resolved"]
    for item in due:
        state = _claim(item, now, repeat_s)
        if state is not None:
            deliver(state, item.kind, now)
            sent.append(f"{item.kind}:{item.key}")
    # Conditions still firing but not due: keep their detail and last-seen time current.
    quiet = {c.key: c for c in active if f"firing:{c.key}" not in sent and f"repeat:{c.key}" not in sent}
    for key, c in quiet.items():
        AlertState.objects.filter(key=key, active=True).update(detail=c.detail, last_seen_at=now)
    return {"active": sorted(c.key for c in active), "sent": sent, "errors": errors}


def send_test(channels) -> list[Delivery]:
    """The admin's "send test alert": one message to each given channel, outside dedup."""
    now = timezone.now()
    state = AlertState(key="test", title="Test alert from tradeops", severity="info", since=now,
                       detail="If you read this, the channel works.")
    return deliver(state, "test", now, channels=list(channels))
