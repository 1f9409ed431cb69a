"""The submit state machine: the steps every open order goes through, for one account or a chunk.

Why one: the single-order task (:mod:`orders.execution`) and the chunk task (:mod:`orders.batch`)
used to be two implementations, the chunk calling the single one's private helpers. Both are now
thin drivers that take the account locks their way and then run these steps on a list of accounts
(one order is a list of one). Every statement is per chunk (:mod:`orders.reads`,
:mod:`orders.bulk`); every decision is pure (:mod:`orders.policy`).

====  ====================================================================  ===========================
step  what                                                                  function
====  ====================================================================  ===========================
1     every account's order for the signal: the existing row by its          :func:`orders_for`
      idempotency key, or a new one sized and INSERTed (zero size →
      ``skipped``)
2     rows a previous delivery left ``submitted``/``unknown`` are resolved   :func:`resolve_in_doubt`
      by reading the broker before anything is sent again
3     eligibility + pre-trade risk + live-price anchor, then ``new →         :func:`mark_submitted`
      submitted`` in one compare-and-set, committed before any byte leaves
4     per wave of ``ORDERS_SEND_CONCURRENCY``: the send gate (kill switch +   :func:`send_opens`
      account state, one read), the calls in flight together; successes →
      ``filled`` in one compare-and-set, fill links published by name
5     anything else: the one retry loop, :func:`orders.policy.classify`      :func:`send_open`
      decides (retry after / reject / fail / in doubt)
====  ====================================================================  ===========================

The in-doubt resolver (:func:`resolve_in_doubt`) is the ONE read-back of the engine: the open loop,
the close loop (:mod:`orders.positions`) and reconciliation all call it. A crash at any point
leaves rows the redelivery resolves: ``new`` (never sent), ``submitted`` (looked up at the broker
before anything is sent again) or terminal (left alone).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account
from accounts.states import AccountState
from matchtrader.errors import BrokerError
from matchtrader.protocol import CLOSE_REASON_PARTIAL
from matchtrader.trader_client import order_tag
from prop import pretrade
from signals import hops
from signals.models import Signal
from tradeops import metrics
from tradeops.logging import get_logger

from . import broker, linking, publish, reads
from .bulk import bulk_transition, chunked
from .config import engine_config
from .lifecycle import OrderStatus
from .matching import find_match
from .models import Order, Trade, idempotency_key_for
from .policy import IN_DOUBT, Fail, Reject, Retry, account_consequence, assemble_size, classify, decide_send, \
    eligibility, may_resend_not_executed, needs_cross_rate
from .pricing import Anchored, live_price_for, reanchor_stops
from .reasons import Reason
from .recording import record_fill

log = get_logger(__name__)
S = OrderStatus


# --- step 1: the rows ----------------------------------------------------------------------------------
def sized_order(account: Account, signal: Signal, key: str) -> tuple[Order, str]:
    """The (unsaved) order a signal causes on an account and, if its size is zero, why."""
    symbol = signal.symbol
    rates = None
    equity = None
    if signal.stop_loss is not None and signal.entry_price is not None:
        if needs_cross_rate(quote_currency=symbol.quote_currency, base_currency=symbol.base_currency,
                            account_currency=account.currency):
            rates = reads.cross_rates(symbol.quote_currency, account.currency,
                                      client=lambda: broker.client_for(account))
        equity = reads.equity_for_sizing(account)
    sized = assemble_size(equity=equity, risk_pct=account.risk_per_trade_pct, account_currency=account.currency,
                          symbol=symbol, entry_price=signal.entry_price, stop_loss=signal.stop_loss,
                          take_profit=signal.take_profit, cross_rates=rates,
                          commission_per_lot=Decimal(settings.ORDERS_COMMISSION_PER_LOT))
    order = Order(account=account, signal=signal, symbol=symbol, side=signal.side, volume=sized.volume,
                  price=sized.price, stop_loss=sized.stop_loss, take_profit=sized.take_profit,
                  idempotency_key=key, purpose=Order.Purpose.OPEN, order_type=Order.Type.MARKET)
    return order, sized.reason


def orders_for(signal: Signal, accounts: dict[int, Account]) -> list[Order]:
    """Every account's order for the signal: the existing row, or a new one (sized, inserted)."""
    keys = {idempotency_key_for(signal.pk, account_id): account_id for account_id in accounts}
    existing = {o.account_id: o for o in Order.objects.filter(idempotency_key__in=list(keys))}
    new_rows = [sized_order(accounts[account_id], signal, key) for key, account_id in keys.items()
                if account_id not in existing]
    created = _insert(new_rows)
    skips = [(order, {"reason": reason}) for order, reason in created if reason]
    bulk_transition(skips, S.SKIPPED)
    for order, fields in skips:
        log.info("order_skipped", order_id=order.pk, account_id=order.account_id, reason=fields["reason"])
    orders = list(existing.values()) + [order for order, _ in created]
    for order in orders:
        order.signal, order.symbol, order.account = signal, signal.symbol, accounts[order.account_id]
    return sorted(orders, key=lambda o: o.account_id)


def _insert(rows: list[tuple[Order, str]]) -> list[tuple[Order, str]]:
    """One INSERT. Under the locks no other delivery inserts these keys; if something else did (an
    admin), fall back to row by row and take the existing rows."""
    if not rows:
        return []
    try:
        with transaction.atomic():
            Order.objects.bulk_create([order for order, _ in rows])
        return rows
    except IntegrityError:
        out = []
        for order, reason in rows:
            try:
                with transaction.atomic():
                    order.save(force_insert=True)
                out.append((order, reason))
            except IntegrityError:
                order.pk = None
                out.append((Order.objects.get(idempotency_key=order.idempotency_key), ""))
        return out


# --- the whole sequence, for the drivers -----------------------------------------------------------------
def place_locked(signal: Signal, account_ids: list[int]) -> list[Order]:
    """Steps 1–5 for accounts whose locks the caller holds; returns their orders, final."""
    accounts = reads.accounts_for_orders(account_ids, signal.symbol_id)
    missing = set(account_ids) - set(accounts)
    if missing:
        log.warning("orders_unknown_accounts", signal_id=signal.pk, accounts=sorted(missing))
    orders = orders_for(signal, accounts)
    fresh: list[Order] = []
    settled = False
    for order in orders:
        if order.status == S.NEW:
            fresh.append(order)
        elif order.status in (S.SUBMITTED, S.UNKNOWN):
            # a previous delivery died or lost its answer: resolve before anything is sent again
            if not settled and settings.ORDERS_UNKNOWN_SETTLE_S:
                time.sleep(settings.ORDERS_UNKNOWN_SETTLE_S)  # once for the whole chunk
            settled = True
            log.info("order_in_doubt_on_delivery", order_id=order.pk, status=order.status)
            if resolve_in_doubt(order, accounts[order.account_id], settle=False) is RESEND:
                send_open(order, accounts[order.account_id], first_attempt_counted=False)
    submitted = mark_submitted(signal, accounts, fresh)
    if submitted:
        send_opens(signal, accounts, submitted)
    return orders


# --- the hops of what was sent (signals.hops) ------------------------------------------------------------
def hops_statement(signal_id: int, task_mono: float, orders) -> tuple[str, dict] | None:
    """Task start, HTTP send and broker answer of each order this task sent (the call that got the
    order's answer: a wave's, or the single-order loop's last), added to the signal's hop document
    (``signals.hops``): the UPDATE and its parameters, or None when nothing was sent. Both drivers
    run it (:mod:`orders.batch` with its unlock statement, :mod:`orders.execution` after its order)."""
    rows = {o.pk: [task_mono, round(o.hop_send, 3), round(o.hop_answer, 3)]
            for o in orders if getattr(o, "hop_send", None) is not None and getattr(o, "hop_answer", None) is not None}
    if not rows:
        return None
    value = hops.merged_orders(rows)
    (doc,) = value.params
    return (f'UPDATE {Signal._meta.db_table} SET "hops" = {value.sql.replace("%s", "%(doc)s")} WHERE id = %(signal)s',
            {"doc": doc, "signal": signal_id})


# --- step 3: decide and mark ---------------------------------------------------------------------------
def anchor_on_live_price(order: Order, signal: Signal) -> Anchored:
    """SL/TP re-anchored on the live price at the signal's distances, or a ``price_moved`` skip
    (:mod:`orders.pricing`). Missing or stale quote → the signal's prices."""
    symbol = order.symbol
    quote = reads.live_quote(symbol.name)
    live = live_price_for(order.side, quote, now_ms=int(time.time() * 1000),
                          max_age_ms=settings.ORDERS_MAX_QUOTE_AGE_MS)
    if live is None and quote is not None:
        log.info("live_quote_stale", order_id=order.pk, symbol=symbol.name, recv_ms=quote.get("recv_ms"))
    return reanchor_stops(side=order.side, entry=signal.entry_price, stop_loss=signal.stop_loss,
                          take_profit=signal.take_profit, live=live, tick=symbol.tick_size,
                          max_deviation=settings.ORDERS_MAX_ENTRY_DEVIATION)


def mark_submitted(signal: Signal, accounts: dict[int, Account], fresh: list[Order]) -> list[Order]:
    """Eligibility and pre-trade risk (pure, per account) over one exposure query, the live-price
    anchor (one Redis read), the decisions' halts performed, then ``new → submitted`` for the
    survivors in one compare-and-set."""
    if not fresh:
        return []
    now = timezone.now()
    config = engine_config()
    age = reads.signal_age_s(signal, now)
    skips: list[tuple[Order, dict]] = []
    candidates: list[Order] = []
    for order in fresh:
        account = accounts[order.account_id]
        skip = eligibility(AccountState.of(account), account_mode=account.mode,
                           symbol_allowed=reads.symbol_allowed(account), signal_age_s=age, config=config)
        if skip:
            skips.append((order, {"reason": skip}))
            log.info("order_skipped", order_id=order.pk, account_id=order.account_id, reason=skip)
        else:
            candidates.append(order)
    # what each account holds and its rule profile's inputs, one statement for the chunk
    facts = reads.exposures_and_rule_inputs([accounts[o.account_id] for o in candidates], signal.symbol_id, now,
                                            exclude_order_ids=[o.pk for o in candidates])
    exposures = {account_id: exposure for account_id, (exposure, _) in facts.items()}
    firm = pretrade.firm_checks(candidates, accounts, signal, now,  # the accounts' rule profiles
                                {account_id: inputs for account_id, (_, inputs) in facts.items()})
    # one live quote for the whole chunk (same symbol and side), read when the first order needs it
    anchor = functools.cache(lambda: anchor_on_live_price(candidates[0], signal))
    to_submit: list[tuple[Order, dict]] = []
    symbol = signal.symbol
    for order in candidates:
        account = accounts[order.account_id]
        decision = decide_send(volume=order.volume, attempts=order.attempts, limits=reads.limits_of(account),
                               exposure=exposures[order.account_id], kill_switch=bool(getattr(account, "ks", False)),
                               is_live_account=account.mode == Account.Mode.LIVE, lot_step=symbol.lot_step,
                               min_volume=symbol.min_volume, signal_entry=signal.entry_price, anchor=anchor,
                               config=config, firm=firm.get(order.account_id))
        if decision.halt is not None:
            account.halt(decision.halt_reason, actor="orders.risk", cause=decision.halt)
        if decision.target == S.SUBMITTED:
            if decision.clamped_from is not None:
                log.info("order_volume_clamped", order_id=order.pk, account_id=account.pk,
                         requested=str(decision.clamped_from), volume=str(decision.fields["volume"]))
            to_submit.append((order, decision.fields))
        else:
            log.info("order_skipped", order_id=order.pk, account_id=account.pk, reason=decision.fields["reason"],
                     detail=decision.fields.get("last_error", ""))
            skips.append((order, decision.fields))
    # one transaction, one commit: the skips, the CAS and the firm day's budgets counting what is
    # about to leave (before any byte does) are written together or not at all
    with transaction.atomic():
        bulk_transition(skips, S.SKIPPED)
        moved = bulk_transition(to_submit, S.SUBMITTED)
        pretrade.spend_for([(order.account_id, firm[order.account_id].day, fields.get("volume", order.volume))
                            for order, fields in to_submit if order.pk in moved and order.account_id in firm])
    return [order for order, _ in to_submit if order.pk in moved]


# --- step 4: the calls ---------------------------------------------------------------------------------
# A call leaves only this soon after its wave's kill-switch read ("no order leaves within 1 s of
# the kill switch"). A call that waited longer for a pool thread (a busy machine, a threads-pool
# worker running several chunks at once) is not sent by the wave: the calls left over read the
# gate again and go out together in one more wave (at most ``LATE_REWAVES`` times); only what is
# late even then continues in the single-order loop, which reads the switch again before each
# call. Sent one by one, late orders put 10-20 ms each on the last acknowledgement.
GATE_MAX_AGE_S = 0.5
LATE_REWAVES = 2
NOT_SENT = object()


def _call(client, signal: Signal, order: Order, not_after: float):
    """One order's broker call, in a pool thread: HTTP only (no database), the error returned."""
    if time.monotonic() > not_after:
        return NOT_SENT
    metrics.observe_order_sent(signal)
    return _open_call(client, order)


def _open_call(client, order: Order):
    """The open call itself (a wave's and the single-order loop's), the error returned, with the
    "HTTP send" and "broker answer" hops of the order's latest call (signals.hops)."""
    order.hop_send = time.monotonic() * 1000.0
    try:
        return client.open_position(order.symbol.name, order.side, order.volume, order.stop_loss, order.take_profit,
                                    intent=order.idempotency_key)
    except BrokerError as exc:
        return exc
    finally:
        order.hop_answer = time.monotonic() * 1000.0


def send_opens(signal: Signal, accounts: dict[int, Account], orders: list[Order]) -> None:
    """One broker call per order, ``ORDERS_SEND_CONCURRENCY`` at a time: a fan-out is bound by the
    broker's round trip (tens of ms to a real broker), not by our CPU, so the calls of a wave are in
    flight together. Each wave reads the send gate right before its calls leave, and a call leaves
    at most ``GATE_MAX_AGE_S`` after that read; calls that could not leave in time go out again
    together after a new read (``LATE_REWAVES``). Definite successes are recorded together;
    anything else continues in :func:`send_open`, one order at a time."""
    filled: list[tuple[Order, dict]] = []
    troubled: list[tuple[Order, BrokerError]] = []
    clients = broker.prepare_calls([accounts[o.account_id] for o in orders])
    late = orders
    for rewave in range(LATE_REWAVES + 1):  # the calls late for their gate read: read again, send together
        if rewave:
            log.info("orders_send_late_for_gate_rewave", count=len(late), rewave=rewave)
        pending, late = late, []
        for wave in chunked(pending, max(1, settings.ORDERS_SEND_CONCURRENCY)):
            for order, outcome in _send_wave(signal, clients, wave):
                if outcome is NOT_SENT:
                    late.append(order)
                elif isinstance(outcome, BrokerError):
                    troubled.append((order, outcome))
                else:
                    filled.append((order, {"broker_order_id": outcome.order_id or ""}))
        if not late:
            break
    moved = bulk_transition(filled, S.FILLED)
    if moved:
        fills_done(sorted(moved), [o for o, _ in filled if o.pk in moved])
    for order, exc in troubled:
        if order.status == S.SUBMITTED:
            send_open(order, accounts[order.account_id], first_attempt_counted=True, first_outcome=exc)
    for order in late:
        log.info("order_send_late_for_gate", order_id=order.pk)
        if order.status == S.SUBMITTED:  # reads the switch again, then sends
            send_open(order, accounts[order.account_id], first_attempt_counted=True)


def _send_wave(signal: Signal, clients: dict, wave: list[Order]) -> list[tuple[Order, object]]:
    """One wave: the send gate read for its accounts, then its calls in flight together, each
    leaving at most ``GATE_MAX_AGE_S`` after that read. (order, outcome) for every order the gate
    let through (a blocked one is ``failed`` with the gate's reason); the outcome is the broker's
    answer, its ``BrokerError`` or ``NOT_SENT``."""
    gates = reads.send_gates([o.account_id for o in wave])
    not_after = time.monotonic() + GATE_MAX_AGE_S
    sendable = []
    for order in wave:
        gate = gates[order.account_id]
        if gate.ok:
            sendable.append(order)
            continue
        order.transition(S.FAILED, reason=gate.reason, last_error="blocked immediately before sending")
        log.warning("order_blocked_before_send", order_id=order.pk, reason=gate.reason)
    if len(sendable) == 1:  # no thread hand-off for a single call
        return [(sendable[0], _call(clients[sendable[0].account_id], signal, sendable[0], not_after))]
    pool = broker.send_pool()
    futures = [pool.submit(_call, clients[o.account_id], signal, o, not_after) for o in sendable]
    # every call of the wave has ended before anything is concluded: a crash (a Redis error in one
    # call) propagates with rows left submitted, and the chunk's retry (orders.recovery) reads them
    # back at the broker — a call still on the wire then could execute after that read
    wait_futures(futures)
    return [(order, f.result()) for order, f in zip(sendable, futures, strict=True)]


def fills_done(order_ids: list[int], orders: Sequence[Order]) -> None:
    """Filled orders: find their positions inline (``ORDERS_LINK_FILL_INLINE``, locks held by the
    caller) or as follow-up work published by name."""
    if settings.ORDERS_LINK_FILL_INLINE:
        linking.link_locked(list(orders))  # best effort; reconciliation links what this misses
    else:
        publish.link_fills(order_ids)


# --- step 5: the one retry loop --------------------------------------------------------------------------
def send_open(order: Order, account: Account, *, first_attempt_counted: bool,
              first_outcome: BrokerError | None = None) -> str:
    """Order is SUBMITTED and we hold the account lock. Loop until a definite outcome; what to do
    after each error is :func:`orders.policy.classify`.

    ``first_outcome``: the error the wave's call already got for this order's first attempt; the
    loop handles it as if its own first call had raised it."""
    client = broker.client_for(account)
    config = engine_config()
    retries = 0
    counted = first_attempt_counted
    deadline = time.monotonic() + settings.ORDERS_SUBMIT_DEADLINE_S
    pending = first_outcome
    while True:
        if pending is None:
            gate = reads.send_gates([account.pk])[account.pk]
            if not gate.ok:
                order.transition(S.FAILED, reason=gate.reason, last_error="blocked immediately before sending")
                log.warning("order_blocked_before_send", order_id=order.pk, reason=gate.reason)
                return order.status
            if not counted:
                order.attempts += 1
                Order.objects.filter(pk=order.pk).update(attempts=order.attempts)
        counted = False
        if pending is not None:
            error, pending = pending, None
        else:
            metrics.observe_order_sent(order=order)
            result = _open_call(client, order)
            if isinstance(result, BrokerError):
                error = result
            else:
                order.transition(S.FILLED, broker_order_id=result.order_id or "")
                order.account = account
                fills_done([order.pk], [order])
                return order.status
        # ``retries``: calls that surely did not execute (429, transport); resends after a proven
        # not-executed read-back are bounded by the order's attempts instead
        outcome = classify(error, retries + 1, deadline, now=time.monotonic(), config=config)
        if isinstance(outcome, Retry):
            retries += 1
        if _after_error(order, account, error, outcome) is _AGAIN:
            continue
        return order.status


def send_until_definite(order: Order, account: Account, call, *, on_reject=None, settle: bool = True) -> str:
    """The retry loop of an order on an existing position (a close, an SL/TP edit, a partial
    close): ``call()`` until a definite outcome, each error decided by
    :func:`orders.policy.classify` exactly as for opens; a lost answer is read back by the one
    in-doubt resolver (:func:`resolve_in_doubt`, after ``ORDERS_UNKNOWN_SETTLE_S`` unless
    ``settle=False``) before anything is sent again.

    The order is SUBMITTED and the caller holds the account lock. ``on_reject(order, reject)`` may
    take a broker reject over (return True when it did). Returns the order's status."""
    config = engine_config()
    deadline = time.monotonic() + settings.ORDERS_SUBMIT_DEADLINE_S
    failures = 0
    while True:
        if failures:  # the first call was counted when the order was marked submitted
            order.attempts += 1
            Order.objects.filter(pk=order.pk).update(attempts=order.attempts)
        try:
            result = call()
        except BrokerError as exc:
            error = exc
        else:
            order.transition(S.FILLED, broker_order_id=(getattr(result, "order_id", "") or "")[:64])
            return order.status
        failures += 1
        outcome = classify(error, failures, deadline, now=time.monotonic(), config=config)
        if _after_error(order, account, error, outcome, on_reject=on_reject, settle=settle) is not _AGAIN:
            return order.status
        if outcome is IN_DOUBT and failures >= config.max_attempts:  # proven not executed, resent too often
            order.transition(S.FAILED, reason=Reason.BROKER_UNAVAILABLE, last_error=str(error)[:500])
            return order.status


_AGAIN = object()  # _after_error: call the broker again (after a retry's wait, or a proven non-execution)


def _after_error(order: Order, account: Account, error: BrokerError, outcome, *, on_reject=None,
                 settle: bool = True):
    """What both retry loops (:func:`send_open`, :func:`send_until_definite`) do with a broker
    error once :func:`orders.policy.classify` has decided: wait and call again (``Retry``), record
    the reject (``on_reject(order, reject)`` may take it over and return True), fail with the
    account's consequence (halt / restrict), or read a lost answer back with the one in-doubt
    resolver. Returns ``_AGAIN`` when the loop should call the broker again, else None (the order
    has its outcome)."""
    if isinstance(outcome, Retry):
        log.info("order_retry", order_id=order.pk, error=type(error).__name__, delay_s=round(outcome.after_s, 3),
                 purpose=order.purpose)
        time.sleep(outcome.after_s)
        return _AGAIN
    if isinstance(outcome, Reject):
        if on_reject is None or not on_reject(order, outcome):
            order.transition(S.REJECTED, reason=outcome.code[:64], last_error=outcome.message[:500])
            log.info("order_rejected", order_id=order.pk, code=outcome.code, purpose=order.purpose)
        return None
    if isinstance(outcome, Fail):
        order.transition(S.FAILED, reason=outcome.reason, last_error=outcome.detail[:500])
        apply_account_consequence(account, error)
        return None
    assert outcome is IN_DOUBT
    log.warning("order_outcome_unknown", order_id=order.pk, error=str(error)[:200], purpose=order.purpose)
    Order.objects.filter(pk=order.pk).update(last_error=str(error)[:500])
    return _AGAIN if resolve_in_doubt(order, account, settle=settle) is RESEND else None


def apply_account_consequence(account: Account, error: BrokerError) -> None:
    """Perform :func:`orders.policy.account_consequence` of a broker error (halt / restrict)."""
    consequence = account_consequence(error)
    if consequence is None:
        return
    if consequence.halt is not None and account.halt(consequence.reason, actor="orders.broker",
                                                     cause=consequence.halt):
        log.error("account_halted_by_broker", account_id=account.pk, cause=consequence.halt.value,
                  reason=consequence.reason)
    if consequence.restrict is not None and account.restrict(consequence.restrict, consequence.reason,
                                                             actor="orders.broker"):
        log.error("account_restricted_by_broker", account_id=account.pk, restriction=consequence.restrict.value,
                  reason=consequence.reason)


# --- the one in-doubt resolver ---------------------------------------------------------------------------
RESEND = "resend"


@dataclass(frozen=True)
class BrokerRead:
    """One read of the account at the broker: open positions and positions closed since a time."""

    open_: list
    closed: list


def read_broker(account: Account, since, *, attempts: int | None = None) -> BrokerRead:
    """Open positions + positions closed since ``since`` (an order may have filled and hit its stop
    before we looked). Raises BrokerError if the broker cannot be read."""
    client = broker.client_for(account)
    attempts = attempts or settings.ORDERS_IN_DOUBT_READ_ATTEMPTS
    open_ = broker.read_with_retry(client.open_positions, attempts=attempts)
    closed = broker.read_with_retry(client.closed_positions, since, timezone.now() + timedelta(minutes=1),
                                    attempts=attempts)
    return BrokerRead(list(open_), list(closed))


def _skew() -> timedelta:
    return timedelta(seconds=settings.ORDERS_MATCH_CLOCK_SKEW_S)


def match_open(order: Order, read: BrokerRead, claimed: set[str]):
    """The broker position an open order opened (open first, then closed since), or None."""
    kw = dict(symbol=order.symbol.name, side=order.side, volume=order.volume,
              sent_at=order.submitted_at or order.created_at, claimed=claimed, clock_skew=_skew(),
              tag=order_tag(order.idempotency_key))
    return find_match(read.open_, **kw) or find_match(read.closed, **kw)


def resolve_in_doubt(order: Order, account: Account, *, settle: bool = True, read: BrokerRead | None = None,
                     may_resend: bool = True) -> str:
    """The ONE read-back after a lost answer, for opens, closes and reconciliation.

    * open, matched at the broker → ``filled`` + Position/Trade;
    * open, not matched → it did not execute: :data:`RESEND` (the caller sends the same row again)
      while ``may_resend`` and the signal is fresh and attempts remain, else ``failed``/``not_executed``;
    * close: the position gone from the open list → ``filled`` (closing twice cannot double anything),
      still open → :data:`RESEND`;
    * the broker cannot be read → ``unknown``, the account flagged ``needs_reconciliation`` and its
      reconciliation published at once (an ``unknown`` order is never resent: only reconciliation,
      which never sends, resolves it).

    ``settle=False``: the caller already waited ``ORDERS_UNKNOWN_SETTLE_S`` (once for a chunk);
    ``read``: the caller's read of the broker (reconciliation reads once for every check).
    Returns :data:`RESEND` or the order's status."""
    was_unknown = order.status == S.UNKNOWN
    if was_unknown:
        may_resend = False  # from unknown an order is never sent again
    status = _resolve(order, account, settle=settle, read=read, may_resend=may_resend)
    if was_unknown and status != S.UNKNOWN:
        clear_reconciliation_flag_if_resolved(account)
    return status


def _resolve(order: Order, account: Account, *, settle: bool, read: BrokerRead | None, may_resend: bool) -> str:
    if read is None:
        if settle and settings.ORDERS_UNKNOWN_SETTLE_S:
            time.sleep(settings.ORDERS_UNKNOWN_SETTLE_S)
        try:
            read = read_broker(account, (order.submitted_at or order.created_at) - _skew())
        except BrokerError as exc:
            if order.purpose == Order.Purpose.CLOSE:
                return RESEND  # a close is safe to repeat: the next call (or its reject) tells
            if order.status != S.UNKNOWN:
                order.transition(S.UNKNOWN, reason=Reason.OUTCOME_UNKNOWN, last_error=str(exc)[:500])
            Account.objects.filter(pk=account.pk).update(needs_reconciliation=True)
            account.needs_reconciliation = True
            log.warning("order_unknown_needs_reconciliation", order_id=order.pk, account_id=account.pk)
            publish.reconcile_soon(account.pk)
            return order.status
    if order.purpose == Order.Purpose.CLOSE:
        position_id = order.position.broker_position_id if order.position_id else ""
        if any(p.id == position_id for p in read.open_):
            return RESEND
        order.transition(S.FILLED)
        return order.status
    if order.purpose in (Order.Purpose.EDIT, Order.Purpose.PARTIAL):
        return _resolve_modification(order, read, may_resend=may_resend)
    claimed = reads.claimed_ids([account.pk], [order.pk])[account.pk]
    match = match_open(order, read, claimed)
    if match is not None:
        order.transition(S.FILLED)
        record_fill(order, account.pk, order.symbol_id, match, signal=order.signal)
        log.info("order_in_doubt_resolved_filled", order_id=order.pk, position=match.id)
        return order.status
    age = reads.signal_age_s(order.signal, timezone.now())
    if may_resend and may_resend_not_executed(attempts=order.attempts, signal_age_s=age, config=engine_config()):
        log.info("order_not_executed_resend", order_id=order.pk, attempts=order.attempts)
        return RESEND
    order.transition(S.FAILED, reason=Reason.NOT_EXECUTED)
    log.info("order_in_doubt_resolved_not_executed", order_id=order.pk)
    return order.status


def _resolve_modification(order: Order, read: BrokerRead, *, may_resend: bool) -> str:
    """A lost answer to an SL/TP edit or a partial close, decided on the broker's own evidence:

    * edit: the position shows the requested SL/TP → ``filled``; still open with other levels →
      not executed (an edit is idempotent by target state: :data:`RESEND` is safe);
    * partial close: a partial-close row of the position in the closed history since the send
      (``ORDERS_MATCH_CLOCK_SKEW_S`` before it), of the order's volume, that no other order of ours
      recorded → ``filled``; none and the position still open → not executed, :data:`RESEND`
      (never a second partial close on a guess);
    * the position gone without that evidence → ``failed``/``not_executed`` (it was closed by
      something else; nothing is left to modify)."""
    position_id = order.position.broker_position_id if order.position_id else ""
    live = next((p for p in read.open_ if p.id == position_id), None)
    if order.purpose == Order.Purpose.EDIT:
        done = live is not None and _same_level(live.stop_loss, order.stop_loss) and _same_level(
            live.take_profit, order.take_profit)
    else:
        since = (order.submitted_at or order.created_at) - _skew()
        taken = set(Trade.objects.filter(account_id=order.account_id, order__isnull=False).exclude(order_id=order.pk)
                    .filter(broker_trade_id__startswith="close:").values_list("broker_trade_id", flat=True))
        done = any(c.id == position_id and c.close_reason == CLOSE_REASON_PARTIAL and Decimal(c.volume) == order.volume
                   and (c.close_time is None or c.close_time >= since)
                   and f"close:{c.closing_order_id or c.id}" not in taken for c in read.closed)
    if done:
        order.transition(S.FILLED)
        log.info("order_in_doubt_resolved_filled", order_id=order.pk, purpose=order.purpose, position=position_id)
        return order.status
    if live is not None and may_resend and order.attempts < engine_config().max_attempts:
        log.info("order_not_executed_resend", order_id=order.pk, purpose=order.purpose, attempts=order.attempts)
        return RESEND
    order.transition(S.FAILED, reason=Reason.NOT_EXECUTED,
                     last_error="" if live is not None else "the position is no longer open at the broker")
    log.info("order_in_doubt_resolved_not_executed", order_id=order.pk, purpose=order.purpose)
    return order.status


def _same_level(broker_level, wanted) -> bool:
    """SL/TP equality as the broker reports it: no level is ``0`` on the Platform API, null on the
    Trader API."""
    have = Decimal(broker_level or 0)
    return have == Decimal(wanted or 0)


def clear_reconciliation_flag_if_resolved(account: Account) -> None:
    """``needs_reconciliation`` is cleared once no order of the account is left ``unknown``."""
    if not Order.objects.filter(account_id=account.pk, status=S.UNKNOWN).exists():
        Account.objects.filter(pk=account.pk, needs_reconciliation=True).update(needs_reconciliation=False)
        account.needs_reconciliation = False

