"""Which accounts of a fan-out a firm's copy-trading rules let a signal reach: a pure function.

Why: some firms forbid copying one signal onto different people's accounts, or onto several
evaluation accounts; one breach closes the accounts. tradeops makes that impossible by accident —
and never tries to hide copying (no randomised delays or sizes): an account the rules exclude is
simply not traded, and its (signal, account) pair is recorded as skipped with the rule's name.

Rules, applied to the accounts that are otherwise eligible, in this order:

1. The strategy configuration lists the owners it trades for, in order. When the list is not
   empty, an account whose owner is not in it is skipped ``prop_owner_not_in_strategy``.
   (An empty list means: every owner, ordered by owner id.)
2. Per firm (``RuleProfile.firm``; accounts on a profile without a firm are never grouped), when the
   account's profile forbids copying across owners: only the accounts of the FIRST listed owner who
   has eligible accounts at that firm keep the signal; the others are skipped
   ``prop_copy_across_owners``. An account with no owner at such a firm cannot be shown to belong to
   the chosen person: skipped ``prop_owner_unknown``.
3. Per firm and owner, when the profile forbids copying between evaluation accounts: at most one
   evaluation account keeps the signal — the lowest id; the others are skipped
   ``prop_copy_between_evaluations``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .rules import Rule


@dataclass(frozen=True, slots=True)
class CopyAccount:
    id: int
    owner_id: int | None
    firm: str
    evaluation: bool
    forbid_across_owners: bool
    forbid_between_evaluations: bool


@dataclass(frozen=True, slots=True)
class CopySkip:
    account_id: int
    rule: str
    detail: str


def filter_fanout(accounts: list[CopyAccount], owner_order: list[int]) -> tuple[list[int], list[CopySkip]]:
    """(account ids that keep the signal, in id order; skips with the rule's name)."""
    skips: list[CopySkip] = []
    listed = {owner: i for i, owner in enumerate(owner_order)}
    kept: list[CopyAccount] = []
    for a in sorted(accounts, key=lambda a: a.id):
        if listed and a.owner_id not in listed:
            skips.append(CopySkip(a.id, Rule.OWNER_NOT_IN_STRATEGY,
                                  f"owner {a.owner_id} is not listed by the strategy configuration"))
        else:
            kept.append(a)

    def rank(owner_id):
        return (listed.get(owner_id, len(listed)), owner_id)

    by_firm: dict[str, list[CopyAccount]] = defaultdict(list)
    for a in kept:
        if a.firm:
            by_firm[a.firm].append(a)
    out: set[int] = {a.id for a in kept}
    for firm, members in by_firm.items():
        owners = sorted({a.owner_id for a in members if a.owner_id is not None}, key=rank)
        chosen = owners[0] if owners else None
        for a in members:
            if not a.forbid_across_owners:
                continue
            if a.owner_id is None:
                out.discard(a.id)
                skips.append(CopySkip(a.id, Rule.OWNER_UNKNOWN,
                                      f"{firm} forbids copying across owners and the account has no owner"))
            elif a.owner_id != chosen:
                out.discard(a.id)
                skips.append(CopySkip(a.id, Rule.COPY_ACROSS_OWNERS,
                                      f"{firm} forbids copying across owners: owner {chosen} trades this signal there"))
        first_eval: dict[int | None, int] = {}
        for a in sorted(members, key=lambda a: a.id):
            if a.id not in out or not (a.evaluation and a.forbid_between_evaluations):
                continue
            if a.owner_id in first_eval:
                out.discard(a.id)
                skips.append(CopySkip(a.id, Rule.COPY_BETWEEN_EVALUATIONS,
                                      f"{firm} forbids copying between evaluation accounts: account "
                                      f"{first_eval[a.owner_id]} (lowest id) takes this signal"))
            else:
                first_eval[a.owner_id] = a.id
    return sorted(out), sorted(skips, key=lambda s: s.account_id)
