"""The database side of the prop rules: what :mod:`prop.rules` needs, read for N accounts in a few
queries, and the per-firm-day budgets and high-water marks written with compare-and-set updates.

* **Profiles** — an account without a profile uses the default one (``RuleProfile.default``).
* **Day-start snapshot** (:func:`observe_balance`, called by every balance read) — the first
  observation of a firm day fills the day's ``DailyUsage`` row. Taken within
  ``DAY_START_TOLERANCE_S`` of the reset it is the firm's snapshot; later (tradeops was down over the
  reset), the last ``EquitySnapshot`` before the reset is used when it is that recent, otherwise the
  day-start balance is REBUILT from the broker's history: the balance now minus the net profit of
  every position closed since the reset. The day-start equity is then taken equal to that balance
  (exact when nothing was open over the reset, the norm for a scalper with time stops); the row
  says which source it came from.
* **High-water mark** — raised by observed equities only, ``GREATEST`` in SQL (never lowered, two
  writers cannot lose a rise).
* **Budgets** — ``DailyUsage.lots / orders / modifications`` are incremented per account per firm
  day with one UPDATE each; the rows are in PostgreSQL, so a restart changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import EquitySnapshot
from matchtrader.errors import BrokerError
from tradeops.logging import get_logger

from . import rules as R
from .models import DailyUsage, NewsEvent, RuleProfile, RuleState

log = get_logger(__name__)

DAY_START_TOLERANCE_S = 120
ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class AccountRules:
    """One account's profile resolved into the pure rule objects, for the current firm day."""

    account_id: int
    profile: RuleProfile
    loss: R.LossRules
    caps: R.Caps
    session: R.Session
    day: R.FirmDay

    @property
    def has_loss_rules(self) -> bool:
        return self.loss.daily_limit is not None or (
            self.loss.max_loss_mode != R.MaxLossMode.NONE and self.loss.max_loss is not None)


_profiles: dict[int, tuple[float, RuleProfile]] = {}


def profiles_by_id(ids: set[int | None]) -> dict[int | None, RuleProfile]:
    """Profiles by id (None → the default), one query."""
    wanted = {i for i in ids if i is not None}
    rows = list(RuleProfile.objects.filter(Q(pk__in=wanted) | Q(is_default=True)))
    out: dict[int | None, RuleProfile] = {p.pk: p for p in rows}
    default = next((p for p in rows if p.is_default), None)
    out[None] = default if default is not None else RuleProfile.default()
    return out


def resolve(account, profile: RuleProfile, now: datetime) -> AccountRules:
    initial = account.initial_balance
    daily = R.resolve_amount(profile.daily_loss_pct, profile.daily_loss_amount, initial,
                             fallback=account.daily_loss_limit)
    unresolved = []
    if profile.daily_loss_pct is not None and initial is None:
        unresolved.append(R.Rule.DAILY_LOSS)  # a percent of an unknown initial balance: never guess
    max_loss = None
    if profile.max_loss_mode != R.MaxLossMode.NONE:
        max_loss = R.resolve_amount(profile.max_loss_pct, profile.max_loss_amount, initial)
        if max_loss is None or initial is None:
            unresolved.append(R.Rule.MAX_LOSS)
    loss = R.LossRules(basis=profile.daily_loss_basis, daily_limit=daily, max_loss_mode=profile.max_loss_mode,
                       max_loss=max_loss, trailing_stops_at_initial=profile.trailing_stops_at_initial,
                       close_only_buffer_pct=profile.close_only_buffer_pct,
                       flatten_margin_pct=profile.flatten_margin_pct, unresolved=tuple(unresolved))
    caps = R.Caps(profile.max_lots_per_day, profile.max_orders_per_day, profile.max_modifications_per_day,
                  profile.max_open_orders)
    session = R.Session(profile.reset_timezone, profile.trading_start, profile.trading_end, profile.weekend_holding,
                        profile.friday_cutoff)
    return AccountRules(account.pk, profile, loss, caps, session,
                        R.firm_day(now, profile.reset_time, profile.reset_timezone))


def rules_for(accounts, now: datetime) -> dict[int, AccountRules]:
    profiles = profiles_by_id({a.rule_profile_id for a in accounts})
    return {a.pk: resolve(a, profiles.get(a.rule_profile_id) or profiles[None], now) for a in accounts}


def usage_rows(rules: dict[int, AccountRules]) -> dict[int, DailyUsage]:
    """The current firm day's DailyUsage row of each account: one SELECT; the missing ones (the
    day's first order) INSERTed with ON CONFLICT DO NOTHING and read back — constant in the number
    of accounts either way."""
    if not rules:
        return {}

    def read(ids):
        return {(u.account_id, u.day): u for u in DailyUsage.objects.filter(
            account_id__in=list(ids), day__in={rules[a].day.day for a in ids})}

    found = read(rules)
    missing = [aid for aid, r in rules.items() if (aid, r.day.day) not in found]
    if missing:
        DailyUsage.objects.bulk_create([DailyUsage(account_id=aid, day=rules[aid].day.day,
                                                   day_start=rules[aid].day.start) for aid in missing],
                                       ignore_conflicts=True)
        found.update(read(missing))
    return {aid: found[(aid, r.day.day)] for aid, r in rules.items()}


def high_waters(account_ids) -> dict[int, Decimal | None]:
    return dict(RuleState.objects.filter(account_id__in=list(account_ids)).values_list("account_id", "high_water"))


def usage_of(row: DailyUsage | None) -> R.Usage:
    if row is None:
        return R.Usage()
    return R.Usage(lots=row.lots, orders=row.orders, modifications=row.modifications)


def floors_for(account, ar: AccountRules, row: DailyUsage | None, high_water) -> R.Floors:
    return R.floors(ar.loss, day_balance=row.start_balance if row else None,
                    day_equity=row.start_equity if row else None, initial_balance=account.initial_balance,
                    high_water=high_water)


# --- observations -----------------------------------------------------------------------------------------
def raise_high_water(account_id: int, equity: Decimal, now: datetime | None = None) -> None:
    """The trailing mark rises to ``equity`` (an equity the broker reported), never falls: a
    compare-and-set (``high_water < equity``), so two writers cannot lose a rise."""
    now = now or timezone.now()
    # last_checked_at is not touched: it marks a guard run as DONE (prop.guard._save_state, written
    # last), and an observation early in a run must not make the run look finished
    if not RuleState.objects.filter(account_id=account_id).update(last_equity=equity):
        try:
            with transaction.atomic():
                RuleState.objects.create(account_id=account_id, high_water=equity, high_water_at=now,
                                         last_equity=equity)
            return
        except IntegrityError:
            pass
    RuleState.objects.filter(Q(high_water__lt=equity) | Q(high_water__isnull=True), account_id=account_id).update(
        high_water=equity, high_water_at=now)


def observe_balance(account, balance: Decimal, equity: Decimal, now: datetime, client=None) -> DailyUsage:
    """Record a balance read: the day-start snapshot if the day has none yet, the high-water mark."""
    ar = rules_for([account], now)[account.pk]
    row = usage_rows({account.pk: ar})[account.pk]
    raise_high_water(account.pk, equity, now)
    if row.start_source:
        return row
    start_balance, start_equity, source = _day_start(account, ar.day, balance, equity, now, client)
    if start_balance is None:
        return row
    DailyUsage.objects.filter(pk=row.pk, start_source="").update(
        start_balance=start_balance, start_equity=start_equity, start_source=source)
    row.refresh_from_db()
    log.info("prop_day_start", account_id=account.pk, day=str(ar.day.day), source=row.start_source,
             balance=str(row.start_balance), equity=str(row.start_equity))
    return row


def _day_start(account, day: R.FirmDay, balance, equity, now, client):
    if (now - day.start).total_seconds() <= DAY_START_TOLERANCE_S:
        return balance, equity, DailyUsage.Source.OBSERVED
    snap = (EquitySnapshot.objects.filter(account_id=account.pk, at__lt=day.start,
                                          at__gte=day.start - timedelta(seconds=DAY_START_TOLERANCE_S))
            .order_by("-at").first())
    if snap is not None:
        return snap.balance, snap.equity, DailyUsage.Source.SNAPSHOT
    if client is None:
        return None, None, ""
    try:
        closed = client.closed_positions(day.start, now + timedelta(minutes=1))
    except BrokerError as exc:
        log.warning("prop_day_start_history_unavailable", account_id=account.pk, error=type(exc).__name__)
        return None, None, ""
    since = [c for c in closed if c.close_time is None or c.close_time >= day.start]
    realized = sum((Decimal(c.net_profit) for c in since), ZERO)
    start = Decimal(balance) - realized
    return start, start, DailyUsage.Source.REBUILT


# --- budgets ---------------------------------------------------------------------------------------------
def spend(account_id: int, day, *, lots: Decimal = ZERO, orders: int = 0, modifications: int = 0) -> None:
    """Count what was sent against the account's firm day (one UPDATE; the row exists once the
    pre-trade check ran for the day, and is created here otherwise)."""
    fields = {}
    if lots:
        fields["lots"] = F("lots") + lots
    if orders:
        fields["orders"] = F("orders") + orders
    if modifications:
        fields["modifications"] = F("modifications") + modifications
    if not fields:
        return
    if not DailyUsage.objects.filter(account_id=account_id, day=day).update(**fields):
        DailyUsage.objects.bulk_create([DailyUsage(account_id=account_id, day=day, day_start=timezone.now())],
                                       ignore_conflicts=True)
        DailyUsage.objects.filter(account_id=account_id, day=day).update(**fields)


def spend_many(rows: list[tuple[int, object, Decimal]]) -> None:
    """One UPDATE for a chunk's orders: (account id, firm day, lots) each counting one order."""
    if not rows:
        return
    sql = f"""UPDATE {DailyUsage._meta.db_table} u SET lots = u.lots + v.lots, orders = u.orders + 1,
              updated_at = now()
              FROM unnest(%s::bigint[], %s::date[], %s::numeric[]) AS v(account_id, day, lots)
              WHERE u.account_id = v.account_id AND u.day = v.day"""
    with connection.cursor() as cur:
        cur.execute(sql, [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]])


def count_order(account, now: datetime | None = None) -> None:
    """Count one order of the firm day that no cap may block (a close: it reduces risk)."""
    now = now or timezone.now()
    ar = rules_for([account], now)[account.pk]
    usage_rows({account.pk: ar})
    spend(account.pk, ar.day.day, orders=1)


def try_modify(account, now: datetime | None = None) -> tuple[bool, str]:
    """Count one modification (SL/TP edit, partial close, cancel) if the day's cap allows it:
    a compare-and-set on the counter, so two workers cannot both take the last one."""
    now = now or timezone.now()
    ar = rules_for([account], now)[account.pk]
    row = usage_rows({account.pk: ar})[account.pk]
    cap = ar.caps.modifications_per_day
    qs = DailyUsage.objects.filter(pk=row.pk)
    if cap is not None:
        qs = qs.filter(modifications__lt=cap)
    if qs.update(modifications=F("modifications") + 1):
        return True, ""
    return False, R.Rule.DAILY_MODIFICATIONS


# --- news --------------------------------------------------------------------------------------------------
def news_windows(around: datetime, before_s: int, after_s: int) -> list[R.NewsWindow]:
    rows = NewsEvent.objects.filter(at__gte=around - timedelta(seconds=after_s),
                                    at__lte=around + timedelta(seconds=before_s))
    return [R.NewsWindow(e.at, e.currency, e.impact, e.title) for e in rows]


def news_applies(profile: RuleProfile, program_phase: str) -> bool:
    if profile.news_scope == RuleProfile.NewsScope.ALL:
        return True
    return profile.news_scope == RuleProfile.NewsScope.FUNDED and program_phase == "funded"
