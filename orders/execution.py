"""Placing the one order a signal causes on one account: exactly once, under at-least-once delivery.

Sequence (all under the per-account lock, :mod:`orders.locks`):

1. Load the Order by its deterministic idempotency key. Terminal → nothing to do.
   ``submitted``/``unknown`` → a previous delivery died or lost its answer: resolve it (step 6).
2. No row yet → size it (pure :mod:`orders.sizing`) and INSERT it as ``new`` (the unique key makes a
   second insert impossible). Zero size → ``skipped`` with the reason.
3. Eligibility + pre-trade risk (pure :mod:`orders.risk`) over the exposure read under the lock.
4. CAS ``new → submitted`` (committed before anything is sent: the evidence a crash leaves).
5. Re-check kill switch and halt flag immediately before every broker call, then send.
   Retries only where the request surely did not execute: BrokerUnavailable (not sent) and
   RateLimited (honouring Retry-After), exponential backoff with full jitter, bounded.
   OrderRejected → ``rejected`` with the code, never retried. AuthenticationError / InvalidRequest
   → ``failed``. OutcomeUnknown → step 6.
6. In doubt (lost answer, or a redelivery finding ``submitted``): read the broker's open and
   recently closed positions and match symbol/side/volume/open time (:mod:`orders.matching`).
   Match → ``filled`` + Position/Trade. No match → it did not execute: the SAME row (still
   ``submitted``, same key) is sent again if the signal is still fresh and attempts remain, else
   ``failed`` with reason ``not_executed``. Broker unreadable → ``unknown`` and the account is
   flagged ``needs_reconciliation`` (no new orders) until reconciliation resolves it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import nullcontext as _nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Account, TradingSwitch
from matchtrader.errors import (
    AuthenticationError,
    BrokerError,
    BrokerUnavailable,
    InvalidRequest,
    MalformedResponse,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
)
from signals.models import Signal
from tradeops.logging import get_logger
from tradeops.money import round_to_step

from . import broker, conversion, linking
from .lifecycle import TERMINAL, OrderStatus, StaleTransition
from .locks import account_lock
from .matching import find_match
from .models import IN_FLIGHT_STATUSES, Order, Position, Trade, idempotency_key_for
from .pricing import Anchored, live_price_for, reanchor_stops
from .recording import record_fill
from .risk import Exposure, RiskLimits, TradingState, check_pre_trade
from .sizing import SymbolSpec, quote_to_account_rate, size_order

log = get_logger(__name__)
S = OrderStatus
ZERO = Decimal("0")

IN_FLIGHT = IN_FLIGHT_STATUSES


class Skip:
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_HALTED = "account_halted"
    NEEDS_RECONCILIATION = "needs_reconciliation"
    MODE_MISMATCH = "mode_mismatch"
    SYMBOL_NOT_ALLOWED = "symbol_not_allowed"
    SIGNAL_EXPIRED = "signal_expired"
    PRICE_MOVED = "price_moved"  # orders.pricing.PRICE_MOVED


class Fail:
    KILL_SWITCH = "kill_switch"
    ACCOUNT_HALTED = "account_halted"
    BROKER_UNAVAILABLE = "broker_unavailable"
    RATE_LIMITED = "rate_limited"
    AUTH_FAILED = "auth_failed"
    INVALID_REQUEST = "invalid_request"
    NOT_EXECUTED = "not_executed"


# --- small helpers --------------------------------------------------------------------------------
def live_trading_enabled() -> bool:
    return (not settings.SIMULATION_MODE) and settings.TRADING_ENABLED


def mode_allowed(account_mode: str) -> bool:
    """Simulation accounts trade in simulation mode; live ones only with live trading enabled."""
    if settings.SIMULATION_MODE:
        return account_mode == Account.Mode.SIMULATION
    return account_mode == Account.Mode.LIVE and settings.TRADING_ENABLED


def utc_midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def backoff_delay(attempt: int) -> float:
    """Full jitter: uniform(0, min(cap, base·2^attempt))."""
    return random.uniform(0, min(settings.ORDERS_BACKOFF_CAP_S, settings.ORDERS_BACKOFF_BASE_S * (2 ** attempt)))


@dataclass(frozen=True)
class Gate:
    ok: bool
    reason: str = ""


_GATE_SQL = """
SELECT coalesce((SELECT kill_switch FROM {switch} WHERE id = 1), false), a.halted, a.enabled
FROM {account} a WHERE a.id = %s
"""


def send_gate(account_id: int) -> Gate:
    """One query, run immediately before every broker call: kill switch and halt flag."""
    with connection.cursor() as cur:
        cur.execute(_GATE_SQL.format(switch=TradingSwitch._meta.db_table, account=Account._meta.db_table),
                    [account_id])
        row = cur.fetchone()
    if row is None or not row[2]:
        return Gate(False, Fail.ACCOUNT_HALTED)
    if row[0]:
        return Gate(False, Fail.KILL_SWITCH)
    if row[1]:
        return Gate(False, Fail.ACCOUNT_HALTED)
    return Gate(True)


_EXPOSURE_SQL = """
SELECT a.id, p.n, p.vol_sym, p.upnl, o.n, o.vol_sym, t.realized
FROM unnest(%(accs)s::bigint[]) AS a(id)
CROSS JOIN LATERAL (
  SELECT count(*) AS n, coalesce(sum(volume) FILTER (WHERE symbol_id = %(sym)s), 0) AS vol_sym,
         coalesce(sum(unrealized_pnl), 0) AS upnl
  FROM {pos} WHERE account_id = a.id AND status = 'open') p
CROSS JOIN LATERAL (
  SELECT count(*) AS n, coalesce(sum(volume) FILTER (WHERE symbol_id = %(sym)s), 0) AS vol_sym
  FROM {ord} WHERE account_id = a.id AND purpose = 'open' AND position_id IS NULL AND status IN ({inflight})
               AND created_at >= %(since)s AND id <> %(exclude)s) o
CROSS JOIN LATERAL (
  SELECT coalesce(sum(realized_pnl + commission + swap), 0) AS realized
  FROM {trd} WHERE account_id = a.id AND executed_at >= %(midnight)s AND kind IN ({closes})) t
"""


def _exposure_from_row(account: Account, row, midnight: datetime) -> Exposure:
    n_pos, vol_pos, upnl, n_pending, vol_pending, realized = row
    if account.equity is not None and account.balance is not None and account.balance_updated_at \
            and account.balance_updated_at >= midnight:
        unrealized = account.equity - account.balance  # the latest broker read
    else:
        unrealized = upnl
    return Exposure(open_positions=n_pos + n_pending, symbol_volume=vol_pos + vol_pending,
                    realized_pnl_today=realized, unrealized_pnl=unrealized)


def _sql_list(values) -> str:
    """Code constants (statuses, kinds) inlined as literals: the in-flight subquery must match the
    partial index ``order_unlinked_inflight`` (orders/models.py) predicate for the planner to use it."""
    assert all(str(v).isidentifier() for v in values)
    return ", ".join(f"'{v}'" for v in values)


def _exposure_sql() -> str:
    return _EXPOSURE_SQL.format(pos=Position._meta.db_table, ord=Order._meta.db_table, trd=Trade._meta.db_table,
                                inflight=_sql_list(IN_FLIGHT),
                                closes=_sql_list([Trade.Kind.CLOSE, Trade.Kind.PARTIAL_CLOSE]))


def load_exposure(account: Account, symbol_id: int, exclude_order_id: int | None, now: datetime) -> Exposure:
    """What the account holds, counting orders whose position is not (yet) linked. One query
    (this runs for every order, under the account lock)."""
    return load_exposures([account], symbol_id, now, exclude_order_id)[account.pk]


def load_exposures(accounts: list[Account], symbol_id: int, now: datetime,
                   exclude_order_id: int | None = None) -> dict[int, Exposure]:
    """:func:`load_exposure` for many accounts in one query (the batched fan-out): three index
    lookups per account (open positions, unlinked in-flight orders, today's closes)."""
    if not accounts:
        return {}
    midnight = utc_midnight(now)
    params = {"accs": [a.pk for a in accounts], "sym": symbol_id, "since": now - timedelta(days=1),
              "exclude": exclude_order_id or 0, "midnight": midnight}
    by_id = {a.pk: a for a in accounts}
    with connection.cursor() as cur:
        cur.execute(_exposure_sql(), params)
        rows = cur.fetchall()
    return {row[0]: _exposure_from_row(by_id[row[0]], row[1:], midnight) for row in rows}


def limits_of(account: Account) -> RiskLimits:
    return RiskLimits(account.max_open_positions, account.max_volume_per_symbol, account.daily_loss_limit)


def _claimed_ids(account_id: int, exclude_order_id: int | None = None) -> set[str]:
    return linking.claimed_ids([account_id], [exclude_order_id] if exclude_order_id else [])[account_id]


# --- the task body ------------------------------------------------------------------------------------
def place_signal_order(account_id: int, signal_id: int) -> str:
    """Run the whole sequence for one (signal, account); returns the order's final status."""
    with account_lock(account_id, settings.ORDERS_ACCOUNT_LOCK_WAIT_S):
        signal = _signal(signal_id)
        account = _account_with_flags(account_id, signal.symbol_id)
        key = idempotency_key_for(signal_id, account_id)
        order = next(iter(Order.objects.raw(_ORDER_BY_KEY_SQL.format(order=Order._meta.db_table), [key])), None)
        if order is None:
            order = _create_order(account, signal, key)
        else:
            order.signal, order.symbol = signal, signal.symbol
        if order.status in TERMINAL:
            return order.status
        if order.status in (S.SUBMITTED, S.UNKNOWN):
            log.info("order_in_doubt_on_delivery", order_id=order.pk, status=order.status)
            return _resolve_in_doubt(order, account, signal)
        if order.status == S.ACCEPTED:
            return order.status
        return _check_and_submit(order, account, signal)


_ORDER_BY_KEY_SQL = "SELECT * FROM {order} WHERE idempotency_key = %s"
_ACCOUNT_SQL = """
SELECT a.*,
       coalesce((SELECT kill_switch FROM {switch} WHERE id = 1), false) AS ks,
       EXISTS (SELECT 1 FROM {allowed} s WHERE s.account_id = a.id) AS has_allowed,
       EXISTS (SELECT 1 FROM {allowed} s WHERE s.account_id = a.id AND s.symbol_id = %s) AS sym_allowed
FROM {account} a WHERE a.id = %s
"""
_signal_cache: dict[int, tuple[float, Signal]] = {}
SIGNAL_CACHE_S = 30.0


def _signal(signal_id: int) -> Signal:
    """Signals do not change after creation (only their fan-out status, unused here): a fan-out of
    1,000 orders reads its signal once per worker process, not 1,000 times."""
    now = time.monotonic()
    hit = _signal_cache.get(signal_id)
    if hit is not None and now - hit[0] < SIGNAL_CACHE_S:
        return hit[1]
    signal = Signal.objects.select_related("symbol").get(pk=signal_id)
    if len(_signal_cache) > 256:
        _signal_cache.clear()
    _signal_cache[signal_id] = (now, signal)
    return signal


def _account_with_flags(account_id: int, symbol_id: int) -> Account:
    """The account plus the kill switch and its symbol permissions, in one query."""
    sql = _ACCOUNT_SQL.format(switch=TradingSwitch._meta.db_table, account=Account._meta.db_table,
                              allowed=Account.allowed_symbols.through._meta.db_table)
    rows = list(Account.objects.raw(sql, [symbol_id, account_id]))
    if not rows:
        raise Account.DoesNotExist(account_id)
    return rows[0]


def sized_order(account: Account, signal: Signal, key: str) -> tuple[Order, str]:
    """The (unsaved) order a signal causes on an account and, if its size is zero, why."""
    symbol = signal.symbol
    reason = ""
    volume = ZERO
    if signal.stop_loss is not None and signal.entry_price is not None:
        rate = quote_to_account_rate(quote_currency=symbol.quote_currency, base_currency=symbol.base_currency,
                                     account_currency=account.currency, price=signal.entry_price)
        if rate is None:  # neither side is the account's currency: a third instrument converts
            rates = conversion.cross_rates(symbol.quote_currency, account.currency,
                                           client=lambda: broker.client_for(account))
            rate = quote_to_account_rate(quote_currency=symbol.quote_currency, base_currency=symbol.base_currency,
                                         account_currency=account.currency, price=signal.entry_price,
                                         cross_rates=rates)
        equity = _equity_for_sizing(account)
        result = size_order(
            equity=equity, risk_pct=account.risk_per_trade_pct, entry_price=signal.entry_price,
            stop_loss=signal.stop_loss, quote_to_account_rate=rate,
            spec=SymbolSpec(symbol.contract_size, symbol.lot_step, symbol.min_volume, symbol.max_volume),
        )
        volume, reason = result.volume, result.reason
    else:
        reason = "no_stop_loss" if signal.stop_loss is None else "no_entry_price"
    tick = symbol.tick_size

    def px(v):
        return None if v is None else round_to_step(v, tick)

    order = Order(account=account, signal=signal, symbol=symbol, side=signal.side, volume=volume,
                  price=px(signal.entry_price), stop_loss=px(signal.stop_loss), take_profit=px(signal.take_profit),
                  idempotency_key=key, purpose=Order.Purpose.OPEN, order_type=Order.Type.MARKET)
    return order, reason


def _create_order(account: Account, signal: Signal, key: str) -> Order:
    order, reason = sized_order(account, signal, key)
    try:
        # Under the account lock no other delivery inserts this key; in autocommit a failed INSERT
        # poisons nothing, so skip the BEGIN/COMMIT round trips of atomic() there.
        with (transaction.atomic() if connection.in_atomic_block else _nullcontext()):
            order.save(force_insert=True)
    except IntegrityError:  # only possible outside the account lock (e.g. an admin); take the row
        return Order.objects.get(idempotency_key=key)
    if reason:
        order.transition(S.SKIPPED, reason=reason)
        log.info("order_skipped", order_id=order.pk, account_id=account.pk, reason=reason)
    return order


def _equity_for_sizing(account: Account):
    fresh = account.balance_updated_at and (
        timezone.now() - account.balance_updated_at).total_seconds() <= settings.ORDERS_EQUITY_MAX_AGE_S
    if account.equity is not None and fresh:
        return account.equity
    try:
        bal = broker.client_for(account).balance()
    except BrokerError as exc:
        log.warning("sizing_balance_unavailable", account_id=account.pk, error=type(exc).__name__)
        return account.equity  # stale is better than nothing; None → skipped no_equity
    now = timezone.now()
    Account.objects.filter(pk=account.pk).update(balance=bal.balance, equity=bal.equity, balance_updated_at=now)
    account.balance, account.equity, account.balance_updated_at = bal.balance, bal.equity, now
    return bal.equity


def _eligibility(account: Account, signal: Signal, now: datetime) -> str:
    if not account.enabled:
        return Skip.ACCOUNT_DISABLED
    if account.halted:
        return Skip.ACCOUNT_HALTED
    if account.needs_reconciliation:
        return Skip.NEEDS_RECONCILIATION
    if not mode_allowed(account.mode):
        return Skip.MODE_MISMATCH
    if getattr(account, "has_allowed", False) and not getattr(account, "sym_allowed", True):
        return Skip.SYMBOL_NOT_ALLOWED
    if signal.created_at and (now - signal.created_at).total_seconds() > settings.ORDERS_SIGNAL_MAX_AGE_S:
        return Skip.SIGNAL_EXPIRED
    return ""


def decide_send(order: Order, account: Account, signal: Signal, exposure: Exposure,
                anchor: Callable[[], Anchored], *, live_trading: bool) -> tuple[str, dict]:
    """Pre-trade risk and the live-price anchor for an eligible ``new`` order, shared by the
    single-order task and the chunk: ``(SUBMITTED, fields for the CAS)`` or ``(SKIPPED, why)``.
    A daily-loss breach halts the account. ``anchor`` is called only when risk allows the order."""
    state = TradingState(kill_switch=bool(getattr(account, "ks", False)),
                         is_live_account=account.mode == Account.Mode.LIVE, live_trading_enabled=live_trading)
    symbol = order.symbol
    decision = check_pre_trade(limits_of(account), exposure, state, order.volume, lot_step=symbol.lot_step,
                               min_volume=symbol.min_volume)
    if not decision.allowed:
        if decision.halt_account:
            account.halt(f"daily loss limit: {decision.detail}", actor="orders.risk")
        log.info("order_blocked_by_risk", order_id=order.pk, account_id=account.pk, reason=decision.reason,
                 detail=decision.detail)
        return S.SKIPPED, {"reason": decision.reason, "last_error": decision.detail}
    fields = {"attempts": order.attempts + 1}
    if decision.volume != order.volume:  # clamped to the room left on the symbol
        log.info("order_volume_clamped", order_id=order.pk, account_id=account.pk, requested=str(order.volume),
                 volume=str(decision.volume), detail=decision.detail)
        fields["volume"] = decision.volume
    anchored = anchor()
    if anchored.skip_reason:
        log.info("order_skipped", order_id=order.pk, account_id=account.pk, reason=anchored.skip_reason,
                 live=str(anchored.entry), entry=str(signal.entry_price))
        return S.SKIPPED, {"reason": anchored.skip_reason,
                           "last_error": f"live {anchored.entry} vs signal entry {signal.entry_price}"}
    if anchored.reanchored:
        fields.update(price=anchored.entry, stop_loss=anchored.stop_loss, take_profit=anchored.take_profit)
    return S.SUBMITTED, fields


def _check_and_submit(order: Order, account: Account, signal: Signal) -> str:
    now = timezone.now()
    skip = _eligibility(account, signal, now)
    if skip:
        order.transition(S.SKIPPED, reason=skip)
        log.info("order_skipped", order_id=order.pk, account_id=account.pk, reason=skip)
        return order.status
    exposure = load_exposure(account, order.symbol_id, order.pk, now)
    target, fields = decide_send(order, account, signal, exposure, lambda: _anchor_on_live_price(order, signal),
                                 live_trading=live_trading_enabled())
    try:
        order.transition(target, **fields)
    except StaleTransition:
        return Order.objects.get(pk=order.pk).status
    if target == S.SKIPPED:
        return order.status
    return _send_open(order, account, first_attempt_counted=True)


def live_quote(symbol_name: str) -> dict | None:
    """The latest quote of the symbol from the market-data store (one Redis round trip); None when
    Redis cannot be read (the caller falls back to the signal's prices)."""
    from marketdata.reader import read_quotes

    try:
        return read_quotes(broker.get_redis(), [symbol_name]).get(symbol_name)
    except Exception as exc:  # Redis down or a malformed hash: never block the order on it
        log.warning("live_quote_unavailable", symbol=symbol_name, error=type(exc).__name__)
        return None


def _anchor_on_live_price(order: Order, signal: Signal) -> Anchored:
    """SL/TP re-anchored on the live price at the signal's distances, or a ``price_moved`` skip
    (:mod:`orders.pricing`). Missing or stale quote → the signal's prices."""
    symbol = order.symbol
    quote = live_quote(symbol.name)
    live = live_price_for(order.side, quote, now_ms=int(time.time() * 1000),
                          max_age_ms=settings.ORDERS_MAX_QUOTE_AGE_MS)
    if live is None and quote is not None:
        log.info("live_quote_stale", order_id=order.pk, symbol=symbol.name, recv_ms=quote.get("recv_ms"))
    return reanchor_stops(side=order.side, entry=signal.entry_price, stop_loss=signal.stop_loss,
                          take_profit=signal.take_profit, live=live, tick=symbol.tick_size,
                          max_deviation=settings.ORDERS_MAX_ENTRY_DEVIATION)


def _send_open(order: Order, account: Account, *, first_attempt_counted: bool,
               first_outcome: BrokerError | None = None) -> str:
    """Order is SUBMITTED and we hold the account lock. Loop until a definite outcome.

    ``first_outcome``: the error the batched send (:mod:`orders.batch`) already got for this order's
    first attempt; the loop handles it as if its own first call had raised it."""
    client = broker.client_for(account)
    symbol = order.symbol
    retries = 0
    counted = first_attempt_counted
    deadline = time.monotonic() + settings.ORDERS_SUBMIT_DEADLINE_S
    pending = first_outcome
    while True:
        if pending is None:
            gate = send_gate(account.pk)
            if not gate.ok:
                order.transition(S.FAILED, reason=gate.reason, last_error="blocked immediately before sending")
                log.warning("order_blocked_before_send", order_id=order.pk, reason=gate.reason)
                return order.status
            if not counted:
                order.attempts += 1
                Order.objects.filter(pk=order.pk).update(attempts=order.attempts)
        counted = False
        try:
            if pending is not None:
                outcome, pending = pending, None
                raise outcome
            result = client.open_position(symbol.name, order.side, order.volume, order.stop_loss, order.take_profit)
        except RateLimited as exc:
            retries += 1
            if (retries >= settings.ORDERS_MAX_SUBMIT_ATTEMPTS or exc.retry_after > settings.ORDERS_MAX_RETRY_AFTER_S
                    or time.monotonic() + exc.retry_after > deadline):
                order.transition(S.FAILED, reason=Fail.RATE_LIMITED, last_error=str(exc)[:500])
                return order.status
            delay = max(exc.retry_after, backoff_delay(retries))
            log.info("order_retry", order_id=order.pk, error="RateLimited", delay_s=round(delay, 3))
            time.sleep(delay)
            continue
        except BrokerUnavailable as exc:
            retries += 1
            if retries >= settings.ORDERS_MAX_SUBMIT_ATTEMPTS or time.monotonic() > deadline:
                order.transition(S.FAILED, reason=Fail.BROKER_UNAVAILABLE, last_error=str(exc)[:500])
                return order.status
            delay = backoff_delay(retries)
            log.info("order_retry", order_id=order.pk, error="BrokerUnavailable", delay_s=round(delay, 3))
            time.sleep(delay)
            continue
        except OrderRejected as exc:
            order.transition(S.REJECTED, reason=(exc.code or "REJECTED")[:64], last_error=(exc.message or "")[:500])
            log.info("order_rejected", order_id=order.pk, code=exc.code)
            return order.status
        except AuthenticationError as exc:
            order.transition(S.FAILED, reason=Fail.AUTH_FAILED, last_error=str(exc)[:500])
            return order.status
        except InvalidRequest as exc:
            order.transition(S.FAILED, reason=Fail.INVALID_REQUEST, last_error=str(exc)[:500])
            return order.status
        except (OutcomeUnknown, MalformedResponse) as exc:
            log.warning("order_outcome_unknown", order_id=order.pk, error=str(exc)[:200])
            Order.objects.filter(pk=order.pk).update(last_error=str(exc)[:500])
            again = _resolve_submitted(order, account)
            if again:
                continue
            return order.status
        order.transition(S.FILLED, broker_order_id=result.order_id or "")
        if settings.ORDERS_LINK_FILL_INLINE:
            order.account = account
            linking.link_locked([order])  # best effort; reconciliation links what this misses
        else:
            _enqueue_link(order.pk)
        return order.status


def _enqueue_link(order_id: int) -> None:
    """The fill is acknowledged; finding its position id (one more broker read) is follow-up
    bookkeeping done by ``orders.link_fill``, off the critical path: published at follow-up
    priority, it waits in Redis while order work is pending (``tradeops.celery.Priority``). Until
    it runs the exposure counts the order as an open position."""
    from tradeops.celery import Priority

    from .tasks import link_fill

    try:
        link_fill.apply_async((order_id,), ignore_result=True, priority=Priority.FOLLOW_UP,
                              countdown=settings.ORDERS_LINK_FILL_DELAY_S or None)
    except Exception as exc:  # Redis hiccup: reconciliation links it later
        log.warning("link_fill_enqueue_failed", order_id=order_id, error=type(exc).__name__)


def link_order_fill(order_id: int) -> bool:
    """Body of ``orders.link_fill``: link a filled order to its broker position (waits for the
    account lock, unlike the chunk's ``orders.link_fills``)."""
    order = Order.objects.select_related("symbol", "signal", "account").get(pk=order_id)
    if order.position_id or order.status != S.FILLED:
        return bool(order.position_id)
    with account_lock(order.account_id, settings.ORDERS_ACCOUNT_LOCK_WAIT_S):
        order.refresh_from_db(fields=["position", "broker_position_id"])
        if order.position_id is None:
            linking.link_locked([order])
    return order.position_id is not None


def read_with_retry(fn, *args, attempts: int = 4):
    """Reads are safe to repeat: retry transient failures a few times with backoff."""
    for attempt in range(attempts):
        try:
            return fn(*args)
        except RateLimited as exc:
            if attempt == attempts - 1 or exc.retry_after > settings.ORDERS_MAX_RETRY_AFTER_S:
                raise
            time.sleep(max(exc.retry_after, backoff_delay(attempt + 1)))
        except (BrokerUnavailable, MalformedResponse):
            if attempt == attempts - 1:
                raise
            time.sleep(backoff_delay(attempt + 1))


def _read_broker_fills(client, since: datetime):
    """Open positions + positions closed since ``since`` (an order may have filled and hit its
    stop before we looked)."""
    attempts = settings.ORDERS_IN_DOUBT_READ_ATTEMPTS
    open_ = read_with_retry(client.open_positions, attempts=attempts)
    closed = read_with_retry(client.closed_positions, since, timezone.now() + timedelta(minutes=1), attempts=attempts)
    return open_, closed


def _match_order(order: Order, account: Account, client):
    """(matched broker row or None, was_read). Raises BrokerError if the broker cannot be read."""
    skew = timedelta(seconds=settings.ORDERS_MATCH_CLOCK_SKEW_S)
    sent_at = order.submitted_at or order.created_at
    open_, closed = _read_broker_fills(client, sent_at - skew)
    claimed = _claimed_ids(account.pk, order.pk)
    kw = dict(symbol=order.symbol.name, side=order.side, volume=order.volume, sent_at=sent_at, claimed=claimed,
              clock_skew=skew)
    return find_match(open_, **kw) or find_match(closed, **kw)


def _reconcile_soon(account_id: int) -> None:
    """An unknown outcome is reconciled right away (by name: tasks import this module), not at the
    next beat; the task retries while the broker stays unreadable."""
    from tradeops.celery import Queues, app

    app.send_task("orders.reconcile_account", args=[account_id], queue=Queues.ORDERS,
                  countdown=settings.ORDERS_RECONCILE_AFTER_UNKNOWN_S)


def _resolve_submitted(order: Order, account: Account, *, settle: bool = True) -> bool:
    """The order is SUBMITTED and its outcome is unknown. Returns True when the caller should send
    it again (it surely did not execute and may still be traded). ``settle=False``: the caller
    already waited ``ORDERS_UNKNOWN_SETTLE_S`` (once for a whole batch)."""
    if settle and settings.ORDERS_UNKNOWN_SETTLE_S:
        time.sleep(settings.ORDERS_UNKNOWN_SETTLE_S)
    client = broker.client_for(account)
    try:
        match = _match_order(order, account, client)
    except BrokerError as exc:
        order.transition(S.UNKNOWN, reason="outcome_unknown", last_error=str(exc)[:500])
        Account.objects.filter(pk=account.pk).update(needs_reconciliation=True)
        log.warning("order_unknown_needs_reconciliation", order_id=order.pk, account_id=account.pk)
        _reconcile_soon(account.pk)
        return False
    if match is not None:
        order.transition(S.FILLED)
        record_fill(order, account.pk, order.symbol_id, match, signal=order.signal)
        log.info("order_in_doubt_resolved_filled", order_id=order.pk, position=match.id)
        return False
    signal = order.signal
    fresh = signal is None or (timezone.now() - signal.created_at).total_seconds() <= settings.ORDERS_SIGNAL_MAX_AGE_S
    if fresh and order.attempts < settings.ORDERS_MAX_SUBMIT_ATTEMPTS:
        log.info("order_not_executed_resend", order_id=order.pk, attempts=order.attempts)
        return True
    order.transition(S.FAILED, reason=Fail.NOT_EXECUTED)
    log.info("order_in_doubt_resolved_not_executed", order_id=order.pk)
    return False


def _resolve_in_doubt(order: Order, account: Account, signal: Signal, *, settle: bool = True) -> str:
    """A delivery found the order SUBMITTED (previous worker died mid-call) or UNKNOWN."""
    if order.status == S.SUBMITTED:
        if _resolve_submitted(order, account, settle=settle):
            return _send_open(order, account, first_attempt_counted=False)
        return order.status
    # UNKNOWN: an earlier check could not read the broker. Resolve, never resend from here.
    from .reconciliation import resolve_unknown_order

    resolve_unknown_order(order, account, broker.client_for(account))
    return order.status
