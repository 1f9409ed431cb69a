"""News calendar import (CSV and iCalendar into PostgreSQL) and the blackout check on it."""

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from prop.models import NewsEvent
from prop.rules import blackout_hit
from prop.state import news_windows

pytestmark = pytest.mark.django_db

CSV = """time,currency,impact,title
2026-02-06T13:30:00Z,USD,high,Non-Farm Payrolls
2026-02-06 09:00,EUR,Medium,German industrial production
2026-02-06T10:00,GBP,extreme,Bad impact
not-a-time,USD,high,Bad time
2026-02-06T11:00,US,high,Bad currency
"""

ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//calendar//EN
BEGIN:VEVENT
UID:nfp-2026-02
DTSTART:20260206T133000Z
SUMMARY:Non-Farm Payrolls
X-CURRENCY:USD
X-IMPACT:High
END:VEVENT
BEGIN:VEVENT
UID:ecb-2026-02
DTSTART;TZID=Europe/Berlin:20260205T141500
SUMMARY:[EUR] ECB rate decision
CATEGORIES:high
END:VEVENT
BEGIN:VEVENT
UID:boj
DTSTART:20260210T030000
SUMMARY:JPY: BoJ minutes
CATEGORIES:JPY,medium
END:VEVENT
BEGIN:VEVENT
UID:allday
DTSTART;VALUE=DATE:20260211
SUMMARY:USD: Holiday
END:VEVENT
END:VCALENDAR
"""


def test_csv_import_reports_bad_rows_and_keeps_good_ones(tmp_path):
    f = tmp_path / "cal.csv"
    f.write_text(CSV)
    err = StringIO()
    with pytest.raises(CommandError, match="3 bad row"):
        call_command("import_news", str(f), "--tz", "Europe/London", stdout=StringIO(), stderr=err)
    assert "line 4" in err.getvalue() and "impact 'extreme'" in err.getvalue()
    assert "line 5" in err.getvalue() and "line 6" in err.getvalue()
    rows = {e.title: e for e in NewsEvent.objects.all()}
    assert set(rows) == {"Non-Farm Payrolls", "German industrial production"}
    assert rows["German industrial production"].at == datetime(2026, 2, 6, 9, 0, tzinfo=UTC)  # London = UTC in Feb
    assert rows["German industrial production"].impact == "medium"
    # again: nothing new; --strict imports nothing from a file with bad rows
    with pytest.raises(CommandError):
        call_command("import_news", str(f), stdout=StringIO(), stderr=StringIO())
    assert NewsEvent.objects.count() == 2
    NewsEvent.objects.all().delete()
    with pytest.raises(CommandError, match="nothing imported"):
        call_command("import_news", str(f), "--strict", stdout=StringIO(), stderr=StringIO())
    assert NewsEvent.objects.count() == 0


def test_ical_import_with_the_icalendar_library(tmp_path):
    f = tmp_path / "cal.ics"
    f.write_text(ICS)
    err = StringIO()
    with pytest.raises(CommandError, match="1 bad row"):
        call_command("import_news", str(f), "--tz", "Asia/Tokyo", stdout=StringIO(), stderr=err)
    assert "allday" in err.getvalue() and "needs a time" in err.getvalue()
    rows = {e.currency: e for e in NewsEvent.objects.all()}
    assert rows["USD"].at == datetime(2026, 2, 6, 13, 30, tzinfo=UTC) and rows["USD"].impact == "high"
    assert rows["EUR"].at == datetime(2026, 2, 5, 13, 15, tzinfo=UTC) and rows["EUR"].title == "ECB rate decision"
    assert rows["JPY"].at == datetime(2026, 2, 9, 18, 0, tzinfo=UTC) and rows["JPY"].impact == "medium"


def test_bad_arguments(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_news", str(tmp_path / "missing.csv"))
    f = tmp_path / "x.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(CommandError, match="header"):
        call_command("import_news", str(f))
    with pytest.raises(CommandError, match="Unknown time zone"):
        call_command("import_news", str(f), "--tz", "Nowhere/Land")
    g = tmp_path / "x.ics"
    g.write_text("garbage")
    with pytest.raises(CommandError):
        call_command("import_news", str(g))


def test_blackout_from_the_imported_calendar(tmp_path):
    f = tmp_path / "cal.ics"
    f.write_text(ICS)
    with pytest.raises(CommandError):
        call_command("import_news", str(f), stdout=StringIO(), stderr=StringIO())
    now = datetime(2026, 2, 6, 13, 29, tzinfo=UTC)
    events = news_windows(now, 120, 120)
    hit = blackout_hit(events, now, currencies={"EUR", "USD"}, before_s=120, after_s=120)
    assert hit is not None and hit.title == "Non-Farm Payrolls"
    later = datetime(2026, 2, 6, 13, 33, tzinfo=UTC)
    assert blackout_hit(news_windows(later, 120, 120), later, currencies={"EUR", "USD"}, before_s=120,
                        after_s=120) is None
