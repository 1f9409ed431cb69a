"""manage.py import_news FILE [--format csv|ics] [--tz ZONE] [--source TEXT] [--strict]

Imports an economic calendar into PostgreSQL (``prop.NewsEvent``); the rule profiles' blackout
windows apply to its events. Importing the same file again adds nothing. Bad rows are listed with
their position and reason; the good ones are imported unless ``--strict`` (then nothing is) and
the command exits non-zero whenever a row was bad.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from prop.models import NewsEvent
from prop.news import parse_csv, parse_ical
from tradeops.logging import get_logger

log = get_logger(__name__)


class Command(BaseCommand):
    help = "Import an economic calendar (CSV or iCalendar) for the news blackout rules."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--format", choices=["csv", "ics"], help="Default: from the file extension.")
        parser.add_argument("--tz", default="UTC", help="Zone of times without an offset (IANA, default UTC).")
        parser.add_argument("--source", default="", help="Stored with each event (e.g. the vendor).")
        parser.add_argument("--strict", action="store_true", help="Import nothing if any row is bad.")

    def handle(self, *args, file, format, tz, source, strict, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"No such file: {file}")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise CommandError(f"Unknown time zone {tz!r} (use an IANA name such as Europe/London)") from None
        fmt = format or ("ics" if path.suffix.lower() in (".ics", ".ical", ".ifb") else "csv")
        try:
            if fmt == "ics":
                good, bad = parse_ical(path.read_bytes(), tz)
            else:
                good, bad = parse_csv(path.read_text(encoding="utf-8-sig"), tz)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("news_import_unreadable", file=str(path), error=str(exc))
            raise CommandError(f"{path.name}: {exc}") from exc
        for b in bad:
            self.stderr.write(f"{path.name}: {b.where}: {b.error}")
            log.warning("news_import_bad_row", file=str(path), where=b.where, error=b.error)
        if bad and strict:
            raise CommandError(f"{len(bad)} bad row(s); nothing imported (--strict)")
        source = source or path.name
        with transaction.atomic():
            before = NewsEvent.objects.count()
            NewsEvent.objects.bulk_create(
                [NewsEvent(at=e.at, currency=e.currency, impact=e.impact, title=e.title, source=source[:200])
                 for e in good], ignore_conflicts=True)
            added = NewsEvent.objects.count() - before
        self.stdout.write(f"{added} event(s) added, {len(good) - added} already known, {len(bad)} bad")
        log.info("news_imported", file=str(path), added=added, known=len(good) - added, bad=len(bad))
        if bad:
            raise CommandError(f"{len(bad)} bad row(s) (listed above); the {len(good)} good one(s) were imported")
