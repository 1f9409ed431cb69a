"""prop.state over PostgreSQL: budgets per firm day that survive a restart, the high-water mark,
the day-start snapshot (observed, from a snapshot, rebuilt from the broker's history)."""

import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal as D
from types import SimpleNamespace

import pytest
from django.db import connection

from accounts.models import EquitySnapshot
from prop import state
from prop.models import DailyUsage, RuleProfile, RuleState
from prop.rules import Rule
from tests.factories import make_account

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def profile():
    return RuleProfile.objects.create(name="Test NY", firm="T", daily_loss_pct=D("5"), reset_time=time(17),
                                      reset_timezone="America/New_York", max_modifications_per_day=3,
                                      max_lots_per_day=D("10"))


def test_budgets_per_firm_day_survive_a_restart(profile):
    account = make_account(rule_profile=profile, initial_balance=D("100000"))
    now = datetime(2026, 3, 8, 20, 0, tzinfo=UTC)  # firm day 2026-03-07 (ends 21:00 UTC: DST)
    ar = state.rules_for([account], now)[account.pk]
    state.usage_rows({account.pk: ar})
    state.spend(account.pk, ar.day.day, lots=D("1.5"), orders=1)
    state.spend_many([(account.pk, ar.day.day, D("0.25"))])
    # a separate process (a restarted worker) reads what this one spent
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','tradeops.settings'); django.setup();"
        "from django.conf import settings; from prop.models import DailyUsage;"
        f"u = DailyUsage.objects.get(account_id={account.pk}, day='2026-03-07'); print(u.lots, u.orders)"
    )
    env_db = connection.settings_dict["NAME"]
    import os

    env = dict(os.environ, DB_NAME=env_db,
               DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{env_db}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=".", timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1.75", "2"]
    # the next firm day (from 21:00 UTC, not 22:00: DST) starts from zero
    nxt = state.rules_for([account], now + timedelta(hours=1, minutes=1))[account.pk]
    assert nxt.day.day.isoformat() == "2026-03-08"
    assert state.usage_of(state.usage_rows({account.pk: nxt})[account.pk]).lots == 0


def test_modification_cap_is_a_compare_and_set(profile):
    account = make_account(rule_profile=profile, initial_balance=D("100000"))
    results = [state.try_modify(account) for _ in range(5)]
    assert results == [(True, "")] * 3 + [(False, Rule.DAILY_MODIFICATIONS)] * 2
    assert DailyUsage.objects.get(account=account).modifications == 3


def test_high_water_mark_only_rises(profile):
    account = make_account(rule_profile=profile)
    for e in ("100000", "101500", "99000", "101000"):
        state.raise_high_water(account.pk, D(e))
    rs = RuleState.objects.get(account=account)
    assert rs.high_water == D("101500") and rs.last_equity == D("101000")


def test_day_start_observed_snapshot_or_rebuilt(profile):
    account = make_account(rule_profile=profile, initial_balance=D("100000"))
    day_start = datetime(2026, 1, 13, 22, 0, tzinfo=UTC)  # 17:00 New York, winter
    # observed within the tolerance of the reset
    row = state.observe_balance(account, D("100500"), D("100700"), day_start + timedelta(seconds=30))
    assert (row.start_balance, row.start_equity, row.start_source) == (D("100500"), D("100700"), "observed")
    # a later read of the same day changes nothing
    row = state.observe_balance(account, D("90000"), D("90000"), day_start + timedelta(hours=3))
    assert row.start_balance == D("100500")

    # next day: tradeops was down over the reset, but a snapshot was taken 60 s before it
    day2 = day_start + timedelta(days=1)
    EquitySnapshot.objects.create(account=account, at=day2 - timedelta(seconds=60), balance=D("100800"),
                                  equity=D("100900"))
    row = state.observe_balance(account, D("100100"), D("100000"), day2 + timedelta(hours=2))
    assert (row.start_balance, row.start_equity, row.start_source) == (D("100800"), D("100900"), "snapshot")

    # the day after: no snapshot near the reset → rebuilt from the broker's closed positions
    day3 = day2 + timedelta(days=1)
    closed = [SimpleNamespace(net_profit=D("-250.50"), close_time=day3 + timedelta(minutes=30)),
              SimpleNamespace(net_profit=D("100"), close_time=day3 + timedelta(hours=1))]
    client = SimpleNamespace(closed_positions=lambda since, until: closed)
    row = state.observe_balance(account, D("99849.50"), D("99849.50"), day3 + timedelta(hours=2), client)
    assert row.start_source == "rebuilt" and row.start_balance == D("100000.00")


def test_default_profile_uses_the_accounts_own_limit():
    account = make_account(daily_loss_limit=D("750"))
    ar = state.rules_for([account], datetime(2026, 5, 1, 12, tzinfo=UTC))[account.pk]
    assert ar.profile.is_default and ar.loss.daily_limit == D("750") and ar.loss.basis == "balance"
    assert ar.day.start == datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize("basis, floor_day1, floor_day2", [
    ("balance", D("96000"), D("94000")),
    ("equity", D("97500"), D("93200")),
    ("higher", D("97500"), D("94000")),
    ("initial", D("95000"), D("95000")),
])
def test_each_basis_through_the_database_across_the_new_york_dst_reset(basis, floor_day1, floor_day2):
    """The firm day resets at 17:00 New York. Day 1 starts Sat 2026-03-07 22:00 UTC (EST); DST begins
    on the 8th, so day 2 starts at 21:00 UTC (EDT) — a 23-hour day. Reads: 22:00:30 UTC on the 7th
    (balance 101,000 / equity 102,500), 20:59 UTC on the 8th (still day 1), 21:00:30 UTC on the 8th
    (day 2's snapshot: 99,000 / 98,200 — a fixed EST offset would still call this day 1 and keep
    day 1's reference), 21:30 UTC (same day, no new snapshot). Limit 5 % of
    100,000 = 5,000 below each basis's reference, hand-computed."""
    profile = RuleProfile.objects.create(name=f"NY {basis}", firm="T", daily_loss_pct=D("5"), reset_time=time(17),
                                         reset_timezone="America/New_York", daily_loss_basis=basis)
    account = make_account(rule_profile=profile, initial_balance=D("100000"))

    def floor_at(now):
        ar = state.rules_for([account], now)[account.pk]
        row = state.usage_rows({account.pk: ar})[account.pk]
        return ar.day.day.isoformat(), state.floors_for(account, ar, row, None).daily

    state.observe_balance(account, D("101000"), D("102500"), datetime(2026, 3, 7, 22, 0, 30, tzinfo=UTC))
    state.observe_balance(account, D("99500"), D("99000"), datetime(2026, 3, 8, 20, 59, tzinfo=UTC))
    assert floor_at(datetime(2026, 3, 8, 20, 59, tzinfo=UTC)) == ("2026-03-07", floor_day1)
    state.observe_balance(account, D("99000"), D("98200"), datetime(2026, 3, 8, 21, 0, 30, tzinfo=UTC))
    state.observe_balance(account, D("98000"), D("97000"), datetime(2026, 3, 8, 21, 30, tzinfo=UTC))
    assert floor_at(datetime(2026, 3, 8, 21, 30, tzinfo=UTC)) == ("2026-03-08", floor_day2)
    sources = dict(DailyUsage.objects.filter(account=account).values_list("day", "start_source"))
    assert {d.isoformat(): s for d, s in sources.items()} == {"2026-03-07": "observed", "2026-03-08": "observed"}
