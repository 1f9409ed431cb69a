"""Roles: Django groups with the permissions of each job on the desk.

=============  ==================================================================================
group          may
=============  ==================================================================================
Viewer         look at everything in the admin and the dashboard; change nothing
Operator       Viewer + halt / resume accounts + the kill switch (global, per account, close all)
Risk manager   Viewer + edit accounts' risk limits and the strategy parameters (StrategyConfig)
=============  ==================================================================================

Superusers have every permission. The groups are created (and their permissions put back to
this table) after every ``migrate`` (``post_migrate``), so a deployment always has them; an
administrator adds people to them in the admin. ``seed_demo`` creates one demo user per role.
The admin enforces the permissions: accounts/admin.py (actions, read-only risk fields),
TradingSwitch and StrategyConfig admins.
"""

from __future__ import annotations

VIEWER, OPERATOR, RISK_MANAGER = "Viewer", "Operator", "Risk manager"

# Every model the desk looks at, as app_label.model.
_VIEWED = (
    "accounts.account", "accounts.tradingswitch", "accounts.auditlog", "accounts.equitysnapshot",
    "marketdata.symbol", "signals.signal", "signals.strategyconfig",
    "orders.order", "orders.position", "orders.trade",
)
_VIEW = tuple(f"{label}.view_{model}" for label, model in (m.split(".") for m in _VIEWED))

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    VIEWER: _VIEW,
    OPERATOR: _VIEW + (
        "accounts.halt_resume_account",
        "accounts.use_kill_switch",
        "accounts.change_tradingswitch",
        "accounts.add_tradingswitch",
    ),
    RISK_MANAGER: _VIEW + (
        "accounts.change_account",  # to open the account form at all; the risk fields need:
        "accounts.edit_risk_limits",
        "signals.change_strategyconfig",
        "signals.add_strategyconfig",
    ),
}


def _permissions(codes):
    from django.contrib.auth.models import Permission

    wanted = {tuple(c.split(".", 1)) for c in codes}
    found = [p for p in Permission.objects.filter(codename__in={c for _, c in wanted}).select_related("content_type")
             if (p.content_type.app_label, p.codename) in wanted]
    return found, wanted - {(p.content_type.app_label, p.codename) for p in found}


def sync_roles(sender=None, **kwargs) -> None:
    """Create the role groups and set their permissions exactly (idempotent)."""
    from django.contrib.auth.models import Group

    for name, codes in ROLE_PERMISSIONS.items():
        perms, missing = _permissions(codes)
        if missing:  # post_migrate of an app whose permissions are not created yet: a later one completes it
            continue
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(perms)
