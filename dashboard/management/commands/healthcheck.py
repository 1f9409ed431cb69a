"""``manage.py healthcheck``: is the whole system up? Exit 0 when every selected check passes,
1 otherwise (a container HEALTHCHECK, a cron, a human). The checks are dashboard/health.py's,
the same ones ``/healthz`` reports."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from dashboard.health import CHECKS, overall, run_checks


class Command(BaseCommand):
    help = (
        "Check database, Redis, feed freshness, beat freshness, Celery workers, the analysis loop, the kill "
        "switch, halted accounts, broker-state lag, the orders queue and the clock against the broker's. "
        "Exits 1 when a selected check fails; the advisory ones (kill switch, halts) only with --strict."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        parser.add_argument(
            "--only", default="", metavar="CHECKS",
            help=f"comma-separated subset of: {', '.join(CHECKS)} (default: all)",
        )
        parser.add_argument("--strict", action="store_true",
                            help="exit 1 also when only an advisory check (kill switch, halted accounts) fails")
        parser.add_argument(
            "--skip", default="", metavar="CHECKS", help="comma-separated checks to leave out",
        )

    def handle(self, *args, **options):
        only = [c.strip() for c in options["only"].split(",") if c.strip()]
        skip = {c.strip() for c in options["skip"].split(",") if c.strip()}
        unknown = [c for c in [*only, *skip] if c not in CHECKS]
        if unknown:
            raise CommandError(f"unknown check(s): {', '.join(unknown)}. Choose from: {', '.join(CHECKS)}")
        names = [c for c in (only or CHECKS) if c not in skip]
        if not names:
            raise CommandError("no check left to run (--only/--skip removed them all)")
        results = run_checks(names)
        state, _ = overall(results, strict=True)
        failing = [r for r in results if not r.ok]
        ok = not any(not r.advisory for r in failing) and not (options["strict"] and failing)
        if options["json"]:
            self.stdout.write(json.dumps({"status": state, "failing": [r.name for r in failing],
                                          "checks": {r.name: r.to_dict() for r in results}}, indent=2))
        else:
            width = max(len(r.name) for r in results)
            for r in results:
                mark = self.style.SUCCESS("ok  ") if r.ok else (
                    self.style.WARNING("WARN") if r.advisory else self.style.ERROR("FAIL"))
                self.stdout.write(f"{mark} {r.name.ljust(width)}  {r.detail}")
            self.stdout.write(f"status: {state}")
        if not ok:
            raise SystemExit(1)
