"""The order engine's reads: everything a decision needs, for N accounts in one statement each.

Why one read layer: the chunk task and the single-order task used to read the same facts with
different SQL (the kill-switch/halt gate existed as four query strings; "position ids already
claimed" three times). Every read here takes a LIST of accounts — one order is a list of one — so
the single-order path and the chunk path run the same statements, and a rule changes in one place.

=============================  ======================================================================
read                           function (one statement / round trip whatever the number of accounts)
=============================  ======================================================================
accounts + flags               :func:`accounts_for_orders` (kill switch, symbol permission)
the send gate                  :func:`gate_rows` / :func:`send_gates` — the ONLY read of the kill
                               switch and account halt state before a broker call
exposure (+ rule inputs)       :func:`exposures` (open positions, in-flight orders, realized PnL);
                               :func:`exposures_and_rule_inputs` adds, in the same statement, what
                               the rule profiles need (prop.pretrade: profile, day's budgets,
                               high-water mark, holdings)
claimed broker position ids    :func:`claimed_ids`
live quote                     :func:`live_quote` (Redis)
conversion rates               :func:`cross_rates` (Symbol table, feed quotes, broker quotations)
equity for sizing              :func:`equity_for_sizing` (the last broker read, refreshed if stale)
=============================  ======================================================================

Decisions over these values are pure (:mod:`orders.policy`).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, TradingSwitch
from marketdata.models import Symbol
from marketdata.reader import read_quotes
from matchtrader.errors import BrokerError
from prop.models import DailyUsage, RuleProfile, RuleState
from signals.models import Signal
from tradeops.logging import get_logger

from . import broker, conversion
from .models import IN_FLIGHT_STATUSES, Order, Position, Trade
from .policy import Gate, GateRow, decode_gate
from .risk import Exposure, RiskLimits

log = get_logger(__name__)


def utc_midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


# --- signal ------------------------------------------------------------------------------------------
_signal_cache: dict[int, tuple[float, Signal]] = {}
SIGNAL_CACHE_S = 30.0


def signal(signal_id: int) -> Signal:
    """Signals do not change after creation (only their fan-out status, unused here): a fan-out of
    1,000 orders reads its signal once per worker process, not 1,000 times."""
    now = time.monotonic()
    hit = _signal_cache.get(signal_id)
    if hit is not None and now - hit[0] < SIGNAL_CACHE_S:
        return hit[1]
    row = Signal.objects.select_related("symbol").get(pk=signal_id)
    if len(_signal_cache) > 256:
        _signal_cache.clear()
    _signal_cache[signal_id] = (now, row)
    return row


def signal_age_s(sig: Signal | None, now: datetime) -> float | None:
    if sig is None or sig.created_at is None:
        return None
    return (now - sig.created_at).total_seconds()


# --- accounts, flags and the gate -----------------------------------------------------------------------
# The kill switch, read by every statement below that needs it (one place for its SQL).
_KILL_SWITCH = "coalesce((SELECT kill_switch FROM {switch} WHERE id = 1), false)"

_ACCOUNTS_SQL = """
SELECT a.*, """ + _KILL_SWITCH + """ AS ks,
       EXISTS (SELECT 1 FROM {allowed} s WHERE s.account_id = a.id) AS has_allowed,
       EXISTS (SELECT 1 FROM {allowed} s WHERE s.account_id = a.id AND s.symbol_id = %s) AS sym_allowed
FROM {account} a WHERE a.id = ANY(%s) ORDER BY a.id
"""

_GATES_SQL = "SELECT a.id, " + _KILL_SWITCH + """, a.enabled, a.halted, a.restriction
FROM {account} a WHERE a.id = ANY(%s)
"""


def accounts_for_orders(account_ids: list[int], symbol_id: int) -> dict[int, Account]:
    """The accounts plus the kill switch (``ks``) and their permission for the symbol, in one query."""
    sql = _ACCOUNTS_SQL.format(switch=TradingSwitch._meta.db_table, account=Account._meta.db_table,
                               allowed=Account.allowed_symbols.through._meta.db_table)
    return {a.pk: a for a in Account.objects.raw(sql, [symbol_id, list(account_ids)])}


def symbol_allowed(account: Account) -> bool:
    """An empty allow-list means every symbol (flags read by :func:`accounts_for_orders`)."""
    return not getattr(account, "has_allowed", False) or getattr(account, "sym_allowed", True)


def gate_rows(account_ids: list[int]) -> dict[int, GateRow]:
    """Kill switch + each account's state, one query, read immediately before broker calls."""
    sql = _GATES_SQL.format(switch=TradingSwitch._meta.db_table, account=Account._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(sql, [list(account_ids)])
        return {r[0]: GateRow(kill_switch=r[1], enabled=r[2], halted=r[3], restriction=r[4])
                for r in cur.fetchall()}


def send_gates(account_ids: list[int]) -> dict[int, Gate]:
    rows = gate_rows(account_ids)
    return {account_id: decode_gate(rows.get(account_id)) for account_id in account_ids}


def kill_switch_on() -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT " + _KILL_SWITCH.format(switch=TradingSwitch._meta.db_table))
        return bool(cur.fetchone()[0])


# --- exposure (and the rule profiles' inputs) ------------------------------------------------------------
# One statement per chunk: three index lookups per account (open positions, unlinked in-flight
# orders on the partial index ``order_unlinked_inflight``, today's closes). With ``rule_inputs``
# the same laterals also return the holdings the rule profiles value (prop.pretrade), and per
# account its profile row, its DailyUsage rows of the firm days around now and its high-water
# mark: the firm rules' reads cost no statement of their own.
_EXPOSURE_SQL = """
SELECT a.id, p.n, p.vol_sym, p.upnl, o.n, o.vol_sym, t.realized{rule_columns}
FROM unnest(%(accs)s::bigint[], %(profiles)s::bigint[]) AS a(id, profile_id)
CROSS JOIN LATERAL (
  SELECT count(*) AS n, coalesce(sum(p.volume) FILTER (WHERE p.symbol_id = %(sym)s), 0) AS vol_sym,
         coalesce(sum(p.unrealized_pnl), 0) AS upnl{pos_holdings}
  FROM {pos} p{pos_join} WHERE p.account_id = a.id AND p.status = 'open') p
CROSS JOIN LATERAL (
  SELECT count(*) AS n, coalesce(sum(o.volume) FILTER (WHERE o.symbol_id = %(sym)s), 0) AS vol_sym{ord_holdings}
  FROM {ord} o{ord_join} WHERE o.account_id = a.id AND o.purpose = 'open' AND o.position_id IS NULL
               AND o.status IN ({inflight}) AND o.created_at >= %(since)s AND o.id <> ALL(%(exclude)s)) o
CROSS JOIN LATERAL (
  SELECT coalesce(sum(realized_pnl + commission + swap), 0) AS realized
  FROM {trd} WHERE account_id = a.id AND executed_at >= %(midnight)s AND kind IN ({closes})) t{rule_joins}
"""
# (symbol, side, volume, open price, stop, contract size, base, quote) per holding, as JSON text
# parsed with Decimal numbers (:func:`json_decimal`)
_HOLDINGS_AGG = (", json_agg(json_build_array(s.name, {t}.side, {t}.volume, {price}, {t}.stop_loss, "
                 "s.contract_size, s.base_currency, s.quote_currency))::text AS holdings")
_RULE_COLUMNS = ", p.holdings, o.holdings, rp.doc, u.docs, rs.high_water"
_RULE_JOINS = """
LEFT JOIN LATERAL (
  SELECT row_to_json(r)::text AS doc FROM {profile} r
  WHERE r.id = a.profile_id OR r.is_default
  ORDER BY r.id = a.profile_id DESC NULLS LAST, r.id LIMIT 1) rp ON true
LEFT JOIN LATERAL (
  SELECT json_agg(row_to_json(u))::text AS docs FROM {usage} u
  WHERE u.account_id = a.id AND u.day BETWEEN %(day_from)s AND %(day_to)s) u ON true
LEFT JOIN {rule_state} rs ON rs.account_id = a.id"""


def _sql_list(values) -> str:
    """Code constants (statuses, kinds) inlined as literals: the in-flight subquery must match the
    partial index ``order_unlinked_inflight`` (orders/models.py) predicate for the planner to use it."""
    assert all(str(v).isidentifier() for v in values)
    return ", ".join(f"'{v}'" for v in values)


def json_decimal(text: str | None):
    """JSON text from the statement above, numbers with a fraction as exact Decimals (money, lots)."""
    return json.loads(text, parse_float=Decimal) if text else None


def _exposure_from_row(account: Account, row, midnight: datetime) -> Exposure:
    n_pos, vol_pos, upnl, n_pending, vol_pending, realized = row
    if account.equity is not None and account.balance is not None and account.balance_updated_at \
            and account.balance_updated_at >= midnight:
        unrealized = account.equity - account.balance  # the latest broker read
    else:
        unrealized = upnl
    return Exposure(open_positions=n_pos + n_pending, symbol_volume=vol_pos + vol_pending,
                    realized_pnl_today=realized, unrealized_pnl=unrealized)


@dataclass(frozen=True)
class RuleInputs:
    """An account's rule-profile inputs, read with its exposure (consumed by :mod:`prop.pretrade`):
    the profile row (its own, else the default one; None: no profile row at all) and its DailyUsage
    rows of the firm days around now, as column → value dicts; the high-water mark; the holdings
    (open positions, then unlinked in-flight opens) as (symbol, side, volume, price, stop, contract
    size, base, quote)."""

    profile: dict | None
    usage: list[dict]
    high_water: Decimal | None
    holdings: list[tuple]


def _run_exposure(accounts: list[Account], symbol_id: int, now: datetime, exclude_order_ids, rule_inputs: bool):
    midnight = utc_midnight(now)
    params = {"accs": [a.pk for a in accounts], "profiles": [getattr(a, "rule_profile_id", None) for a in accounts],
              "sym": symbol_id, "since": now - timedelta(days=1), "exclude": list(exclude_order_ids) or [0],
              "midnight": midnight,
              # a firm day's local date is within a day or two of the UTC date, whatever its zone
              "day_from": (now - timedelta(days=2)).date(), "day_to": (now + timedelta(days=1)).date()}
    tables = dict(pos=Position._meta.db_table, ord=Order._meta.db_table, trd=Trade._meta.db_table,
                  inflight=_sql_list(IN_FLIGHT_STATUSES), closes=_sql_list([Trade.Kind.CLOSE, Trade.Kind.PARTIAL_CLOSE]),
                  rule_columns="", pos_holdings="", pos_join="", ord_holdings="", ord_join="", rule_joins="")
    if rule_inputs:
        join = " JOIN " + Symbol._meta.db_table + " s ON s.id = {t}.symbol_id"
        tables.update(rule_columns=_RULE_COLUMNS, pos_join=join.format(t="p"), ord_join=join.format(t="o"),
                      pos_holdings=_HOLDINGS_AGG.format(t="p", price="p.open_price"),
                      ord_holdings=_HOLDINGS_AGG.format(t="o", price="coalesce(o.fill_price, o.price)"),
                      rule_joins=_RULE_JOINS.format(profile=RuleProfile._meta.db_table,
                                                    usage=DailyUsage._meta.db_table,
                                                    rule_state=RuleState._meta.db_table))
    with connection.cursor() as cur:
        cur.execute(_EXPOSURE_SQL.format(**tables), params)
        return cur.fetchall(), midnight


def exposures(accounts: list[Account], symbol_id: int, now: datetime,
              exclude_order_id: int | None = None) -> dict[int, Exposure]:
    """What each account holds, counting orders whose position is not (yet) linked: three index
    lookups per account (open positions, unlinked in-flight orders, today's closes), one query."""
    if not accounts:
        return {}
    by_id = {a.pk: a for a in accounts}
    rows, midnight = _run_exposure(accounts, symbol_id, now, [exclude_order_id] if exclude_order_id else [], False)
    return {row[0]: _exposure_from_row(by_id[row[0]], row[1:7], midnight) for row in rows}


def exposures_and_rule_inputs(accounts: list[Account], symbol_id: int, now: datetime,
                              exclude_order_ids=()) -> dict[int, tuple[Exposure, RuleInputs]]:
    """:func:`exposures` and each account's :class:`RuleInputs`, in the same one statement."""
    if not accounts:
        return {}
    by_id = {a.pk: a for a in accounts}
    rows, midnight = _run_exposure(accounts, symbol_id, now, exclude_order_ids, True)
    out = {}
    profiles: dict[str, dict] = {}  # a chunk's accounts mostly share a profile: parse it once
    for row in rows:
        pos, pend, profile, usage, high_water = row[7:12]
        if profile is not None and profile not in profiles:
            profiles[profile] = json_decimal(profile)
        holdings = [tuple(h) for h in (json_decimal(pos) or []) + (json_decimal(pend) or []) if h[0] is not None]
        out[row[0]] = (_exposure_from_row(by_id[row[0]], row[1:7], midnight),
                       RuleInputs(profiles.get(profile), json_decimal(usage) or [], high_water, holdings))
    return out


def limits_of(account: Account) -> RiskLimits:
    return RiskLimits(account.max_open_positions, account.max_volume_per_symbol)


# --- claimed broker position ids ------------------------------------------------------------------
def claimed_ids(account_ids, exclude_order_ids=()) -> dict[int, set[str]]:
    """Broker position ids already accounted for, per account (Positions, and Orders that carry
    one, except ``exclude_order_ids``), in two queries for all the accounts."""
    claimed: dict[int, set[str]] = defaultdict(set)
    for account_id, pid in Position.objects.filter(account_id__in=account_ids).values_list(
            "account_id", "broker_position_id"):
        claimed[account_id].add(pid)
    for account_id, pid in (Order.objects.filter(account_id__in=account_ids).exclude(broker_position_id="")
                            .exclude(pk__in=list(exclude_order_ids)).values_list("account_id", "broker_position_id")):
        claimed[account_id].add(pid)
    return claimed


# --- quotes and conversion rates -----------------------------------------------------------------------
def live_quote(symbol_name: str) -> dict | None:
    """The latest quote of the symbol from the market-data store (one Redis round trip); None when
    Redis cannot be read (the caller falls back to the signal's prices)."""
    try:
        return read_quotes(broker.get_redis(), [symbol_name]).get(symbol_name)
    except Exception as exc:  # Redis down or a malformed hash: never block the order on it
        log.warning("live_quote_unavailable", symbol=symbol_name, error=type(exc).__name__)
        return None


CONVERSION_CACHE_S = 5.0
_rates_cache: dict[tuple[str, str], tuple[float, dict[str, Decimal]]] = {}


def conversion_pairs(quote_currency: str, account_currency: str) -> list[tuple[str, str]]:
    """(broker symbol, currency pair) of the instruments that convert between the two currencies."""
    q, a = quote_currency.upper(), account_currency.upper()
    rows = Symbol.objects.filter(Q(base_currency__iexact=q, quote_currency__iexact=a)
                                 | Q(base_currency__iexact=a, quote_currency__iexact=q)).order_by("name")
    return [(name, f"{base.upper()}{quote.upper()}") for name, base, quote in
            rows.values_list("name", "base_currency", "quote_currency")]


def cross_rates(quote_currency: str, account_currency: str, client: Callable | None = None) -> dict[str, Decimal]:
    """``{"EURUSD": Decimal(mid)}`` for :func:`orders.sizing.quote_to_account_rate` (see
    :mod:`orders.conversion`); ``client``: a callable returning a broker client, used only when
    Redis has no fresh quote. Cached per process for ``CONVERSION_CACHE_S``."""
    key = (quote_currency.upper(), account_currency.upper())
    now = time.monotonic()
    hit = _rates_cache.get(key)
    if hit is not None and now - hit[0] < CONVERSION_CACHE_S:
        return hit[1]
    pairs = conversion_pairs(*key)
    rates: dict[str, Decimal] = {}
    if pairs:
        rates = _rates_from_feed(pairs) or (_rates_from_broker(pairs, client) if client is not None else {})
    if not rates:
        log.warning("conversion_rate_unavailable", quote_currency=key[0], account_currency=key[1],
                    instruments=[name for name, _ in pairs])
    _rates_cache[key] = (now, rates)
    return rates


def clear_conversion_cache() -> None:
    _rates_cache.clear()


def _rates_from_feed(pairs) -> dict[str, Decimal]:
    try:
        quotes = read_quotes(broker.get_redis(), [name for name, _ in pairs])
    except Exception as exc:  # Redis down: fall back to the broker
        log.warning("conversion_quotes_unreadable", error=type(exc).__name__)
        return {}
    return conversion.rates_from_feed(pairs, quotes, now_ms=int(time.time() * 1000),
                                      max_age_ms=settings.ORDERS_CONVERSION_MAX_AGE_S * 1000)


def _rates_from_broker(pairs, client: Callable) -> dict[str, Decimal]:
    names = dict(pairs)
    try:
        quotes = client().quotations(list(names))
    except BrokerError as exc:
        log.warning("conversion_quotes_unavailable", instruments=list(names), error=type(exc).__name__)
        return {}
    return conversion.rates_from_quotations(pairs, quotes)


# --- equity ---------------------------------------------------------------------------------------------
def equity_for_sizing(account: Account):
    """The last broker read of the equity if younger than ``ORDERS_EQUITY_MAX_AGE_S``, else one
    ``/balance`` call (stored on the Account); stale is better than nothing, None → ``no_equity``."""
    fresh = account.balance_updated_at and (
        timezone.now() - account.balance_updated_at).total_seconds() <= settings.ORDERS_EQUITY_MAX_AGE_S
    if account.equity is not None and fresh:
        return account.equity
    try:
        bal = broker.client_for(account).balance()
    except BrokerError as exc:
        log.warning("sizing_balance_unavailable", account_id=account.pk, error=type(exc).__name__)
        return account.equity
    now = timezone.now()
    Account.objects.filter(pk=account.pk).update(balance=bal.balance, equity=bal.equity, balance_updated_at=now)
    account.balance, account.equity, account.balance_updated_at = bal.balance, bal.equity, now
    return bal.equity
