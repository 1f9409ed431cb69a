"""``manage.py check_state_sync [--duration S] [--every S] [--max-age S] [--json]``: during
``make run``, compare the database's open positions with the broker's every ``--every`` seconds
for ``--duration`` seconds; exit 1 if a difference lasted longer than ``--max-age`` (5 s) or an
exit order was rejected. See ``workers/state_check.py``.
"""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from workers.state_check import StateCheck, rejected_exit_orders


class Command(BaseCommand):
    help = "Check that the database's open positions match the broker's within --max-age seconds."

    def add_arguments(self, parser):
        parser.add_argument("--duration", type=float, default=60.0, help="seconds to watch (default 60)")
        parser.add_argument("--every", type=float, default=1.0, help="seconds between passes (default 1)")
        parser.add_argument("--max-age", type=float, default=5.0, help="longest tolerated difference (default 5 s)")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args, **options):
        from accounts.models import Account

        for name in ("duration", "every", "max_age"):
            if not options[name] > 0:
                raise CommandError(f"--{name.replace('_', '-')} must be > 0")
        check = StateCheck(max_age_s=options["max_age"])
        started, t0 = timezone.now(), time.monotonic()
        while True:
            accounts = list(Account.objects.filter(enabled=True))
            for account_id, pid, kind, age in check.check_once(accounts):
                self.stderr.write(f"late: account {account_id} position {pid} {kind} for {age:.1f} s")
            if time.monotonic() - t0 >= options["duration"]:
                break
            time.sleep(options["every"])
        summary = {"passes": check.passes, "accounts": len(accounts), "late_differences": len(check.late),
                   "worst_age_s": round(check.worst_age_s, 2), "open_differences_now": len(check.first_seen),
                   "rejected_exit_orders": rejected_exit_orders(started), "read_errors": check.read_errors}
        if options["json"]:
            self.stdout.write(json.dumps(summary))
        else:
            self.stdout.write(" ".join(f"{k}={v}" for k, v in summary.items()))
        if summary["late_differences"] or summary["rejected_exit_orders"]:
            raise SystemExit(1)
