"""``manage.py healthcheck``: is the whole system up? Exit 0 when every selected check passes,
1 otherwise (a container HEALTHCHECK, a cron, a human). The checks are dashboard/health.py's,
the same ones ``/healthz`` reports."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from dashboard.health import CHECKS, run_checks


class Command(BaseCommand):
    help = (
        "Check database, Redis, feed freshness, beat freshness, Celery workers and the analysis loop. "
        "Exits 1 when any selected check fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        parser.add_argument(
            "--only", default="", metavar="CHECKS",
            help=f"comma-separated subset of: {', '.join(CHECKS)} (default: all)",
        )
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
        ok = all(r.ok for r in results)
        if options["json"]:
            self.stdout.write(json.dumps(
                {"status": "ok" if ok else "down", "checks": {r.name: r.to_dict() for r in results}}, indent=2))
        else:
            width = max(len(r.name) for r in results)
            for r in results:
                mark = self.style.SUCCESS("ok  ") if r.ok else self.style.ERROR("FAIL")
                self.stdout.write(f"{mark} {r.name.ljust(width)}  {r.detail}")
        if not ok:
            raise SystemExit(1)
