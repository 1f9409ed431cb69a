"""``manage.py prune_history``: delete history older than the RETENTION_* settings (what
``ops.prune_history`` does every hour; see workers/retention.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from workers.retention import prune


class Command(BaseCommand):
    help = ("Delete orders, trades, closed positions, audit entries, signals, equity snapshots and alert "
            "history older than their RETENTION_*_DAYS setting, in batches. Non-terminal orders are never deleted.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
        parser.add_argument("--batch", type=int, default=None, help="rows per delete (default RETENTION_BATCH)")
        parser.add_argument("--max-seconds", type=float, default=None,
                            help="stop after this long; the next run continues (default RETENTION_MAX_SECONDS)")

    def handle(self, *args, **options):
        if options["batch"] is not None and options["batch"] < 1:
            raise CommandError("--batch must be at least 1")
        report = prune(dry_run=options["dry_run"], batch=options["batch"], max_seconds=options["max_seconds"])
        verb = "would delete" if options["dry_run"] else "deleted"
        if not report.deleted or not any(report.deleted.values()):
            self.stdout.write("nothing to delete")
        for what, n in report.deleted.items():
            if n:
                self.stdout.write(f"{verb} {n} {what.replace('_', ' ')}")
        if not report.complete:
            self.stdout.write("stopped at the time limit; run again to continue")
