"""manage.py reconcile [--account NAME ...] [--all] [--async]

Compare our orders/positions with the broker's and repair drift now (see orders/reconciliation.py).
Default: the accounts that need it (flagged, in-doubt orders, open positions).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Account
from orders import publish
from orders.locks import AccountLockTimeout
from orders.reconciliation import accounts_needing_reconciliation, reconcile_account


class Command(BaseCommand):
    help = "Reconcile accounts with the broker now (or enqueue it with --async)."

    def add_arguments(self, parser):
        parser.add_argument("--account", action="append", metavar="NAME", default=[],
                            help="account name (repeatable)")
        parser.add_argument("--all", action="store_true", help="every enabled account")
        parser.add_argument("--async", action="store_true", dest="run_async",
                            help="enqueue orders.reconcile_account tasks instead of running here")

    def handle(self, *args, account, all=False, run_async=False, **options):
        if account:
            found = dict(Account.objects.filter(name__in=account).values_list("name", "pk"))
            missing = sorted(set(account) - set(found))
            if missing:
                raise CommandError(f"no account named {', '.join(missing)}")
            ids = sorted(found.values())
        else:
            ids = accounts_needing_reconciliation(include_all_enabled=all)
        if run_async:
            for pk in ids:
                publish.reconcile_account_now(pk)
            self.stdout.write(f"enqueued {len(ids)} reconciliation(s)")
            return
        if not ids:
            self.stdout.write("no account needs reconciliation (none flagged, no order in doubt, no open position); "
                              "--all reconciles every enabled account, --account NAME one")
            return
        failures = 0
        for pk in ids:
            try:
                report = reconcile_account(pk, actor="cli:reconcile")
            except AccountLockTimeout:
                failures += 1
                self.stderr.write(f"account {pk}: busy, try again")
                continue
            if not report.ok:
                failures += 1
            self.stdout.write(
                f"account {pk}: {'ok' if report.ok else 'ERROR ' + report.error}"
                f" filled={len(report.orders_filled)} not_executed={len(report.orders_not_executed)}"
                f" linked={len(report.fills_linked)} closed={len(report.positions_closed)}"
                f" unexplained={len(report.unexplained)}{' HALTED' if report.halted else ''}")
        if failures:
            raise CommandError(f"{failures} account(s) could not be reconciled")
