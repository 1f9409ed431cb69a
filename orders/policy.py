"""The order engine's decisions, as pure functions: what to do, never doing it.

Why a module of its own: the single-order task and the chunk task used to decide the same things
in private helpers of ``execution.py`` that also read settings, queried the database and halted
accounts halfway through a decision. Here every decision takes plain values (rows already read by
:mod:`orders.reads`, an :class:`EngineConfig` built from settings by the caller) and returns a
value; the caller performs what it says (a halt is an *intent* on the decision, see
:class:`SendDecision`). No Django, Redis, HTTP or clock (import contract ``orders-pure``).

=======================  ======================================================================
decision                 function
=======================  ======================================================================
may the account trade    :func:`eligibility` (account state from :mod:`accounts.states`, mode,
this signal at all                            symbol permission, signal age)
may this call leave now  :func:`decode_gate` (kill switch + account state, one row read right
                                              before every broker call)
size                     :func:`assemble_size` (risk size from :mod:`orders.sizing`, prices on
                                               the symbol's tick)
send, clamp or skip      :func:`decide_send` (pre-trade risk from :mod:`orders.risk`, then the
                                              live-price anchor from :mod:`orders.pricing`)
after a broker error     :func:`classify` → :class:`Retry` / :class:`Reject` / :class:`Fail` /
                                             :data:`IN_DOUBT`, used by EVERY loop that talks to
                                             the broker (opens, closes)
=======================  ======================================================================
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from accounts.states import AccountState, HaltCause, Restriction, why_not_open
from matchtrader.errors import (
    AuthenticationError,
    BrokerError,
    ScopeForbidden,
    TokenRevoked,
    BrokerUnavailable,
    ConfigurationError,
    InvalidRequest,
    MalformedResponse,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
)
from prop.rules import FirmCheck
from tradeops.backoff import exponential
from tradeops.money import round_to_step

from .pricing import Anchored
from .reasons import Reason
from .risk import Exposure, RiskLimits, TradingState, check_pre_trade
from .sizing import SymbolSpec, quote_to_account_rate, size_order

ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The settings the decisions depend on (built once per task from Django settings by the caller)."""

    simulation_mode: bool = True
    trading_enabled: bool = False
    signal_max_age_s: float = 120.0
    max_attempts: int = 5
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 3.0
    max_retry_after_s: float = 10.0

    @property
    def live_trading(self) -> bool:
        return (not self.simulation_mode) and self.trading_enabled


# --- eligibility ---------------------------------------------------------------------------------
def mode_allowed(account_mode: str, config: EngineConfig) -> bool:
    """Simulation accounts trade in simulation mode; live ones only with live trading enabled."""
    if config.simulation_mode:
        return account_mode == "simulation"
    return account_mode == "live" and config.trading_enabled


def eligibility(state: AccountState, *, account_mode: str, symbol_allowed: bool, signal_age_s: float | None,
                config: EngineConfig) -> str:
    """"" when the signal may become an order on the account, else the skip reason."""
    reason = why_not_open(state)
    if reason:
        return reason
    if not mode_allowed(account_mode, config):
        return Reason.MODE_MISMATCH
    if not symbol_allowed:
        return Reason.SYMBOL_NOT_ALLOWED
    if signal_age_s is not None and signal_age_s > config.signal_max_age_s:
        return Reason.SIGNAL_EXPIRED
    return ""


# --- the send gate -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Gate:
    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class GateRow:
    """What :func:`orders.reads.gate_rows` reads right before a broker call (one row per account)."""

    kill_switch: bool
    enabled: bool
    halted: bool
    restriction: str = Restriction.NONE


def decode_gate(row: GateRow | None) -> Gate:
    """May an OPEN leave now? The kill switch first (it is the operator's emergency stop), then the
    account's own state. A missing account row is a disabled account."""
    if row is None or not row.enabled:
        return Gate(False, Reason.ACCOUNT_DISABLED)
    if row.kill_switch:
        return Gate(False, Reason.KILL_SWITCH)
    if row.halted:
        return Gate(False, Reason.ACCOUNT_HALTED)
    if row.restriction == Restriction.MONITOR_ONLY:
        return Gate(False, Reason.MONITOR_ONLY)
    if row.restriction == Restriction.CLOSE_ONLY:
        return Gate(False, Reason.CLOSE_ONLY)
    return Gate(True)


# --- sizing ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sized:
    volume: Decimal
    reason: str  # "" or why the size is zero
    price: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None


def needs_cross_rate(*, quote_currency: str, base_currency: str, account_currency: str) -> bool:
    """True when neither side of the symbol is the account's currency (a third instrument converts)."""
    return quote_to_account_rate(quote_currency=quote_currency, base_currency=base_currency,
                                 account_currency=account_currency, price=Decimal("1")) is None


def assemble_size(*, equity: Decimal | None, risk_pct: Decimal, account_currency: str, symbol, entry_price,
                  stop_loss, take_profit, cross_rates: dict[str, Decimal] | None = None,
                  commission_per_lot: Decimal = ZERO) -> Sized:
    """The risk size of a signal's order on one account and its prices on the symbol's tick.
    ``symbol`` carries currencies, contract size, lot step, min/max volume and tick size. The loss
    is converted at the STOP (``orders.sizing``: the conservative side) and counts the round-trip
    ``commission_per_lot``."""
    reason, volume = "", ZERO
    if stop_loss is None:
        reason = Reason.NO_STOP_LOSS
    elif entry_price is None:
        reason = Reason.NO_ENTRY_PRICE
    else:
        rate = quote_to_account_rate(quote_currency=symbol.quote_currency, base_currency=symbol.base_currency,
                                     account_currency=account_currency, price=entry_price,
                                     stop_price=stop_loss, cross_rates=cross_rates)
        result = size_order(
            equity=equity, risk_pct=risk_pct, entry_price=entry_price, stop_loss=stop_loss,
            quote_to_account_rate=rate, commission_per_lot=commission_per_lot,
            spec=SymbolSpec(symbol.contract_size, symbol.lot_step, symbol.min_volume, symbol.max_volume),
        )
        volume, reason = result.volume, result.reason

    def px(v):
        return None if v is None else round_to_step(v, symbol.tick_size)

    return Sized(volume, reason, px(entry_price), px(stop_loss), px(take_profit))


# --- the pre-trade decision -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendDecision:
    """``target`` is ``"submitted"`` (send, with ``fields`` for the compare-and-set) or ``"skipped"``
    (``fields`` carry the reason). ``halt``: the account must be halted with this cause and
    ``halt_reason`` (the caller does it; the decision does not)."""

    target: str
    fields: dict = field(default_factory=dict)
    halt: HaltCause | None = None
    halt_reason: str = ""
    clamped_from: Decimal | None = None


def decide_send(*, volume: Decimal, attempts: int, limits: RiskLimits, exposure: Exposure, kill_switch: bool,
                is_live_account: bool, lot_step: Decimal, min_volume: Decimal, signal_entry,
                anchor: Callable[[], Anchored], config: EngineConfig, firm: FirmCheck | None = None) -> SendDecision:
    """Pre-trade risk, then the account's rule profile (:func:`prop.rules.check_entry`: loss headroom
    at the stop, the day's caps, hours and news — shrink to fit or skip with the rule's name; a loss
    rule at its limit halts the account), then the live-price anchor (``anchor`` is called only when
    both allow the order)."""
    state = TradingState(kill_switch=kill_switch, is_live_account=is_live_account,
                         live_trading_enabled=config.live_trading)
    decision = check_pre_trade(limits, exposure, state, volume, lot_step=lot_step, min_volume=min_volume)
    if not decision.allowed:
        return SendDecision("skipped", {"reason": decision.reason, "last_error": decision.detail})
    fields: dict = {"attempts": attempts + 1}
    clamped_from = None
    sent = decision.volume
    if firm is not None:
        entry = firm.decide(sent, lot_step=lot_step, min_volume=min_volume)
        if not entry.allowed:
            halt, halt_reason = None, ""
            if entry.breached:
                halt = HaltCause.FIRM_RULE if firm.firm else HaltCause.DAILY_LOSS
                halt_reason = (f"firm rule: {entry.rule}: {entry.detail}" if firm.firm
                               else f"daily loss limit: {entry.detail}")
            return SendDecision("skipped", {"reason": entry.rule, "last_error": entry.detail[:500]}, halt=halt,
                                halt_reason=halt_reason)
        sent = entry.volume
    if sent != volume:  # clamped to the room left on the symbol, or shrunk to the firm's headroom
        fields["volume"] = sent
        clamped_from = volume
    anchored = anchor()
    if anchored.skip_reason:
        return SendDecision("skipped", {"reason": anchored.skip_reason,
                                        "last_error": f"live {anchored.entry} vs signal entry {signal_entry}"})
    if anchored.reanchored:
        fields.update(price=anchored.entry, stop_loss=anchored.stop_loss, take_profit=anchored.take_profit)
    return SendDecision("submitted", fields, clamped_from=clamped_from)


# --- after a broker error: the one retry classification ---------------------------------------------
@dataclass(frozen=True, slots=True)
class Retry:
    after_s: float


@dataclass(frozen=True, slots=True)
class Reject:
    code: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class Fail:
    reason: str
    detail: str = ""


class _InDoubt:
    __slots__ = ()

    def __repr__(self) -> str:
        return "IN_DOUBT"


IN_DOUBT = _InDoubt()  # may have executed: read the broker back before anything else
Outcome = Retry | Reject | Fail | _InDoubt


def backoff_s(attempt: int, config: EngineConfig, rng: Callable[[float, float], float] = random.uniform) -> float:
    """Full jitter: uniform(0, min(cap, base·2^attempt)) -- the one formula, :mod:`tradeops.backoff`."""
    return rng(0, exponential(attempt + 1, config.backoff_base_s, config.backoff_cap_s))


def classify(error: BrokerError, attempt: int, deadline: float, *, now: float, config: EngineConfig,
             rng: Callable[[float, float], float] = random.uniform) -> Outcome:
    """What to do after ``error`` on the ``attempt``-th failed call (1-based) of a write, with
    ``deadline`` and ``now`` on the same monotonic clock.

    ==========================  =========================================================
    error                       outcome
    ==========================  =========================================================
    RateLimited(retry_after)    retry after max(retry_after, backoff); fail
                                ``rate_limited`` when attempts, the deadline or
                                ``max_retry_after_s`` would be exceeded
    BrokerUnavailable           retry after backoff; fail ``broker_unavailable`` when
                                attempts or the deadline are used up
    OrderRejected(code)         reject with the broker's code, never retried
    AuthenticationError         fail ``auth_failed`` (TokenRevoked: + halt, see
                                :func:`account_consequence`)
    ScopeForbidden              fail ``monitor_only`` (+ restriction)
    ConfigurationError          fail ``broker_unavailable`` (+ halt: persistent 403)
    InvalidRequest              fail ``invalid_request``
    OutcomeUnknown, Malformed   in doubt: read back before anything is sent again
    any other BrokerError       fail ``broker_unavailable``
    ==========================  =========================================================
    """
    if isinstance(error, RateLimited):
        if (attempt >= config.max_attempts or error.retry_after > config.max_retry_after_s
                or now + error.retry_after > deadline):
            return Fail(Reason.RATE_LIMITED, str(error))
        return Retry(max(error.retry_after, backoff_s(attempt, config, rng)))
    if isinstance(error, BrokerUnavailable):
        if attempt >= config.max_attempts or now > deadline:
            return Fail(Reason.BROKER_UNAVAILABLE, str(error))
        return Retry(backoff_s(attempt, config, rng))
    if isinstance(error, OrderRejected):
        return Reject((error.code or "REJECTED"), error.message or "")
    if isinstance(error, AuthenticationError):
        return Fail(Reason.AUTH_FAILED, str(error))
    if isinstance(error, ScopeForbidden):
        return Fail(Reason.MONITOR_ONLY, str(error))
    if isinstance(error, ConfigurationError):
        return Fail(Reason.BROKER_UNAVAILABLE, f"configuration error: {error}")
    if isinstance(error, InvalidRequest):
        return Fail(Reason.INVALID_REQUEST, str(error))
    if isinstance(error, (OutcomeUnknown, MalformedResponse)):
        return IN_DOUBT
    return Fail(Reason.BROKER_UNAVAILABLE, str(error))


# --- what a broker error means for the whole account ----------------------------------------------------
TOKEN_REVOKED_REASON = "token revoked or expired"
READ_ONLY_TOKEN_REASON = "read-only Trader API token: a trading call was refused (403)"
BLOCKED_REASON = "broker configuration: persistent HTTP 403 (Cloudflare / User-Agent / IP block)"


@dataclass(frozen=True, slots=True)
class AccountConsequence:
    """An intent on the account, performed by the caller: halt it, or restrict it."""

    halt: HaltCause | None = None
    restrict: Restriction | None = None
    reason: str = ""


def account_consequence(error: BrokerError) -> AccountConsequence | None:
    """Errors that are about the account, not the order: a revoked Trader API token halts the
    account (cause ``token``; only a new token lifts it), a 403 on a trading call makes it
    monitor-only (a read-only token never receives an order). Any other error: None."""
    if isinstance(error, TokenRevoked):
        return AccountConsequence(halt=HaltCause.TOKEN, reason=TOKEN_REVOKED_REASON)
    if isinstance(error, ScopeForbidden) and error.write:
        return AccountConsequence(restrict=Restriction.MONITOR_ONLY, reason=READ_ONLY_TOKEN_REASON)
    if isinstance(error, ConfigurationError):
        # only a person can lift a block: the operator's halt, with the reason on the dashboard
        return AccountConsequence(halt=HaltCause.OPERATOR, reason=BLOCKED_REASON)
    return None


def may_resend_not_executed(*, attempts: int, signal_age_s: float | None, config: EngineConfig) -> bool:
    """After a read-back proved an open did not execute: send the same row again while the signal is
    fresh and attempts remain (else it fails ``not_executed``)."""
    fresh = signal_age_s is None or signal_age_s <= config.signal_max_age_s
    return fresh and attempts < config.max_attempts
