"""Prop-firm rules as pure functions: firm days, loss floors, headroom, shrink-or-skip.

Why a module of its own: a prop firm closes an account on the first breached rule, so every number
behind "may this order go out, and how big" must be computable by hand and tested by hand. Nothing
here reads the database, Redis, the broker or the clock; callers pass the values in (``prop.state``
and the order engine gather them) and get back a decision that names the rule.

Vocabulary (amounts in the account currency, Decimal):

* **firm day** — the day a firm's daily counters and daily-loss reference belong to. It starts at
  ``reset_time`` in the IANA zone ``reset_tz`` (e.g. 17:00 America/New_York, 00:00 Europe/Prague);
  across a daylight-saving change the day is 23 or 25 hours long and its UTC start moves by an hour
  (:func:`firm_day`).
* **daily reference** — what the daily loss is measured from, by basis: the balance at the day's
  snapshot, the equity at the snapshot, the higher of the two, or the initial balance
  (:func:`daily_reference`).
* **floor** — the equity at which a rule is breached: ``reference − daily limit`` for the daily
  rule; ``initial − max loss`` (static) or ``high-water mark − max loss`` (trailing; the mark only
  rises on equity actually observed, and optionally stops trailing once the floor reaches the
  initial balance) for the maximum-loss rule (:func:`floors`).
* **headroom** — ``live equity − floor``; live equity is the LOWER of the broker's equity and our own
  mark-to-market (:func:`live_equity`).
* **worst case** of an order — its loss if the stop is hit, with the conservative conversion rate
  (the caller's ``loss_per_lot``); open positions' remaining loss to their stops is ``open_risk``.

An entry fits when ``worst case + open_risk ≤ headroom − flatten margin`` for both rules, and the
day's lots / orders and the open-order cap leave room; otherwise it is shrunk to the largest
lot-step multiple that fits, or skipped with the rule's name (:func:`check_entry`). An SL edit that
widens a stop meets the same test with the position's remaining risk at the new stop as its worst
case (:func:`check_stop_edit`); a tightening edit always passes. Close-only and
flatten thresholds (:func:`guard_action`) use the same headroom: inside ``close_only_buffer`` no
entry; at ``flatten_margin`` flatten and halt, before the firm's limit is reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from zoneinfo import ZoneInfo

from orders.reasons import Reason
from tradeops.money import floor_to_step

ZERO = Decimal("0")
HUNDRED = Decimal("100")
RAW_QUANTUM = Decimal("1e-12")


class Basis:
    BALANCE = "balance"
    EQUITY = "equity"
    HIGHER = "higher"  # higher of balance and equity at the daily snapshot
    INITIAL = "initial"
    CHOICES = [(BALANCE, "Balance at the daily snapshot"), (EQUITY, "Equity at the daily snapshot"),
               (HIGHER, "Higher of balance and equity at the daily snapshot"), (INITIAL, "Initial balance")]


class MaxLossMode:
    NONE = "none"
    STATIC = "static"
    TRAILING = "trailing"
    CHOICES = [(NONE, "No maximum-loss rule"), (STATIC, "Static: from the initial balance"),
               (TRAILING, "Trailing the equity high-water mark")]


class Rule:
    """The names a skip, a halt or an audit entry carries: members of the engine's one reason
    vocabulary (``orders.reasons.Reason``), stored in ``Order.reason``."""

    DAILY_LOSS = Reason.DAILY_LOSS_LIMIT
    MAX_LOSS = Reason.MAX_LOSS_LIMIT
    CLOSE_ONLY = Reason.CLOSE_ONLY
    DAILY_LOTS = Reason.DAILY_LOTS_CAP
    DAILY_ORDERS = Reason.DAILY_ORDERS_CAP
    DAILY_MODIFICATIONS = Reason.DAILY_MODIFICATIONS_CAP
    MAX_OPEN_ORDERS = Reason.MAX_OPEN_ORDERS
    NEWS_BLACKOUT = Reason.NEWS_BLACKOUT
    TRADING_HOURS = Reason.TRADING_HOURS
    WEEKEND = Reason.WEEKEND
    NO_STOP_LOSS = Reason.NO_STOP_LOSS
    NO_EQUITY = Reason.NO_EQUITY
    COPY_ACROSS_OWNERS = Reason.COPY_ACROSS_OWNERS
    COPY_BETWEEN_EVALUATIONS = Reason.COPY_BETWEEN_EVALUATIONS
    OWNER_NOT_IN_STRATEGY = Reason.OWNER_NOT_IN_STRATEGY
    OWNER_UNKNOWN = Reason.OWNER_UNKNOWN


# --- firm days ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FirmDay:
    day: date  # the local date on which the firm day STARTS
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


def _local_start(day: date, reset_time: time, tz: ZoneInfo) -> datetime:
    """``day reset_time`` in ``tz`` as UTC. A reset time inside a spring-forward gap resolves with
    the offset before the change (zoneinfo ``fold=0``), i.e. one hour later on the wall clock."""
    return datetime.combine(day, reset_time, tzinfo=tz).astimezone(dt_timezone.utc)


def firm_day(now: datetime, reset_time: time, reset_tz: str) -> FirmDay:
    """The firm day containing ``now`` (aware). DST-correct: boundaries are wall-clock times in the
    firm's zone converted one by one, never "start + 24 h"."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tz = ZoneInfo(reset_tz)
    local_day = now.astimezone(tz).date()
    start = _local_start(local_day, reset_time, tz)
    if now < start:
        local_day -= timedelta(days=1)
        start = _local_start(local_day, reset_time, tz)
    else:
        nxt = _local_start(local_day + timedelta(days=1), reset_time, tz)
        if now >= nxt:  # only possible around a gap: move forward
            local_day += timedelta(days=1)
            start = nxt
    return FirmDay(local_day, start, _local_start(local_day + timedelta(days=1), reset_time, tz))


# --- loss floors ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LossRules:
    """A profile's loss rules resolved for one account (amounts, not percentages)."""

    basis: str
    daily_limit: Decimal | None  # None: no daily-loss rule
    max_loss_mode: str = MaxLossMode.NONE
    max_loss: Decimal | None = None
    trailing_stops_at_initial: bool = False
    close_only_buffer_pct: Decimal = Decimal("20")  # of the limit's size
    flatten_margin_pct: Decimal = Decimal("5")  # of the limit's size
    unresolved: tuple[str, ...] = ()  # rules whose limit is unknown (a percent of a missing initial balance)


def resolve_amount(pct, amount, initial_balance, fallback=None) -> Decimal | None:
    """A limit given as a percent of the initial balance, or as an amount, or the fallback."""
    if pct is not None:
        if initial_balance is None:
            return None
        return (Decimal(initial_balance) * Decimal(pct) / HUNDRED).quantize(Decimal("0.01"))
    if amount is not None:
        return Decimal(amount)
    return None if fallback is None else Decimal(fallback)


def daily_reference(basis: str, *, day_balance, day_equity, initial_balance) -> Decimal | None:
    """What the daily loss is measured from. None when the needed figure is unknown (the caller
    treats the account as not tradable rather than guess)."""
    if basis == Basis.INITIAL:
        return None if initial_balance is None else Decimal(initial_balance)
    if basis == Basis.BALANCE:
        return None if day_balance is None else Decimal(day_balance)
    if basis == Basis.EQUITY:
        return None if day_equity is None else Decimal(day_equity)
    if basis == Basis.HIGHER:
        if day_balance is None or day_equity is None:
            return None
        return max(Decimal(day_balance), Decimal(day_equity))
    raise ValueError(f"unknown daily loss basis {basis!r}")


def raise_high_water(hwm, observed_equity) -> Decimal:
    """The trailing high-water mark after observing ``observed_equity``: it only ever rises, and only
    on an equity actually observed (never on a computed or projected figure)."""
    if hwm is None:
        return Decimal(observed_equity)
    return max(Decimal(hwm), Decimal(observed_equity))


def max_loss_floor(rules: LossRules, *, initial_balance, high_water) -> Decimal | None:
    if rules.max_loss_mode == MaxLossMode.NONE or rules.max_loss is None:
        return None
    if initial_balance is None:
        return None
    initial = Decimal(initial_balance)
    if rules.max_loss_mode == MaxLossMode.STATIC:
        return initial - rules.max_loss
    mark = max(initial, Decimal(high_water)) if high_water is not None else initial
    floor = mark - rules.max_loss
    if rules.trailing_stops_at_initial:
        floor = min(floor, initial)
    return floor


@dataclass(frozen=True, slots=True)
class Floors:
    daily: Decimal | None
    max_loss: Decimal | None


def floors(rules: LossRules, *, day_balance, day_equity, initial_balance, high_water) -> Floors:
    daily = None
    if rules.daily_limit is not None:
        ref = daily_reference(rules.basis, day_balance=day_balance, day_equity=day_equity,
                              initial_balance=initial_balance)
        daily = None if ref is None else ref - rules.daily_limit
    return Floors(daily, max_loss_floor(rules, initial_balance=initial_balance, high_water=high_water))


def live_equity(broker_equity, our_mark) -> Decimal | None:
    """The lower of the broker's equity and our mark-to-market (either may be unknown)."""
    vals = [Decimal(v) for v in (broker_equity, our_mark) if v is not None]
    return min(vals) if vals else None


@dataclass(frozen=True, slots=True)
class Headroom:
    rule: str
    limit: Decimal  # the size of the limit (daily limit or max loss)
    floor: Decimal
    headroom: Decimal  # live equity − floor

    @property
    def used_pct(self) -> Decimal:
        """Share of the limit used (0 – 100+), for the dashboard bars."""
        if self.limit <= 0:
            return HUNDRED
        return max(ZERO, (self.limit - self.headroom) / self.limit * HUNDRED).quantize(Decimal("0.1"))


def headrooms(rules: LossRules, fl: Floors, equity: Decimal) -> list[Headroom]:
    out = []
    if fl.daily is not None and rules.daily_limit is not None:
        out.append(Headroom(Rule.DAILY_LOSS, rules.daily_limit, fl.daily, equity - fl.daily))
    if fl.max_loss is not None and rules.max_loss is not None:
        out.append(Headroom(Rule.MAX_LOSS, rules.max_loss, fl.max_loss, equity - fl.max_loss))
    return out


# --- the guard ----------------------------------------------------------------------------------------
class GuardAction:
    OK = "ok"
    CLOSE_ONLY = "close_only"
    FLATTEN = "flatten"


@dataclass(frozen=True, slots=True)
class GuardDecision:
    action: str
    rule: str = ""
    detail: str = ""


def guard_action(rules: LossRules, rooms: list[Headroom]) -> GuardDecision:
    """Flatten and halt when a headroom is at or below the flatten margin; close-only inside the
    buffer. The tightest rule wins and is named."""
    worst = GuardDecision(GuardAction.OK)
    for h in sorted(rooms, key=lambda h: h.headroom):
        margin = h.limit * rules.flatten_margin_pct / HUNDRED
        buffer = h.limit * rules.close_only_buffer_pct / HUNDRED
        if h.headroom <= margin:
            return GuardDecision(GuardAction.FLATTEN, h.rule,
                                 f"headroom {h.headroom} ≤ flatten margin {margin} (floor {h.floor})")
        if h.headroom <= buffer and worst.action == GuardAction.OK:
            worst = GuardDecision(GuardAction.CLOSE_ONLY, h.rule,
                                  f"headroom {h.headroom} ≤ close-only buffer {buffer} (floor {h.floor})")
    return worst


# --- the pre-trade check --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Caps:
    lots_per_day: Decimal | None = None
    orders_per_day: int | None = None
    modifications_per_day: int | None = None
    open_orders: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """What the account used in the current firm day (``prop.models.DailyUsage``)."""

    lots: Decimal = ZERO
    orders: int = 0
    modifications: int = 0


@dataclass(frozen=True, slots=True)
class EntryContext:
    equity: Decimal | None  # live equity (see live_equity)
    floors: Floors
    usage: Usage = field(default_factory=Usage)
    open_orders: int = 0  # open positions + pending/in-flight orders
    open_risk: Decimal = ZERO  # loss still possible on open positions until their stops
    blocked_by: str = ""  # a calendar rule (news blackout, trading hours, weekend) the caller found
    blocked_detail: str = ""


@dataclass(frozen=True, slots=True)
class EntryDecision:
    volume: Decimal  # the volume to send (≤ requested); ZERO when skipped
    rule: str = ""  # the rule that skipped it, or that shrank it
    detail: str = ""
    breached: bool = False  # a loss rule is at its flatten margin: the account must be halted

    @property
    def allowed(self) -> bool:
        return self.volume > 0

    @property
    def shrunk(self) -> bool:
        return self.allowed and bool(self.rule)


def _fit(available: Decimal, loss_per_lot: Decimal, lot_step: Decimal) -> Decimal:
    if available <= 0:
        return ZERO
    with localcontext() as ctx:
        ctx.prec = 50
        raw = (available / loss_per_lot).quantize(RAW_QUANTUM, rounding=ROUND_HALF_EVEN)
    return floor_to_step(raw, lot_step)


def check_entry(rules: LossRules, caps: Caps, ctx: EntryContext, *, volume: Decimal, loss_per_lot: Decimal | None,
                lot_step: Decimal, min_volume: Decimal) -> EntryDecision:
    """May an entry of ``volume`` lots go out, and how big? Each rule may shrink it to fit; the first
    rule that leaves less than ``min_volume`` skips it, named.

    ``loss_per_lot``: the worst-case loss of one lot if the stop is hit (account currency, the
    conservative conversion). An entry without a stop has an unbounded worst case: skipped.
    """
    if volume <= 0:
        return EntryDecision(ZERO, "", "nothing to send")
    if ctx.blocked_by:
        return EntryDecision(ZERO, ctx.blocked_by, ctx.blocked_detail)
    if rules.unresolved:  # never trade on a limit we cannot compute
        return EntryDecision(ZERO, rules.unresolved[0], "the limit is a percent of the initial balance, which the "
                                                        "account does not have")
    loss_rules = rules.daily_limit is not None or (rules.max_loss_mode != MaxLossMode.NONE and rules.max_loss)
    if caps.open_orders is not None and ctx.open_orders >= caps.open_orders:
        return EntryDecision(ZERO, Rule.MAX_OPEN_ORDERS, f"{ctx.open_orders} open, cap {caps.open_orders}")
    if caps.orders_per_day is not None and ctx.usage.orders >= caps.orders_per_day:
        return EntryDecision(ZERO, Rule.DAILY_ORDERS, f"{ctx.usage.orders} orders today, cap {caps.orders_per_day}")
    shrunk_by, detail = "", ""
    wanted = volume
    if loss_rules:
        if loss_per_lot is None or loss_per_lot <= 0:
            return EntryDecision(ZERO, Rule.NO_STOP_LOSS, "worst case unknown: no stop loss or no conversion rate")
        if ctx.equity is None:
            return EntryDecision(ZERO, Rule.NO_EQUITY, "live equity unknown")
        max_limit = rules.max_loss if rules.max_loss_mode != MaxLossMode.NONE else None
        for rule, floor, limit in ((Rule.DAILY_LOSS, ctx.floors.daily, rules.daily_limit),
                                   (Rule.MAX_LOSS, ctx.floors.max_loss, max_limit)):
            if limit is None:
                continue
            if floor is None:  # the reference (day snapshot, initial balance) is unknown: never guess
                return EntryDecision(ZERO, rule, "loss reference unknown (day snapshot or initial balance)")
            headroom = ctx.equity - floor
            margin = limit * rules.flatten_margin_pct / HUNDRED
            if headroom <= margin:
                return EntryDecision(ZERO, rule, f"live equity {ctx.equity} is at the limit: headroom {headroom} ≤ "
                                                 f"{margin} (floor {floor})", breached=True)
            buffer = limit * rules.close_only_buffer_pct / HUNDRED
            if headroom <= buffer:
                return EntryDecision(ZERO, Rule.CLOSE_ONLY,
                                     f"{rule}: headroom {headroom} within the close-only buffer {buffer}")
            available = headroom - margin - ctx.open_risk
            fit = _fit(available, loss_per_lot, lot_step)
            if fit < volume:
                if fit < min_volume:
                    return EntryDecision(ZERO, rule, f"worst case {volume * loss_per_lot} at the stop exceeds "
                                                     f"{available} of headroom (floor {floor}, live equity "
                                                     f"{ctx.equity}, open risk {ctx.open_risk})")
                volume, shrunk_by = fit, rule
                detail = f"shrunk {wanted} → {fit} lots to fit {available} of headroom ({rule})"
    if caps.lots_per_day is not None:
        room = caps.lots_per_day - ctx.usage.lots
        fit = floor_to_step(room, lot_step) if room > 0 else ZERO
        if fit < volume:
            if fit < min_volume:
                return EntryDecision(ZERO, Rule.DAILY_LOTS, f"{ctx.usage.lots} lots today, cap {caps.lots_per_day}")
            volume, shrunk_by = fit, Rule.DAILY_LOTS
            detail = f"shrunk {wanted} → {fit} lots: {ctx.usage.lots} of {caps.lots_per_day} lots used today"
    return EntryDecision(volume, shrunk_by, detail)


@dataclass(frozen=True, slots=True)
class FirmCheck:
    """Everything :func:`check_entry` needs for one order (read by ``prop.pretrade``), handed to the
    engine's pure pre-trade decision (``orders.policy.decide_send``)."""

    rules: LossRules
    caps: Caps
    ctx: EntryContext
    loss_per_lot: Decimal | None
    firm: bool = False  # a firm's profile (halt cause "firm rule"), or the tradeops default (daily loss)
    day: date | None = None  # the firm day the budgets belong to

    def decide(self, volume: Decimal, *, lot_step: Decimal, min_volume: Decimal) -> EntryDecision:
        return check_entry(self.rules, self.caps, self.ctx, volume=volume, loss_per_lot=self.loss_per_lot,
                           lot_step=lot_step, min_volume=min_volume)


def may_modify(caps: Caps, usage: Usage) -> tuple[bool, str]:
    """A modification (SL/TP edit, partial close, cancel) allowed by the day's cap?"""
    if caps.modifications_per_day is not None and usage.modifications >= caps.modifications_per_day:
        return False, Rule.DAILY_MODIFICATIONS
    return True, ""


def stop_widens(side: str, old_stop, new_stop) -> bool:
    """Does moving a position's stop from ``old_stop`` to ``new_stop`` allow a bigger loss? A BUY's
    stop moving down, a SELL's moving up, or a stop removed; setting a stop where there was none,
    an unchanged stop and every move towards the price do not (a tightening edit)."""
    if new_stop is None:
        return old_stop is not None
    if old_stop is None:
        return False
    old, new = Decimal(old_stop), Decimal(new_stop)
    return new < old if side.upper() == "BUY" else new > old


@dataclass(frozen=True, slots=True)
class EditDecision:
    allowed: bool
    rule: str = ""
    detail: str = ""


def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01")) if amount.is_finite() else amount


def check_stop_edit(rules: LossRules, *, widens: bool, equity: Decimal | None, floors: Floors,
                    new_risk: Decimal | None, other_risk: Decimal) -> EditDecision:
    """May an SL edit go out? The pre-trade rule applied to a moved stop: a widening edit's new
    worst case — this position's remaining loss from the live price to its NEW stop (``new_risk``,
    the conservative conversion) plus the other open positions' remaining risk (``other_risk``) —
    must fit ``headroom − flatten margin`` of each loss rule on live equity, as an entry's worst case
    does in :func:`check_entry`. A tightening edit is always allowed (it only lowers the worst case,
    even at the limit), and so is any edit on an account without loss rules. A refusal names the
    rule (``daily_loss_limit``, ``max_loss_limit``; ``no_stop_loss`` / ``no_equity`` when the worst
    case or the equity is unknown: never guessed)."""
    if not widens:
        return EditDecision(True)
    if rules.unresolved:
        return EditDecision(False, rules.unresolved[0], "the limit is a percent of the initial balance, which the "
                                                        "account does not have")
    max_limit = rules.max_loss if rules.max_loss_mode != MaxLossMode.NONE else None
    if rules.daily_limit is None and max_limit is None:
        return EditDecision(True)
    if new_risk is None or not new_risk.is_finite():
        return EditDecision(False, Rule.NO_STOP_LOSS, "worst case at the new stop unknown (no stop or no rate)")
    if equity is None:
        return EditDecision(False, Rule.NO_EQUITY, "live equity unknown")
    for rule, floor, limit in ((Rule.DAILY_LOSS, floors.daily, rules.daily_limit),
                               (Rule.MAX_LOSS, floors.max_loss, max_limit)):
        if limit is None:
            continue
        if floor is None:
            return EditDecision(False, rule, "loss reference unknown (day snapshot or initial balance)")
        headroom = equity - floor
        available = headroom - limit * rules.flatten_margin_pct / HUNDRED - other_risk
        if new_risk > available:
            return EditDecision(False, rule, f"worst case {_cents(new_risk)} at the new stop exceeds "
                                             f"{_cents(available)} available: headroom {headroom} less the "
                                             f"flatten margin and the open risk {_cents(other_risk)} of the "
                                             f"other positions (floor {floor}, live equity {equity})")
    return EditDecision(True)


# --- calendar rules ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Session:
    """Trading hours and weekend holding, in the firm's zone."""

    tz: str = "UTC"
    start: time | None = None  # None: no trading-hours rule
    end: time | None = None
    weekend_holding: bool = True
    friday_cutoff: time | None = None  # when weekend holding is forbidden: entries stop / flatten at


def session_block(s: Session, now: datetime) -> str:
    """The rule that forbids an entry at ``now`` ("" when none)."""
    local = now.astimezone(ZoneInfo(s.tz))
    if not s.weekend_holding:
        wd = local.weekday()
        if wd >= 5 or (wd == 4 and s.friday_cutoff is not None and local.time() >= s.friday_cutoff):
            return Rule.WEEKEND
    if s.start is not None and s.end is not None:
        t = local.time()
        inside = s.start <= t < s.end if s.start < s.end else (t >= s.start or t < s.end)
        if not inside:
            return Rule.TRADING_HOURS
    return ""


def weekend_flatten_due(s: Session, now: datetime) -> bool:
    """Positions must be closed before the weekend (Friday cutoff passed, or already weekend)."""
    if s.weekend_holding:
        return False
    local = now.astimezone(ZoneInfo(s.tz))
    wd = local.weekday()
    return wd >= 5 or (wd == 4 and s.friday_cutoff is not None and local.time() >= s.friday_cutoff)


@dataclass(frozen=True, slots=True)
class NewsWindow:
    at: datetime
    currency: str
    impact: str
    title: str = ""


IMPACT_RANK = {"low": 1, "medium": 2, "high": 3}


def blackout_hit(events: list[NewsWindow], now: datetime, *, currencies: set[str], before_s: int, after_s: int,
                 min_impact: str = "high") -> NewsWindow | None:
    """The listed event whose blackout window ``[at − before, at + after]`` contains ``now`` and that
    concerns one of ``currencies`` with at least ``min_impact``; None when the time is clear."""
    rank = IMPACT_RANK.get(min_impact, 3)
    wanted = {c.upper() for c in currencies}
    for e in events:
        if IMPACT_RANK.get(e.impact, 0) < rank:
            continue
        if e.currency.upper() not in wanted and e.currency.upper() != "ALL":
            continue
        if e.at - timedelta(seconds=before_s) <= now <= e.at + timedelta(seconds=after_s):
            return e
    return None
