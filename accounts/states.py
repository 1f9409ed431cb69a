"""What an account may do: the ONE definition of account states and halt causes (pure).

Why one place: "may this account open a position now?" was answered in three drifting copies (the
fan-out's queryset, the order task's eligibility, the send gate). Every caller now asks
:func:`may_open` / :func:`may_close` over an :class:`AccountState`, and the fan-out's eligibility
SQL (``orders.delivery``, one statement writing every pair with its reason) is the same rule
written for SQL.

The state of an account is four independent facts, stored as columns of ``accounts.Account``:

=====================  ==========================================================================
fact                   meaning
=====================  ==========================================================================
``enabled``            the operator's on/off switch. Disabled: no new positions, no balance syncs;
                       positions we opened may still be closed (risk-reducing).
``halt_cause``         empty: not halted. Otherwise WHY new orders are stopped (:class:`HaltCause`).
                       A halted account still closes positions (risk-reducing), opens nothing.
``restriction``        the operator's standing trading mode (:class:`Restriction`):
                       ``none``; ``close_only`` (closes, no opens); ``monitor_only`` (read and
                       reconcile, send nothing at all, not even closes).
``needs_reconciliation``  an order's outcome was lost: no opens until reconciliation decides.
=====================  ==========================================================================

Halt causes (who may lift it is the later work on auto-resume and prop rules; the cause is what it
needs to decide): ``operator`` (admin, ``kill_switch --account``), ``reconciliation`` (the broker
holds something we cannot explain), ``daily_loss`` (the daily loss limit was reached), ``token``
(credentials refused for good), ``firm_rule`` (a prop-firm rule would be broken).

No Django, Redis or clock here (import contract ``orders-pure`` / ``accounts-states-pure``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class HaltCause(StrEnum):
    OPERATOR = "operator"
    RECONCILIATION = "reconciliation"
    DAILY_LOSS = "daily_loss"
    TOKEN = "token"
    FIRM_RULE = "firm_rule"

    @property
    def label(self) -> str:
        return _HALT_LABELS[self]


_HALT_LABELS = {
    HaltCause.OPERATOR: "Operator",
    HaltCause.RECONCILIATION: "Reconciliation (unexplained broker state)",
    HaltCause.DAILY_LOSS: "Daily loss limit",
    HaltCause.TOKEN: "Credentials / token refused",
    HaltCause.FIRM_RULE: "Prop-firm rule",
}


class Restriction(StrEnum):
    NONE = "none"
    CLOSE_ONLY = "close_only"
    MONITOR_ONLY = "monitor_only"

    @property
    def label(self) -> str:
        return {"none": "Trade normally", "close_only": "Close only", "monitor_only": "Monitor only"}[self.value]


# Halt reasons written before the cause had its own column start with these words (reconciliation
# writes "reconciliation: ..."); the data migration maps them, everything else is the operator's.
def cause_from_legacy_reason(reason: str) -> HaltCause:
    text = (reason or "").strip().lower()
    if text.startswith("reconciliation"):
        return HaltCause.RECONCILIATION
    if text.startswith("daily loss"):
        return HaltCause.DAILY_LOSS
    return HaltCause.OPERATOR


@dataclass(frozen=True, slots=True)
class AccountState:
    enabled: bool = True
    halt_cause: str = ""  # "" or a HaltCause value
    restriction: str = Restriction.NONE
    needs_reconciliation: bool = False

    @property
    def halted(self) -> bool:
        return bool(self.halt_cause)

    @classmethod
    def of(cls, account) -> AccountState:
        """From anything carrying the four attributes (an ``Account`` row, a raw row)."""
        return cls(enabled=bool(account.enabled), halt_cause=account.halt_cause or "",
                   restriction=account.restriction or Restriction.NONE,
                   needs_reconciliation=bool(account.needs_reconciliation))


def why_not_open(state: AccountState) -> str:
    """"" when a new position may be opened, else the not-sent reason (``orders.reasons`` values)."""
    if not state.enabled:
        return "account_disabled"
    if state.halted:
        return "account_halted"
    if state.restriction == Restriction.MONITOR_ONLY:
        return "monitor_only"
    if state.restriction == Restriction.CLOSE_ONLY:
        return "close_only"
    if state.needs_reconciliation:
        return "needs_reconciliation"
    return ""


def may_open(state: AccountState) -> bool:
    return not why_not_open(state)


def why_not_close(state: AccountState) -> str:
    """Closing reduces risk: allowed while disabled, halted, close-only or awaiting reconciliation
    (the kill switch halts and then closes); only a monitor-only account sends nothing at all."""
    if state.restriction == Restriction.MONITOR_ONLY:
        return "monitor_only"
    return ""


def may_close(state: AccountState) -> bool:
    return not why_not_close(state)
