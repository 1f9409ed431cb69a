"""The firm rules' inputs to the engine's pre-trade decision, read for N accounts at once.

Why here: :func:`orders.policy.decide_send` is pure; it takes a :class:`prop.rules.FirmCheck` per
order and applies :func:`prop.rules.check_entry` after the engine's own risk checks. This module
turns what those checks need for a chunk's accounts into a ``FirmCheck`` each. The database
inputs come with the engine's own exposure read, in the SAME statement
(:func:`orders.reads.exposures_and_rule_inputs`: a chunk used to pay four more round trips for
them, and the holdings query missed the in-flight orders' partial index):

==========================  ==================================================================
input                       read
==========================  ==================================================================
profile → rules, firm day   the profile row with the exposure, pure resolution (:mod:`prop.state`)
day's budgets + snapshot    the ``DailyUsage`` rows of the days around now with the exposure;
                            the day's first order INSERTs its row (:func:`prop.state.usage_rows`);
                            a day without a snapshot yet is REBUILT from our own records: the
                            last broker balance minus the realized PnL of our closes since the
                            reset (one query, one UPDATE, once a day)
high-water mark             ``RuleState`` with the exposure
holdings                    with the exposure: open positions and unlinked in-flight opens
                            (volume, price, stop) → our mark-to-market, the open risk to their
                            stops and the open-order count
live quotes                 one Redis round trip for the symbols held and the signal's
news events                 one query, only when a profile has a news rule
==========================  ==================================================================

Live equity is the lower of the broker's last equity read and our mark (balance + positions at
the live quote, conservative conversion, :mod:`prop.marks`); a position we cannot value leaves the
broker's figure alone. The order's worst case is its loss at the stop, converted at the worse of
the entry and stop prices. Budgets are spent (:func:`spend_for`) when orders move to ``submitted``:
counted as sent before any byte leaves, never after.

An operator's SL edit that widens a stop (``orders.modify``) is checked from the same reads for its
one account (:func:`stop_edit_check`).
"""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection

from marketdata.reader import read_quotes
from orders import broker, reads
from orders.models import Trade
from orders.policy import needs_cross_rate
from tradeops.logging import get_logger

from . import marks, state
from . import rules as R
from .models import DailyUsage, RuleProfile

log = get_logger(__name__)
ZERO = Decimal("0")
UNBOUNDED = Decimal("Infinity")

_REALIZED_SQL = """
SELECT v.account_id, coalesce(sum(t.realized_pnl + t.commission + t.swap), 0)
FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(account_id, since)
LEFT JOIN {trd} t ON t.account_id = v.account_id AND t.executed_at >= v.since AND t.kind IN ('close', 'partial')
GROUP BY v.account_id
"""


_FILL_SQL = """
UPDATE {usage} u SET start_balance = v.start, start_equity = v.start, start_source = %s, updated_at = now()
FROM unnest(%s::bigint[], %s::numeric[]) AS v(id, start)
WHERE u.id = v.id AND u.start_source = '' RETURNING u.id
"""


def _model(model, doc: dict):
    """A model instance from its row as JSON (``row_to_json``, numbers as Decimal), as the ORM would
    have loaded it."""
    fields = model._meta.concrete_fields
    return model.from_db(None, [f.attname for f in fields], [f.to_python(doc.get(f.column)) for f in fields])


def _rules_and_usage(accs, inputs, now: datetime):
    """Each account's resolved rules and its firm day's DailyUsage row (the missing ones inserted)."""
    profiles: dict[int, RuleProfile] = {}
    rules: dict[int, state.AccountRules] = {}
    for a in accs:
        doc = inputs[a.pk].profile
        if doc is None:
            profile = RuleProfile.default()  # no profile row at all, not even a default one
        else:
            profile = profiles.get(id(doc)) or profiles.setdefault(id(doc), _model(RuleProfile, doc))
        rules[a.pk] = state.resolve(a, profile, now)
    rows: dict[int, DailyUsage] = {}
    missing: dict[int, state.AccountRules] = {}
    for a in accs:
        day = rules[a.pk].day.day.isoformat()
        doc = next((u for u in inputs[a.pk].usage if u.get("day") == day), None)
        if doc is None:
            missing[a.pk] = rules[a.pk]
        else:
            rows[a.pk] = _model(DailyUsage, doc)
    if missing:  # the day's first order: one INSERT, one read back
        rows.update(state.usage_rows(missing))
    return rules, rows


def _quotes(symbols) -> dict[str, tuple[Decimal, Decimal]]:
    try:
        raw = read_quotes(broker.get_redis(), sorted(symbols))
    except Exception as exc:  # noqa: BLE001 - no quote: our mark is unknown, the broker's figure stands
        log.warning("prop_quotes_unavailable", error=type(exc).__name__)
        return {}
    now_ms = int(time.time() * 1000)
    return {s: (Decimal(str(q["bid"])), Decimal(str(q["ask"]))) for s, q in raw.items()
            if now_ms - q.get("recv_ms", 0) <= settings.ORDERS_MAX_QUOTE_AGE_MS}


def fill_day_starts(accounts, rules: dict[int, state.AccountRules], rows: dict[int, DailyUsage]) -> None:
    """Rows of the current firm day without a snapshot yet (nothing observed the reset): rebuilt
    from the last broker balance minus our realized PnL since the reset (one query, one UPDATE each)."""
    missing = [a for a in accounts if not rows[a.pk].start_source and a.balance is not None]
    if not missing:
        return
    with connection.cursor() as cur:
        cur.execute(_REALIZED_SQL.format(trd=Trade._meta.db_table),
                    [[a.pk for a in missing], [rules[a.pk].day.start for a in missing]])
        realized = dict(cur.fetchall())
    starts = {a.pk: Decimal(a.balance) - Decimal(realized.get(a.pk) or 0) for a in missing}
    with connection.cursor() as cur:
        cur.execute(_FILL_SQL.format(usage=DailyUsage._meta.db_table),
                    [DailyUsage.Source.REBUILT, [rows[a].pk for a in starts], list(starts.values())])
        filled = {r[0] for r in cur.fetchall()}
    for aid, start in starts.items():
        row = rows[aid]
        if row.pk in filled:
            row.start_balance = row.start_equity = start
            row.start_source = DailyUsage.Source.REBUILT
        else:  # someone observed it meanwhile
            row.refresh_from_db()


def firm_checks(orders, accounts: dict, signal, now: datetime, inputs: dict) -> dict[int, R.FirmCheck]:
    """The :class:`prop.rules.FirmCheck` of each order (keyed by account id); ``inputs``: each
    account's :class:`orders.reads.RuleInputs`, read with its exposure."""
    accs = [accounts[o.account_id] for o in orders]
    if not accs:
        return {}
    rules, rows = _rules_and_usage(accs, inputs, now)
    fill_day_starts(accs, rules, rows)
    hwm = {a.pk: inputs[a.pk].high_water for a in accs if rules[a.pk].loss.max_loss_mode == R.MaxLossMode.TRAILING}
    holdings = {a.pk: inputs[a.pk].holdings for a in accs}
    symbol = signal.symbol
    quotes = _quotes({h[0] for hs in holdings.values() for h in hs} | {symbol.name})
    news_profiles = [r for r in rules.values() if state.news_applies(r.profile, accounts[r.account_id].program_phase)]
    events = []
    if news_profiles:
        before = max(r.profile.news_before_s for r in news_profiles)
        after = max(r.profile.news_after_s for r in news_profiles)
        events = state.news_windows(now, before, after)
    spec = marks.Spec(symbol.contract_size, symbol.base_currency, symbol.quote_currency)
    news_ids = {r.account_id for r in news_profiles}
    out: dict[int, R.FirmCheck] = {}
    for order in orders:
        a = accounts[order.account_id]
        ar = rules[a.pk]
        row = rows[a.pk]
        equity, fl, open_risk = _loss_inputs(a, ar, row, hwm.get(a.pk), holdings.get(a.pk, []), quotes)
        blocked, detail = R.session_block(ar.session, now), ""
        if blocked:
            detail = f"outside the profile's hours ({ar.session.tz})"
        elif ar.account_id in news_ids:
            hit = R.blackout_hit(events, now, currencies={symbol.base_currency, symbol.quote_currency},
                                 before_s=ar.profile.news_before_s, after_s=ar.profile.news_after_s,
                                 min_impact=ar.profile.news_min_impact)
            if hit is not None:
                blocked, detail = R.Rule.NEWS_BLACKOUT, f"{hit.currency} {hit.title} at {hit.at:%Y-%m-%d %H:%M} UTC"
        ctx = R.EntryContext(equity=equity, floors=fl, usage=state.usage_of(row),
                             open_orders=len(holdings.get(a.pk, [])), open_risk=open_risk, blocked_by=blocked,
                             blocked_detail=detail)
        loss_per_lot = marks.loss_per_lot_at_stop(spec, a.currency, entry=order.price or signal.entry_price,
                                                  stop=order.stop_loss, cross_rates=_cross(symbol, a))
        out[a.pk] = R.FirmCheck(ar.loss, ar.caps, ctx, loss_per_lot, firm=bool(ar.profile.firm), day=ar.day.day)
    return out


def _loss_inputs(account, ar: state.AccountRules, row: DailyUsage, high_water, holdings, quotes):
    """(live equity, the loss floors, the open risk to the stops) of one account: the one place the
    pre-trade check and the stop-edit check (:func:`stop_edit_check`) compute them."""
    mark, open_risk = _mark(account, holdings, quotes)
    return R.live_equity(account.equity, mark), state.floors_for(account, ar, row, high_water), open_risk


def stop_edit_check(account, position, new_stop, now: datetime) -> R.EditDecision:
    """May an operator's SL edit of ``position`` (``orders.modify``, under the account's lock) go
    out? A tightening edit is decided without a read; a widening one gathers what the pre-trade
    check gathers, for this one account — the same statement (profile, firm day's row, high-water
    mark, holdings), the day start rebuilt if missed, the live quotes, live equity — and prices
    this position at its NEW stop and the other holdings at theirs (:func:`_mark`), then
    :func:`prop.rules.check_stop_edit` decides. A holding whose conversion needs a cross rate
    (:func:`_mark` has none) has an unbounded risk: a widening edit is then refused, never guessed."""
    if not R.stop_widens(position.side, position.stop_loss, new_stop):
        return R.EditDecision(True)
    inputs = {account.pk: reads.exposures_and_rule_inputs([account], position.symbol_id, now)[account.pk][1]}
    rules, rows = _rules_and_usage([account], inputs, now)
    ar = rules[account.pk]
    if not ar.has_loss_rules and not ar.loss.unresolved:
        return R.EditDecision(True)
    fill_day_starts([account], rules, rows)
    held = inputs[account.pk].holdings
    hwm = inputs[account.pk].high_water if ar.loss.max_loss_mode == R.MaxLossMode.TRAILING else None
    quotes = _quotes({h[0] for h in held})
    equity, fl, _ = _loss_inputs(account, ar, rows[account.pk], hwm, held, quotes)
    key = (position.symbol.name, position.side, _dec(position.volume), _dec(position.open_price),
           _dec(position.stop_loss))
    mine = next((i for i, h in enumerate(held) if (h[0], h[1], _dec(h[2]), _dec(h[3]), _dec(h[4])) == key), None)
    others = held if mine is None else held[:mine] + held[mine + 1:]
    edited = ((key[0], position.side, position.volume, position.open_price, new_stop,
               position.symbol.contract_size, position.symbol.base_currency, position.symbol.quote_currency),)
    _, other_risk = _mark(account, others, quotes)
    _, new_risk = _mark(account, edited, quotes)
    return R.check_stop_edit(ar.loss, widens=True, equity=equity, floors=fl, new_risk=new_risk, other_risk=other_risk)


def _dec(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _cross(symbol, account):
    if not needs_cross_rate(quote_currency=symbol.quote_currency, base_currency=symbol.base_currency,
                            account_currency=account.currency):
        return None
    return reads.cross_rates(symbol.quote_currency, account.currency, client=lambda: broker.client_for(account))


def _mark(account, holdings, quotes) -> tuple[Decimal | None, Decimal]:
    """(our mark-to-market equity or None, the open risk to the stops)."""
    if account.balance is None:
        return None, UNBOUNDED if holdings else ZERO
    mark: Decimal | None = Decimal(account.balance)
    risk = ZERO
    for name, side, volume, open_price, stop, contract, base, quote in holdings:
        spec = marks.Spec(contract, base, quote)
        q = quotes.get(name)
        price = marks.close_price(side, *q) if q else None
        if price is None or open_price is None:
            mark = None  # cannot value it: the broker's equity stands alone
            at = open_price
        else:
            value = marks.pnl(side, volume, open_price, price, spec, account.currency)
            mark = None if (mark is None or value is None) else mark + value
            at = price
        if open_price is None or at is None:
            risk = UNBOUNDED
            continue
        left = marks.remaining_risk(side, volume, open_price, stop, at, spec, account.currency)
        risk = UNBOUNDED if left is None else risk + left
    return mark, risk


def spend_for(submitted: list[tuple[int, object, Decimal]]) -> None:
    """Count the day's orders and lots of the orders just marked ``submitted`` (one UPDATE)."""
    state.spend_many(submitted)
