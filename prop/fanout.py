"""The copy-trading rules applied to a signal's fan-out (:func:`prop.copying.filter_fanout`), and
the record of every account they leave out.

Called by ``orders.dispatch`` on the eligible accounts before the chunks are published. An account
left out gets its (signal, account) Order row right away, ``skipped`` with the rule's name as the
reason and the explanation in ``last_error`` (the admin's order list and the signal's fan-out
summary show them): every pair ends in a recorded outcome. The rows carry the order's usual
idempotency key, so a second dispatch of the signal inserts nothing and the chunk task, should it
ever see such an account, finds a terminal row and sends nothing.

Two queries when no rule applies (the accounts' profiles and owners; the strategy's owner list);
one INSERT for the skipped rows otherwise.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account
from orders.lifecycle import OrderStatus
from orders.models import Order, idempotency_key_for
from signals.models import Signal
from tradeops.logging import get_logger

from .copying import CopyAccount, CopySkip, filter_fanout
from .models import RuleProfile, StrategyOwner

log = get_logger(__name__)


def owner_order(symbol_id: int) -> list[int]:
    """The owners the signal's strategy configuration trades for, in order: the symbol's own
    configuration when it lists any, else the enabled default configurations' lists (in creation
    order). Empty: every owner. One query."""
    rows = list(StrategyOwner.objects.filter(Q(strategy__symbol_id=symbol_id) | Q(strategy__symbol__isnull=True),
                                             strategy__enabled=True)
                .order_by("strategy_id", "position", "id").values_list("owner_id", "strategy__symbol_id"))
    own = [owner for owner, sym in rows if sym == symbol_id]
    return list(dict.fromkeys(own or [owner for owner, sym in rows if sym is None]))


_ACCOUNTS_SQL = """
SELECT a.id, a.owner_id, a.program_phase, coalesce(p.firm, d.firm, ''),
       coalesce(p.forbid_copy_across_owners, d.forbid_copy_across_owners, false),
       coalesce(p.forbid_copy_between_evaluations, d.forbid_copy_between_evaluations, false)
FROM {account} a
LEFT JOIN {profile} p ON p.id = a.rule_profile_id
LEFT JOIN LATERAL (SELECT * FROM {profile} WHERE is_default LIMIT 1) d ON a.rule_profile_id IS NULL
WHERE a.id = ANY(%s)
"""


def apply_copy_rules(signal_id: int, symbol_id: int, account_ids: list[int]) -> list[int]:
    """The accounts that keep the signal; the others are recorded as skipped with the rule's name.
    Two queries (the accounts' owners and profiles, the default profile standing in for none; the
    strategy's owner list), plus one INSERT when some are left out."""
    if not account_ids:
        return account_ids
    with connection.cursor() as cur:
        cur.execute(_ACCOUNTS_SQL.format(account=Account._meta.db_table, profile=RuleProfile._meta.db_table),
                    [list(account_ids)])
        accounts = [CopyAccount(pk, owner, firm, phase == Account.ProgramPhase.EVALUATION, across, evals)
                    for pk, owner, phase, firm, across, evals in cur.fetchall()]
    owners = owner_order(symbol_id)
    if not owners and not any(a.forbid_across_owners or a.forbid_between_evaluations for a in accounts):
        return account_ids
    kept, skips = filter_fanout(accounts, owners)
    if skips:
        record_skips(signal_id, skips)
    return kept


def record_skips(signal_id: int, skips: list[CopySkip]) -> None:
    signal = Signal.objects.select_related("symbol").get(pk=signal_id)
    now = timezone.now()
    Order.objects.bulk_create([
        Order(account_id=s.account_id, signal=signal, symbol=signal.symbol, side=signal.side, volume=0,
              idempotency_key=idempotency_key_for(signal_id, s.account_id), purpose=Order.Purpose.OPEN,
              order_type=Order.Type.MARKET, status=OrderStatus.SKIPPED, reason=s.rule, last_error=s.detail[:500],
              completed_at=now)
        for s in skips], ignore_conflicts=True)
    log.info("fanout_copy_rules_skipped", signal_id=signal_id,
             skipped={s.account_id: str(s.rule) for s in skips})

