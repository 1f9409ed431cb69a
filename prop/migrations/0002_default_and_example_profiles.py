"""The default rule profile (today's tradeops behaviour) and three example profiles.

Default: daily loss on the balance at 00:00 UTC, the limit being each account's own
``daily_loss_limit`` (no percent, no amount on the profile), no close-only buffer and no flatten
margin: the account halts (and now also flattens) exactly where it halted before. It replaces the
old check in ``orders.risk``; it is not a second one.

Examples: labelled ``is_example`` with the date of the rules they describe. They model common
published program shapes (a 2-step challenge with a static maximum loss, its funded stage, a 1-step
program with a trailing maximum loss and daily caps) under made-up firm names: they are NOT any
firm's current rules — copy one and check it against your firm's terms.
"""

from datetime import date, time
from decimal import Decimal

from django.db import migrations

EXAMPLE_DATE = date(2026, 11, 1)

EXAMPLES = [
    dict(name="Example A - 2-step challenge, phase 1", firm="Example Firm A",
         daily_loss_basis="higher", daily_loss_pct=Decimal("5"), reset_time=time(0, 0),
         reset_timezone="Europe/Prague", max_loss_mode="static", max_loss_pct=Decimal("10"),
         forbid_copy_across_owners=True, news_scope="funded",
         notes="Example only. Daily loss 5 % of the initial balance, measured from the higher of balance and "
               "equity at midnight Prague time; static maximum loss 10 %; no copying between owners."),
    dict(name="Example A - funded", firm="Example Firm A",
         daily_loss_basis="higher", daily_loss_pct=Decimal("5"), reset_time=time(0, 0),
         reset_timezone="Europe/Prague", max_loss_mode="static", max_loss_pct=Decimal("10"),
         forbid_copy_across_owners=True, news_scope="funded", news_min_impact="high", news_before_s=120,
         news_after_s=120, weekend_holding=False, friday_cutoff=time(21, 0),
         notes="Example only. As phase 1, plus no entries 2 minutes either side of high-impact news and "
               "no positions over the weekend (closed Fridays 21:00 Prague time)."),
    dict(name="Example B - 1-step, trailing", firm="Example Firm B",
         daily_loss_basis="balance", daily_loss_pct=Decimal("4"), reset_time=time(17, 0),
         reset_timezone="America/New_York", max_loss_mode="trailing", max_loss_pct=Decimal("6"),
         trailing_stops_at_initial=True, max_lots_per_day=Decimal("10"), max_modifications_per_day=2000,
         max_open_orders=20, min_hold_seconds=60, forbid_copy_between_evaluations=True,
         notes="Example only. Daily loss 4 % from the balance at 17:00 New York time; maximum loss 6 % "
               "trailing the equity high-water mark until it reaches the initial balance; 10 lots and "
               "2,000 modifications a day; one evaluation account per owner takes a signal."),
]


def forwards(apps, schema_editor):
    RuleProfile = apps.get_model("prop", "RuleProfile")
    RuleProfile.objects.update_or_create(
        name="tradeops default",
        defaults=dict(is_default=True, firm="", daily_loss_basis="balance", reset_time=time(0, 0),
                      reset_timezone="UTC", max_loss_mode="none", close_only_buffer_pct=Decimal("0"),
                      flatten_margin_pct=Decimal("0"),
                      notes="Today's per-account limit: loss since 00:00 UTC (realized + unrealized, i.e. "
                            "equity against the day's opening balance) reaching the account's daily loss "
                            "limit halts the account and flattens it."))
    for ex in EXAMPLES:
        RuleProfile.objects.update_or_create(name=ex["name"], defaults=dict(ex, is_example=True,
                                                                             describes_date=EXAMPLE_DATE))


def backwards(apps, schema_editor):
    RuleProfile = apps.get_model("prop", "RuleProfile")
    RuleProfile.objects.filter(is_example=True, accounts__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("prop", "0001_initial"), ("accounts", "0004_prop_program")]
    operations = [migrations.RunPython(forwards, backwards)]
