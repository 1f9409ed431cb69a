"""The engine's pure decisions: the one retry classification, the send gate, eligibility, the
pre-trade decision that returns a halt instead of performing it, and the account states."""

from decimal import Decimal as D

import pytest

from accounts.states import AccountState, HaltCause, Restriction, cause_from_legacy_reason, may_close, may_open
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
from orders.policy import (
    IN_DOUBT,
    EngineConfig,
    Fail,
    GateRow,
    Reject,
    Retry,
    classify,
    decide_send,
    decode_gate,
    eligibility,
)
from orders.pricing import Anchored
from orders.reasons import Reason
from orders.risk import Exposure, RiskLimits
from prop.rules import Basis, Caps, EntryContext, FirmCheck, Floors, LossRules

CONFIG = EngineConfig(max_attempts=5, backoff_base_s=0.2, backoff_cap_s=3.0, max_retry_after_s=10.0)
TOP = lambda lo, hi: hi  # noqa: E731  the jitter at its upper bound, so delays are exact


def at(error, attempt=1, deadline=100.0, now=0.0):
    return classify(error, attempt, deadline, now=now, config=CONFIG, rng=TOP)


# --- classify ---------------------------------------------------------------------------------------
def test_a_transport_failure_is_retried_with_backoff_until_attempts_or_the_deadline_run_out():
    assert at(BrokerUnavailable("down"), attempt=1) == Retry(0.4)
    assert at(BrokerUnavailable("down"), attempt=4) == Retry(3.0)  # capped
    assert at(BrokerUnavailable("down"), attempt=5) == Fail(Reason.BROKER_UNAVAILABLE, "down")
    assert at(BrokerUnavailable("down"), attempt=1, now=101.0) == Fail(Reason.BROKER_UNAVAILABLE, "down")


def test_a_429_waits_at_least_its_retry_after_and_gives_up_when_that_is_too_long():
    assert at(RateLimited(2.0), attempt=1) == Retry(2.0)
    assert at(RateLimited(0.1), attempt=2) == Retry(0.8)  # backoff when longer than Retry-After
    assert isinstance(at(RateLimited(11.0)), Fail) and at(RateLimited(11.0)).reason == Reason.RATE_LIMITED
    assert at(RateLimited(5.0), now=96.0).reason == Reason.RATE_LIMITED  # would pass the deadline
    assert at(RateLimited(1.0), attempt=5).reason == Reason.RATE_LIMITED


def test_definite_answers_are_never_retried_and_lost_answers_are_in_doubt():
    assert at(OrderRejected("NO_MONEY", "not enough margin")) == Reject("NO_MONEY", "not enough margin")
    assert at(OrderRejected("", "")) == Reject("REJECTED", "")
    assert at(AuthenticationError("401")).reason == Reason.AUTH_FAILED
    assert at(InvalidRequest(400, "bad volume")).reason == Reason.INVALID_REQUEST
    assert at(OutcomeUnknown("read timeout")) is IN_DOUBT
    assert at(MalformedResponse("garbage")) is IN_DOUBT
    assert at(BrokerError("something new")).reason == Reason.BROKER_UNAVAILABLE


# --- the send gate ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("row, reason", [
    (None, Reason.ACCOUNT_DISABLED),
    (GateRow(kill_switch=False, enabled=False, halted=False), Reason.ACCOUNT_DISABLED),
    (GateRow(kill_switch=True, enabled=True, halted=True), Reason.KILL_SWITCH),
    (GateRow(kill_switch=False, enabled=True, halted=True), Reason.ACCOUNT_HALTED),
    (GateRow(kill_switch=False, enabled=True, halted=False, restriction=Restriction.MONITOR_ONLY),
     Reason.MONITOR_ONLY),
    (GateRow(kill_switch=False, enabled=True, halted=False, restriction=Restriction.CLOSE_ONLY), Reason.CLOSE_ONLY),
    (GateRow(kill_switch=False, enabled=True, halted=False), ""),
])
def test_the_send_gate_is_decoded_from_one_row(row, reason):
    gate = decode_gate(row)
    assert gate.ok == (reason == "") and gate.reason == reason


# --- eligibility and account states --------------------------------------------------------------------
def eligible(state=AccountState(), mode="simulation", allowed=True, age=1.0, config=EngineConfig()):
    return eligibility(state, account_mode=mode, symbol_allowed=allowed, signal_age_s=age, config=config)


def test_eligibility_reads_no_settings_and_names_the_first_reason():
    assert eligible() == ""
    assert eligible(AccountState(enabled=False, halt_cause=HaltCause.OPERATOR)) == Reason.ACCOUNT_DISABLED
    assert eligible(AccountState(halt_cause=HaltCause.DAILY_LOSS)) == Reason.ACCOUNT_HALTED
    assert eligible(AccountState(restriction=Restriction.CLOSE_ONLY)) == Reason.CLOSE_ONLY
    assert eligible(AccountState(needs_reconciliation=True)) == Reason.NEEDS_RECONCILIATION
    assert eligible(mode="live") == Reason.MODE_MISMATCH
    assert eligible(mode="live", config=EngineConfig(simulation_mode=False, trading_enabled=True)) == ""
    assert eligible(allowed=False) == Reason.SYMBOL_NOT_ALLOWED
    assert eligible(age=121.0) == Reason.SIGNAL_EXPIRED


def test_account_states_say_who_may_open_and_who_may_close():
    normal = AccountState()
    halted = AccountState(halt_cause=HaltCause.RECONCILIATION)
    close_only = AccountState(restriction=Restriction.CLOSE_ONLY)
    monitor = AccountState(restriction=Restriction.MONITOR_ONLY)
    disabled = AccountState(enabled=False)
    flagged = AccountState(needs_reconciliation=True)
    assert [may_open(s) for s in (normal, halted, close_only, monitor, disabled, flagged)] == [
        True, False, False, False, False, False]
    # closing reduces risk: only a monitor-only account sends nothing at all
    assert [may_close(s) for s in (normal, halted, close_only, monitor, disabled, flagged)] == [
        True, True, True, False, True, True]


def test_halt_reasons_written_before_causes_existed_map_to_a_cause():
    assert cause_from_legacy_reason("reconciliation: broker has 1 position(s)") == HaltCause.RECONCILIATION
    assert cause_from_legacy_reason("daily loss limit: loss 600 reached 500") == HaltCause.DAILY_LOSS
    assert cause_from_legacy_reason("halted from the admin by boss") == HaltCause.OPERATOR
    assert cause_from_legacy_reason("") == HaltCause.OPERATOR


# --- the pre-trade decision -------------------------------------------------------------------------------
def decide(exposure=Exposure(), volume=D("1.00"), anchor=None, kill_switch=False, firm=None):
    calls = []

    def anchor_fn():
        calls.append(1)
        return anchor or Anchored(D("1.1"), D("1.09"), D("1.12"), "", False)

    decision = decide_send(volume=volume, attempts=0, limits=RiskLimits(5, D("10")), exposure=exposure,
                           kill_switch=kill_switch, is_live_account=False, lot_step=D("0.01"), min_volume=D("0.01"),
                           signal_entry=D("1.1"), anchor=anchor_fn, config=CONFIG, firm=firm)
    return decision, calls


def _firm(equity, *, firm=False, loss_per_lot=D("100")):
    """The default profile's daily loss rule (500 from a 10,000 day start, no buffer, no margin)."""
    rules = LossRules(Basis.BALANCE, D("500"), close_only_buffer_pct=D("0"), flatten_margin_pct=D("0"))
    return FirmCheck(rules, Caps(), EntryContext(equity=D(equity), floors=Floors(D("9500"), None)), loss_per_lot,
                     firm=firm)


def test_a_daily_loss_breach_returns_a_halt_intent_and_reads_no_quote():
    decision, calls = decide(firm=_firm("9400"))
    assert decision.target == "skipped" and decision.fields["reason"] == Reason.DAILY_LOSS_LIMIT
    assert decision.halt == HaltCause.DAILY_LOSS and decision.halt_reason.startswith("daily loss limit: ")
    assert calls == []
    on_a_firm, _ = decide(firm=_firm("9400", firm=True))
    assert on_a_firm.halt == HaltCause.FIRM_RULE and on_a_firm.halt_reason.startswith("firm rule: daily_loss_limit")


def test_the_rule_profile_shrinks_to_the_headroom_after_the_symbol_clamp():
    # symbol room 0.50 lot; 30 of headroom at 100 a lot → 0.30
    decision, calls = decide(Exposure(symbol_volume=D("9.5")), firm=_firm("9530"))
    assert decision.target == "submitted" and decision.fields["volume"] == D("0.30") and calls == [1]
    skipped, calls = decide(firm=_firm("9500.5"))  # 0.5 of headroom: below 0.01 lot's 1
    assert skipped.fields["reason"] == Reason.DAILY_LOSS_LIMIT and skipped.halt is None and calls == []


def test_an_allowed_order_is_clamped_and_anchored_and_halts_nothing():
    decision, calls = decide(Exposure(symbol_volume=D("9.5")))
    assert decision.target == "submitted" and decision.halt is None
    assert decision.fields == {"attempts": 1, "volume": D("0.50")} and decision.clamped_from == D("1.00")
    assert calls == [1]
    moved, _ = decide(anchor=Anchored(D("1.2"), None, None, Reason.PRICE_MOVED, True))
    assert moved.target == "skipped" and moved.fields["reason"] == Reason.PRICE_MOVED
    blocked, calls = decide(kill_switch=True)
    assert blocked.fields["reason"] == Reason.KILL_SWITCH and blocked.halt is None and calls == []
