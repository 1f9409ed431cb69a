"""Economic-calendar files → news events: pure parsers for CSV and iCalendar.

Why here and pure: a calendar file comes from outside (a vendor export, a hand-made sheet); every
row is checked and a bad one is reported with its line (CSV) or its event number and UID (iCalendar)
instead of being dropped silently or stopping the others. ``manage.py import_news`` stores the
good rows (idempotently: unique by time, currency and title).

CSV: a header row with ``time`` (or ``datetime``/``date``), ``currency``, ``impact`` and ``title``
(or ``event``). Times are ISO 8601; a time without an offset is read in ``--tz`` (default UTC).
iCalendar (the ``icalendar`` library): each VEVENT's DTSTART is the time (a floating time is read
in ``--tz``; an all-day event is refused: a blackout needs a time), SUMMARY the title; the currency
and impact come from ``X-CURRENCY`` / ``X-IMPACT``, else from CATEGORIES (a 3-letter code and
low/medium/high), else from a ``USD:`` or ``[USD]`` prefix of the summary; impact defaults to high
(the conservative side: a blackout applies).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

IMPACTS = {"low": "low", "medium": "medium", "med": "medium", "moderate": "medium", "high": "high"}
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
PREFIX_RE = re.compile(r"^\s*(?:\[([A-Za-z]{3})\]|([A-Za-z]{3}):)\s*(.+)$")


@dataclass(frozen=True)
class ParsedEvent:
    at: datetime
    currency: str
    impact: str
    title: str


@dataclass(frozen=True)
class BadRow:
    where: str
    error: str


def _aware(dt: datetime, tz: ZoneInfo) -> datetime:
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


def _currency(value: str) -> str:
    c = (value or "").strip().upper()
    if c != "ALL" and not CURRENCY_RE.match(c):
        raise ValueError(f"currency {value!r} is not a 3-letter code or ALL")
    return c


def _impact(value: str | None) -> str:
    if value is None or str(value).strip() == "":
        return "high"
    v = IMPACTS.get(str(value).strip().lower())
    if v is None:
        raise ValueError(f"impact {value!r} is not low, medium or high")
    return v


def _title(value: str) -> str:
    t = (value or "").strip()
    if not t:
        raise ValueError("empty title")
    return t[:200]


def parse_csv(text: str, tz: str = "UTC") -> tuple[list[ParsedEvent], list[BadRow]]:
    zone = ZoneInfo(tz)
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower(): f for f in (reader.fieldnames or [])}
    time_col = next((fields[k] for k in ("time", "datetime", "date") if k in fields), None)
    title_col = next((fields[k] for k in ("title", "event") if k in fields), None)
    if time_col is None or title_col is None or "currency" not in fields:
        raise ValueError("CSV needs a header with time (or datetime/date), currency, title (or event) and "
                         f"optionally impact; got {reader.fieldnames}")
    good, bad = [], []
    for row in reader:
        where = f"line {reader.line_num}"
        try:
            raw = (row.get(time_col) or "").strip()
            try:
                at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"time {raw!r} is not ISO 8601") from None
            if len(raw) <= 10:
                raise ValueError(f"time {raw!r} has no time of day")
            good.append(ParsedEvent(_aware(at, zone), _currency(row.get(fields["currency"])),
                                    _impact(row.get(fields["impact"]) if "impact" in fields else None),
                                    _title(row.get(title_col))))
        except ValueError as exc:
            bad.append(BadRow(where, str(exc)))
    return good, bad


def parse_ical(data: bytes | str, tz: str = "UTC") -> tuple[list[ParsedEvent], list[BadRow]]:
    from icalendar import Calendar

    zone = ZoneInfo(tz)
    try:
        cal = Calendar.from_ical(data)
    except ValueError as exc:
        raise ValueError(f"not an iCalendar file: {exc}") from exc
    good, bad = [], []
    for n, ev in enumerate(cal.walk("VEVENT"), start=1):
        where = f"event {n} ({ev.get('UID', 'no UID')})"
        try:
            start = ev.get("DTSTART")
            if start is None:
                raise ValueError("no DTSTART")
            at = start.dt
            if isinstance(at, date) and not isinstance(at, datetime):
                raise ValueError("all-day event: a blackout needs a time")
            at = _aware(at, zone)
            summary = str(ev.get("SUMMARY", "")).strip()
            cats = []
            for c in ev.get("CATEGORIES", []) if isinstance(ev.get("CATEGORIES"), list) else [ev.get("CATEGORIES")]:
                if c is not None:
                    cats.extend(str(x) for x in getattr(c, "cats", [c]))
            currency = str(ev.get("X-CURRENCY", "")).strip()
            impact = str(ev.get("X-IMPACT", "")).strip() or None
            if not currency:
                currency = next((c for c in cats if CURRENCY_RE.match(c.strip().upper())), "")
            if impact is None:
                impact = next((c for c in cats if c.strip().lower() in IMPACTS), None)
            m = PREFIX_RE.match(summary)
            if not currency and m:
                currency = m.group(1) or m.group(2)
                summary = m.group(3)
            if not currency:
                raise ValueError("no currency (X-CURRENCY, CATEGORIES or a 'USD:' prefix)")
            good.append(ParsedEvent(at, _currency(currency), _impact(impact), _title(summary)))
        except ValueError as exc:
            bad.append(BadRow(where, str(exc)))
    return good, bad
