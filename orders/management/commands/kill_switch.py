"""manage.py kill_switch on|off|status [--account NAME] [--close-all] [--reason TEXT]

Global: flips the TradingSwitch singleton (no new order leaves: the send path re-reads it right
before every broker call). With --account: halts/resumes that one account instead. --close-all
(with "on") also closes the open positions (all, or the account's) at high priority.
Every use is written to the AuditLog.
"""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import Account, AuditLog, TradingSwitch
from orders import publish
from orders.models import Position


class Command(BaseCommand):
    help = "Stop (or allow) new orders globally or for one account, optionally closing open positions."

    def add_arguments(self, parser):
        parser.add_argument("state", choices=["on", "off", "status"],
                            help="on: stop new orders; off: allow them again; status: show the switch")
        parser.add_argument("--account", metavar="NAME", help="act on this account only (halt/resume)")
        parser.add_argument("--close-all", action="store_true",
                            help="with 'on': also close open positions (of --account, or all)")
        parser.add_argument("--reason", default="", help="why (recorded in the audit log)")
        parser.add_argument("--actor", default="", help="who (default: cli:<os user>)")

    def handle(self, *args, state, account=None, close_all=False, reason="", actor="", **options):
        actor = actor or f"cli:{_os_user()}"
        if close_all and state != "on":
            raise CommandError("--close-all only goes with 'on'")
        acct = None
        if account:
            acct = Account.objects.filter(name=account).first()
            if acct is None:
                raise CommandError(f"no account named {account!r}")
        if state == "status":
            self._status(acct)
            return
        if acct is not None:
            if state == "on":
                changed = acct.halt(reason or "kill switch (account)", actor=actor)
                self.stdout.write(f"account {acct.name}: {'halted' if changed else 'already halted'}")
            else:
                changed = acct.resume(actor=actor)
                self.stdout.write(f"account {acct.name}: {'resumed' if changed else 'was not halted'}")
        else:
            switch = TradingSwitch.get()
            on = state == "on"
            if switch.kill_switch != on:
                TradingSwitch.objects.filter(pk=switch.pk).update(
                    kill_switch=on, reason=reason if on else "", changed_at=timezone.now(), changed_by=actor)
                AuditLog.record(actor, AuditLog.Action.KILL_SWITCH_ON if on else AuditLog.Action.KILL_SWITCH_OFF,
                                reason=reason)
                self.stdout.write(f"kill switch {'ON: no new orders' if on else 'OFF: trading allowed'}")
            else:
                self.stdout.write(f"kill switch already {'on' if on else 'off'}")
        if close_all:
            qs = Position.objects.filter(status=Position.Status.OPEN)
            if acct is not None:
                qs = qs.filter(account=acct)
            n = qs.count()
            AuditLog.record(actor, AuditLog.Action.CLOSE_ALL, account=acct, reason=reason, positions=n)
            publish.close_all_positions(acct.pk if acct else None, Position.CloseReason.MANUAL)
            self.stdout.write(f"closing {n} open position(s)")

    def _status(self, acct):
        switch = TradingSwitch.get()
        state = "ON (no new orders)" if switch.kill_switch else "off"
        reason = switch.reason or ("no reason given" if switch.kill_switch else "")
        self.stdout.write(f"kill switch: {state}" + (f" — reason: {reason}" if reason else "")
                          + (f" (by {switch.changed_by} at {switch.changed_at:%Y-%m-%d %H:%M:%S} UTC)"
                             if switch.changed_by else ""))
        accounts = [acct] if acct else Account.objects.filter(halted=True)
        for a in accounts:
            flag = f"HALTED: {a.halt_reason}" if a.halted else "trading"
            self.stdout.write(f"account {a.name}: {flag}")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
