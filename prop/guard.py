"""The breach guard: while an account holds positions, keep its live equity away from the firm's
loss limits.

Why: the pre-trade check bounds each entry's worst case at its stop, but a gap, slippage or a stop
the broker fills late can still carry equity towards a limit, and a firm closes the account at the
first breach. So, periodically (beat ``prop.guard_accounts``) and when triggered (after every
balance read), per account:

1. take the account's state as the account stream keeps it (:func:`kept_state`: the open
   Positions in PostgreSQL, the last balance/equity read, closes recorded since that read) and
   compute our own mark-to-market of those positions at the feed's live quotes
   (:mod:`prop.marks`); live equity = the lower of the broker's last equity and our mark. The
   broker is read (balance + open positions, two calls) only when that state is STALE — the stream
   has not confirmed the account for ``PROP_GUARD_STATE_MAX_AGE_S`` (no stream running, a dropped
   socket), the balance is older than ``PROP_GUARD_BALANCE_MAX_AGE_S``, an open order of ours is not
   linked to its position yet, or the last read showed floating PnL with no position we know of —
   so with the stream running the guard adds no broker read per account per run;
2. record the day-start snapshot and raise the trailing high-water mark on the broker's equity
   (:mod:`prop.state`);
3. compare the live equity with each loss floor (:func:`prop.rules.guard_action`):

   * headroom within the profile's close-only buffer → **close-only**: no new entries (the
     pre-trade check refuses them too), open positions run to their exits; lifted when the
     headroom is back above the buffer (e.g. a new firm day);
   * headroom at the flatten margin → **flatten and halt**: the account is halted first (so no
     order leaves any more: the send gate reads the flag), with the cause "firm rule" and the rule's
     name, then every open position is closed at the broker, at "high" priority, one call each;
     an audit entry records it and the dashboard shows the alert.

Loss rules win over the minimum hold time and over the time stop: the flatten closes regardless
of how long a position has been open (the min-hold delay applies to our own exits only,
:func:`min_hold_blocks`).

Without weekend holding the guard also closes every position at the Friday cutoff, and with
"flatten before news" every position on a currency whose news blackout has begun (no halt).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from accounts.models import Account, AuditLog
from accounts.states import HaltCause, Restriction
from matchtrader.errors import BrokerError, OrderRejected
from marketdata.models import Symbol
from marketdata.reader import read_quotes
from orders import broker, positions, state_sync
from orders.models import IN_FLIGHT_STATUSES, Order, Position
from tradeops.logging import get_logger

from . import marks, state
from . import rules as R
from .models import RuleState

log = get_logger(__name__)
ZERO = Decimal("0")
FIRM_RULE_CAUSE = "firm rule"
FIRM_RULE_CLOSE = Position.CloseReason.FIRM_RULE  # the close reason of positions the guard flattens


@dataclass
class GuardResult:
    account_id: int
    action: str = R.GuardAction.OK
    rule: str = ""
    detail: str = ""
    equity: Decimal | None = None
    broker_equity: Decimal | None = None
    headroom: dict = field(default_factory=dict)
    closed: int = 0
    halted_now: bool = False

    def as_dict(self) -> dict:
        return {"account_id": self.account_id, "action": self.action, "rule": self.rule, "detail": self.detail,
                "equity": None if self.equity is None else str(self.equity), "closed": self.closed}


def _quotes(symbols: list[str]) -> dict[str, dict]:
    """Fresh feed quotes (one Redis round trip); {} when Redis is unreadable."""
    if not symbols:
        return {}
    try:
        quotes = read_quotes(broker.get_redis(), symbols)
    except Exception as exc:  # noqa: BLE001 - the broker's prices are the fallback
        log.warning("prop_guard_quotes_unavailable", error=type(exc).__name__)
        return {}
    now_ms = int(_time.time() * 1000)
    max_age = settings.ORDERS_MAX_QUOTE_AGE_MS
    return {s: q for s, q in quotes.items() if now_ms - q.get("recv_ms", 0) <= max_age}


def specs_for(names) -> dict[str, marks.Spec]:
    return {s.name: marks.Spec(s.contract_size, s.base_currency, s.quote_currency)
            for s in Symbol.objects.filter(name__in=list(names))}


def our_mark(account: Account, balance: Decimal, open_positions) -> Decimal | None:
    """Balance + our valuation of every open position (commission as a cost, swap only when it
    costs); None when one position cannot be valued (the broker's figure then stands alone)."""
    specs = specs_for({p.symbol for p in open_positions})
    quotes = _quotes(sorted({p.symbol for p in open_positions}))
    total = Decimal(balance)
    for p in open_positions:
        spec = specs.get(p.symbol)
        q = quotes.get(p.symbol)
        if q is not None:
            price = marks.close_price(p.side, Decimal(str(q["bid"])), Decimal(str(q["ask"])))
        else:
            price = p.current_price
        if spec is None or price is None:
            return None
        value = marks.pnl(p.side, p.volume, p.open_price, price, spec, account.currency)
        if value is None:
            return None
        total += value - abs(p.commission or ZERO) + min(ZERO, p.swap or ZERO)
    return total


@dataclass(frozen=True, slots=True)
class Held:
    """An open position as our database knows it, in the shape of the broker's ``OpenPosition``
    that :func:`our_mark` and the closes use (no current price: the feed's quote values it)."""

    id: str
    symbol: str
    side: str
    volume: Decimal
    open_price: Decimal
    commission: Decimal = ZERO
    swap: Decimal = ZERO
    current_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class KeptState:
    balance: Decimal
    equity: Decimal
    positions: list
    stale: str = ""  # why the broker must be read instead ("" = the kept state is usable)


def kept_state(account: Account, now: datetime | None = None) -> KeptState:
    """The account as the account stream (``workers/account_stream.py`` through
    ``orders.state_sync``) and the balance sync keep it, or why it is too stale to judge on.

    The balance is the last one read, plus the net result of positions recorded closed after that
    read (the stream applies a close within about a second; the next balance read includes it)."""
    now = now or timezone.now()
    age = state_sync.state_age_s(account.pk)
    if age is None or age > settings.PROP_GUARD_STATE_MAX_AGE_S:
        return KeptState(ZERO, ZERO, [], f"positions not confirmed by the account stream ({age and round(age, 1)} s)")
    read_at = account.balance_updated_at
    if account.balance is None or account.equity is None or read_at is None or \
            (now - read_at).total_seconds() > settings.PROP_GUARD_BALANCE_MAX_AGE_S:
        return KeptState(ZERO, ZERO, [], "no recent balance read")
    if Order.objects.filter(account_id=account.pk, purpose=Order.Purpose.OPEN, position__isnull=True,
                            status__in=IN_FLIGHT_STATUSES,
                            created_at__gte=now - timedelta(seconds=settings.ORDERS_SIGNAL_MAX_AGE_S * 2)).exists():
        return KeptState(ZERO, ZERO, [], "an open order is not linked to its position yet")
    held = held_positions(account.pk)
    if not held and account.equity != account.balance:
        return KeptState(ZERO, ZERO, [], "floating PnL at the broker with no position we know of")
    read_age_s = (now - read_at).total_seconds()
    if held and read_age_s > settings.PROP_GUARD_STATE_MAX_AGE_S:
        quoted = _quotes(sorted({p.symbol for p in held}))
        unquoted = sorted({p.symbol for p in held} - set(quoted))
        if unquoted:  # our mark cannot follow the price: the equity read alone is too old
            return KeptState(ZERO, ZERO, [], f"no live quote for {','.join(unquoted)}, equity read {read_age_s:.0f} s ago")
    since = Position.objects.filter(account_id=account.pk, status=Position.Status.CLOSED, closed_at__gt=read_at)
    realized = sum((r + c + s for r, c, s in since.values_list("realized_pnl", "commission", "swap")), ZERO)
    # the equity stays as read (it held those positions' PnL then); our mark, from the balance
    # after the closes and the live quotes, is the up-to-date figure beside it
    return KeptState(account.balance + realized, account.equity, held)


def held_positions(account_id: int) -> list[Held]:
    return [Held(*r) for r in Position.objects.filter(account_id=account_id, status=Position.Status.OPEN)
            .values_list("broker_position_id", "symbol__name", "side", "volume", "open_price", "commission", "swap")]


def check_account(account_id: int) -> GuardResult:
    """The periodic check on the kept state (:func:`kept_state`), or on a broker read when that is
    stale; then :func:`evaluate`."""
    account = Account.objects.get(pk=account_id)
    if not account.enabled:
        return GuardResult(account_id)
    client = broker.client_for(account)
    kept = kept_state(account)
    if not kept.stale:
        return evaluate(account, client, kept.balance, kept.equity, kept.positions, kept=True)
    log.info("prop_guard_reads_broker", account_id=account_id, why=kept.stale)
    bal = client.balance()
    return evaluate(account, client, bal.balance, bal.equity, client.open_positions())


def sync_and_guard(account_id: int) -> dict:
    """The balance sync (``orders.positions.sync_account_balance``) followed by the check on that
    same read (the triggered check): the open positions are the stream's when it confirmed the
    account recently, else read from the broker when we know of any."""
    synced = positions.sync_account_balance(account_id)
    account = Account.objects.get(pk=account_id)
    client = broker.client_for(account)
    age = state_sync.state_age_s(account_id)
    if age is not None and age <= settings.PROP_GUARD_STATE_MAX_AGE_S:
        open_ = held_positions(account_id)  # the stream keeps them: no second broker read
    else:
        held = Position.objects.filter(account_id=account_id, status=Position.Status.OPEN).exists()
        open_ = client.open_positions() if held else []
    result = evaluate(account, client, synced["balance"], synced["equity"], open_)
    return {"account_id": account_id, "equity": str(synced["equity"]), "action": result.action,
            "halted": result.action == R.GuardAction.FLATTEN and result.halted_now}


def evaluate(account: Account, client, balance: Decimal, broker_equity: Decimal, open_, *,
             kept: bool = False) -> GuardResult:
    """``kept``: the figures are the kept state (:func:`kept_state`), not a broker read made now: the
    day-start snapshot and the high-water mark are then left to the reads that made them."""
    result = GuardResult(account.pk)
    now = timezone.now()
    mark = our_mark(account, balance, open_)
    equity = R.live_equity(broker_equity, mark)
    result.equity, result.broker_equity = equity, broker_equity
    if kept:
        ar = state.rules_for([account], now)[account.pk]
        row = state.usage_rows({account.pk: ar})[account.pk]
        if not row.start_source:  # a firm day the balance reads have not started yet: start it now
            row = state.observe_balance(account, account.balance, account.equity, now, client)
        else:
            state.raise_high_water(account.pk, account.equity, now)  # the broker's figure, as read
    else:
        row = state.observe_balance(account, balance, broker_equity, now, client)
        ar = state.rules_for([account], now)[account.pk]
    hwm = state.high_waters([account.pk]).get(account.pk)
    fl = state.floors_for(account, ar, row, hwm)
    rooms = R.headrooms(ar.loss, fl, equity) if equity is not None else []
    decision = R.guard_action(ar.loss, rooms)
    result.action, result.rule, result.detail = decision.action, decision.rule, decision.detail
    result.headroom = {h.rule: {"limit": str(h.limit), "floor": str(h.floor), "headroom": str(h.headroom),
                                "used_pct": str(h.used_pct)} for h in rooms}
    rs, _ = RuleState.objects.get_or_create(account=account)
    if decision.action == R.GuardAction.FLATTEN:
        if kept:  # the one moment the broker is read anyway: close what it holds, known to us or not
            try:
                open_ = client.open_positions()
            except BrokerError as exc:
                log.warning("prop_flatten_read_failed", account_id=account.pk, error=type(exc).__name__)
        if not account.halted or open_:
            result.halted_now, result.closed = flatten(account, client, open_, decision, firm=bool(ar.profile.firm))
    elif decision.action == R.GuardAction.CLOSE_ONLY:
        if not rs.close_only:
            _set_close_only(account, True, f"{decision.rule}: {decision.detail}")
    elif rs.close_only and not account.halted and rooms:  # never lifted on an unknown equity
        _set_close_only(account, False, "headroom back above the buffer")
    if decision.action != R.GuardAction.FLATTEN and open_ and R.weekend_flatten_due(ar.session, now):
        result.closed = _close_all(account, client, open_, R.Rule.WEEKEND)
        AuditLog.record("prop.guard", AuditLog.Action.CLOSE_ALL, account=account, rule=R.Rule.WEEKEND,
                        positions=result.closed)
    if decision.action != R.GuardAction.FLATTEN and open_ and ar.profile.news_flatten_before \
            and state.news_applies(ar.profile, account.program_phase):
        due = news_due(open_, ar.profile, now)
        if due:
            result.closed += _close_all(account, client, due, R.Rule.NEWS_BLACKOUT)
            AuditLog.record("prop.guard", AuditLog.Action.CLOSE_ALL, account=account, rule=R.Rule.NEWS_BLACKOUT,
                            positions=len(due))
    _save_state(rs, result, now)  # last: a run is visible as done once what it decided is done
    if decision.action != R.GuardAction.OK:
        log.warning("prop_guard", account_id=account.pk, action=decision.action, rule=decision.rule,
                    detail=decision.detail, equity=str(equity), broker_equity=str(broker_equity), mark=str(mark))
    return result


def news_due(open_positions, profile, now: datetime) -> list:
    """Open positions on a currency with a listed event whose blackout window has begun (the
    profile's "flatten before news")."""
    events = state.news_windows(now, profile.news_before_s, profile.news_after_s)
    if not events:
        return []
    currencies = {s.name: {s.base_currency, s.quote_currency}
                  for s in Symbol.objects.filter(name__in={p.symbol for p in open_positions})}
    return [p for p in open_positions if R.blackout_hit(
        events, now, currencies=currencies.get(p.symbol, set()), before_s=profile.news_before_s,
        after_s=profile.news_after_s, min_impact=profile.news_min_impact) is not None]


def _save_state(rs: RuleState, result: GuardResult, now: datetime) -> None:
    RuleState.objects.filter(pk=rs.pk).update(headroom=result.headroom, last_checked_at=now,
                                              last_equity=result.equity)


def _set_close_only(account: Account, on: bool, reason: str) -> None:
    """Close-only is the account state of :mod:`accounts.states` (``restriction``): the fan-out,
    the eligibility and the send gate all honour it. The guard sets it only over ``none`` and lifts
    only what it set (``RuleState.close_only``), never an operator's own restriction."""
    if on:
        changed = RuleState.objects.filter(account=account, close_only=False).update(
            close_only=True, close_only_reason=reason[:300])
        Account.objects.filter(pk=account.pk, restriction=Restriction.NONE).update(restriction=Restriction.CLOSE_ONLY)
    else:
        changed = RuleState.objects.filter(account=account, close_only=True).update(close_only=False,
                                                                                   close_only_reason="")
        if changed:
            Account.objects.filter(pk=account.pk, restriction=Restriction.CLOSE_ONLY).update(
                restriction=Restriction.NONE)
    if changed:
        AuditLog.record("prop.guard", AuditLog.Action.CLOSE_ONLY if on else AuditLog.Action.CLOSE_ONLY_LIFTED,
                        account=account, reason=reason)
        log.warning("prop_close_only" if on else "prop_close_only_lifted", account_id=account.pk, reason=reason)


def flatten(account: Account, client, open_positions, decision: R.GuardDecision, *, firm: bool) -> tuple[bool, int]:
    """Halt first, so nothing new leaves (cause "firm rule" on a firm's profile, "daily loss" on the
    tradeops default one); then close every open position. Returns (halted now, positions closed)."""
    if firm:
        cause, reason = HaltCause.FIRM_RULE, f"{FIRM_RULE_CAUSE}: {decision.rule}: {decision.detail}"
    else:
        cause, reason = HaltCause.DAILY_LOSS, f"daily loss limit: {decision.detail}"
    halted = account.halt(reason, actor="prop.guard", cause=cause)
    _set_close_only(account, True, reason)
    closed = _close_all(account, client, open_positions, decision.rule)
    if halted or closed:
        AuditLog.record("prop.guard", AuditLog.Action.FIRM_RULE, account=account, rule=decision.rule,
                        detail=decision.detail, positions_closed=closed, cause=cause.value)
    return halted, closed


def _close_all(account: Account, client, open_positions, rule: str) -> int:
    """Close every open broker position: through ``orders.positions.close_position`` for the ones we
    know (recorded, one close order each), directly at the broker for the rest (reconciliation
    records them). Returns how many were closed."""
    known = dict(Position.objects.filter(account=account, status=Position.Status.OPEN,
                                         broker_position_id__in=[p.id for p in open_positions])
                 .values_list("broker_position_id", "pk"))
    closed = 0
    for p in open_positions:
        try:
            if p.id in known:
                positions.close_position(known[p.id], FIRM_RULE_CLOSE)
            else:
                client.close_position(p.id, p.symbol, p.side, p.volume)
            closed += 1
        except OrderRejected as exc:
            log.info("prop_flatten_close_rejected", account_id=account.pk, position=p.id, code=exc.code)
        except BrokerError as exc:
            log.error("prop_flatten_close_failed", account_id=account.pk, position=p.id, error=type(exc).__name__,
                      rule=rule)
    return closed


def accounts_to_guard() -> list[int]:
    """Accounts holding (or about to hold) positions — ours, or any the last balance read implies
    (equity ≠ balance) — and close-only ones (to lift the state)."""
    since = timezone.now() - timedelta(seconds=settings.ORDERS_SIGNAL_MAX_AGE_S * 2)
    ids = set(Position.objects.filter(status=Position.Status.OPEN).values_list("account_id", flat=True))
    ids |= set(Order.objects.filter(purpose=Order.Purpose.OPEN, position__isnull=True, status__in=IN_FLIGHT_STATUSES,
                                    created_at__gte=since).values_list("account_id", flat=True))
    ids |= set(RuleState.objects.filter(close_only=True, account__halted=False).values_list("account_id", flat=True))
    # the last balance read showed floating PnL: positions we may not know of (opened elsewhere)
    ids |= set(Account.objects.filter(equity__isnull=False, balance__isnull=False).exclude(equity=F("balance"))
               .values_list("pk", flat=True))
    return sorted(Account.objects.filter(pk__in=ids, enabled=True).values_list("pk", flat=True))


def min_hold_blocks(position_opened_at: datetime, profile, now: datetime) -> bool:
    """Our own exits (time stop, opposite signal) wait for the profile's minimum hold time."""
    return bool(profile.min_hold_seconds) and now < position_opened_at + timedelta(seconds=profile.min_hold_seconds)
