"""A backtest under a prop-firm rule profile (issue 14): the breaches it would have caused, with
prop's own pure rules, against hand-computed cases; enforcement like the live pre-trade check; the
profile by name from the CLI, shown in the admin and on the run's page."""

from __future__ import annotations

import io
from datetime import UTC, datetime, time
from decimal import Decimal as D

import pytest
from django.core.management import CommandError, call_command

from backtest.engine import AccountSpec, Engine, EngineConfig, SymbolSetup
from backtest.models import BacktestRun
from backtest.propcheck import PropMonitor, PropRules
from matchtrader.simulator.instruments import SPECS
from prop import rules as R
from prop.models import RuleProfile
from signals.strategy import ExitPlan, Side
from tests.backtest.test_fills_and_engine import SCRIPTED, T0, quotes

# a Friday evening in New York's winter time; the US changes to summer time on Sunday 2024-03-10
FRI = int(datetime(2024, 3, 8, 20, 0, tzinfo=UTC).timestamp() * 1000)


def rules(**kw) -> PropRules:
    base = dict(name="test firm", loss=R.LossRules(R.Basis.BALANCE, D("100"), R.MaxLossMode.STATIC, D("150")),
                caps=R.Caps(lots_per_day=D("0.5")), session=R.Session("America/New_York"),
                reset_time=time(17, 0), reset_tz="America/New_York", initial_balance=D("10000"))
    base.update(kw)
    return PropRules(**base)


def run(events, plans, prop_rules, enforce=False, bar_times=(FRI,), accounts=None):
    SCRIPTED.plan = plans
    accounts = accounts or [AccountSpec("A", D("10000"), risk_pct=D("1"))]
    monitor = PropMonitor([prop_rules] * len(accounts), [a.name for a in accounts], enforce)
    engine = Engine([SymbolSetup("EURUSD", SPECS["EURUSD"], strategy="test_scripted")], accounts, EngineConfig(),
                    prop=monitor, bar_times=list(bar_times))
    return engine.run(events), monitor


# the BUY of test_fills_and_engine: 1.00 lot opened at 1.10018, stopped out at the gap bid 1.09850
BUY = {T0 + 1000: (Side.BUY, ExitPlan(1.10008, 1.09908, 1.10208, 600, "ticks"))}
BUY_TICKS = [(0, 1.10000, 1.10008), (500, 1.10000, 1.10008), (1500, 1.10010, 1.10018), (2500, 1.09950, 1.09958),
             (3500, 1.09850, 1.09858)]


def test_report_only_lists_the_entry_cap_and_both_loss_floors_breached():
    res, monitor = run(quotes(*BUY_TICKS), BUY, rules())
    (t,) = res.trades
    assert (t.volume, t.net) == (D("1.00"), D("-171.50")), "report only: the trade is the unconstrained one"
    got = [(b.rule, b.value, b.limit, b.action, b.at_ms) for b in monitor.breaches]
    # entry: worst case (1.10018 - 1.09908) x 100,000 = 110.00 per lot; daily headroom 10,000 - 9,900 = 100,
    # minus the 5 % flatten margin = 95 -> 0.86 lot; max loss 150 - 7.5 = 142.5 -> 1.29; then 0.50 lots a day
    assert got[0] == ("daily_lots_cap", "1.00 lots", "0.50 lots allowed", "breach", FRI)
    # the stop-out: equity 10,000 - 171.50 = 9,828.50 is below the daily floor 9,900 and the static 9,850
    assert got[1:] == [("daily_loss_limit", "9828.50", "9900", "breach", FRI),
                       ("max_loss_limit", "9828.50", "9850", "breach", FRI)]
    assert monitor.summary()["counts"] == {"daily_lots_cap": 1, "daily_loss_limit": 1, "max_loss_limit": 1}


def test_enforced_the_entry_is_shrunk_like_the_live_pre_trade_check_and_nothing_is_breached():
    res, monitor = run(quotes(*BUY_TICKS), BUY, rules(), enforce=True)
    (t,) = res.trades
    # 0.50 lot: (1.09850 - 1.10018) x 0.50 x 100,000 = -84.00, commission 3.5 x 0.50 = -1.75
    assert (t.volume, t.profit, t.commission) == (D("0.50"), D("-84.00"), D("-1.75"))
    assert [(b.rule, b.action) for b in monitor.breaches] == [("daily_lots_cap", "shrunk")]
    assert res.equity["A"][-1][1] == D("9914.25")  # above both floors


def test_a_gap_through_the_stop_breaches_and_enforced_the_account_is_halted_for_the_day():
    # daily limit 150: the 0.50-lot cap is off, 1.00 lot fits (110 <= 150 - 7.5); but the gap through the
    # stop loses 171.50: equity 9,828.50 is below the floor 9,850 (a breach no pre-trade check can stop),
    # the guard flattens and halts the account for the firm day, the next entry is skipped
    plans = {**BUY, T0 + 4000: (Side.BUY, ExitPlan(1.0986, 1.0976, 1.1006, 600, "ticks"))}
    ticks = BUY_TICKS + [(4500, 1.09860, 1.09868), (5500, 1.09870, 1.09878)]
    res, monitor = run(quotes(*ticks), plans, rules(loss=R.LossRules(R.Basis.BALANCE, D("150")), caps=R.Caps()),
                       enforce=True)
    assert [t.volume for t in res.trades] == [D("1.00")]
    assert [(b.rule, b.action) for b in monitor.breaches] == [("daily_loss_limit", "breach"),
                                                             ("daily_loss_limit", "flattened"),
                                                             ("daily_loss_limit", "skipped")]
    assert ("1", "A", "daily_loss_limit") == (str(res.skips[0][0]), res.skips[0][1], res.skips[0][2])


def test_the_firm_day_resets_at_its_own_time_zone_across_the_dst_change():
    # bar 0: Sunday 2024-03-10 20:00 UTC = 16:00 EDT (the firm day began Saturday 17:00 EST = 22:00 UTC);
    # bar 1: 21:30 UTC = 17:30 EDT, in the day that began at 17:00 EDT = 21:00 UTC (a 23-hour day)
    sun = int(datetime(2024, 3, 10, 20, 0, tzinfo=UTC).timestamp() * 1000)
    events = [(e, 0) for e in quotes(*BUY_TICKS)] + [(e, 1) for e in quotes((6000, 1.0990, 1.09908))]
    res, monitor = run(events, BUY, rules(caps=R.Caps()), bar_times=(sun, sun + 90 * 60_000))
    st = monitor.state[0]
    assert st.day.start == datetime(2024, 3, 10, 21, 0, tzinfo=UTC)
    assert R.firm_day(datetime.fromtimestamp(sun / 1000, tz=UTC), time(17, 0), "America/New_York").hours == 23
    assert st.day_balance == D("9828.50"), "the new day's snapshot is the balance at the reset"
    # the entry's worst case (1.00 lot x 110 > 95 of headroom) and the floor on the day of the loss; none in
    # the new day: its floor is 9,828.50 - 100
    assert [(b.value, b.at_ms) for b in monitor.breaches if b.rule == "daily_loss_limit"] == [
        ("1.00 lots", sun), ("9828.50", sun)]
    assert R.floors(rules().loss, day_balance=st.day_balance, day_equity=st.day_equity, initial_balance=D("10000"),
                    high_water=st.high_water).daily == D("9728.50")


def test_trading_hours_min_hold_and_enforced_skips_are_named():
    plans = {T0 + 1000: (Side.SELL, ExitPlan(1.10000, 1.10100, 1.09800, 2, "ticks")),  # time stop 2 s
             T0 + 5000: (Side.BUY, ExitPlan(1.10008, 1.09908, 1.10208, 600, "ticks"))}
    ticks = [(0, 1.1, 1.10008), (1100, 1.1, 1.10008), (3100, 1.10002, 1.1001), (5100, 1.1, 1.10008),
             (6000, 1.1, 1.10008)]
    # 20:00 UTC = 15:00 in New York: inside 09:30-16:00; a 60 s minimum hold
    wide = R.LossRules(R.Basis.BALANCE, D("1000"))  # no loss rule in the way here
    inside = rules(loss=wide, caps=R.Caps(), session=R.Session("America/New_York", time(9, 30), time(16, 0)),
                   min_hold_s=60)
    res, monitor = run(quotes(*ticks), plans, inside)
    assert [(b.rule, b.value, b.limit) for b in monitor.breaches] == [("min_hold", "2 s", "60 s")]
    # 13:00 in New York: outside 14:00-16:00 -> both entries would have been outside the hours
    outside = rules(loss=wide, caps=R.Caps(), session=R.Session("America/New_York", time(14, 0), time(16, 0)))
    noon = int(datetime(2024, 3, 8, 18, 0, tzinfo=UTC).timestamp() * 1000)
    res, monitor = run(quotes(*ticks), plans, outside, bar_times=(noon,))
    assert [(b.rule, b.action) for b in monitor.breaches] == [("trading_hours", "breach")] * 2 and res.trades
    res, monitor = run(quotes(*ticks), plans, outside, enforce=True, bar_times=(noon,))
    assert not res.trades and [r for _, _, r in res.skips] == ["trading_hours"] * 2


@pytest.mark.django_db
def test_a_run_under_a_profile_by_name_reports_its_breaches(admin_client):
    RuleProfile.objects.create(name="tight test firm", daily_loss_amount=D("40"), max_loss_mode="static",
                               max_loss_amount=D("60"), max_orders_per_day=2, reset_time=time(17, 0),
                               reset_timezone="America/New_York")
    out = io.StringIO()
    call_command("backtest", "--max-bars", "700", "--param", "surge_min_ratio=2", "--prop-profile",
                 "tight test firm", "--name", "prop", stdout=out)
    run = BacktestRun.objects.get(name="prop")
    pr = run.summary["prop"]
    first = run.summary["per_seed"]["1"]["prop"]
    assert pr["profile"] == "tight test firm" and not pr["enforced"] and pr["breaches_per_seed"]["1"] == first["total"]
    assert first["total"] > 0 and first["breaches"][0]["at"].startswith("20")
    assert set(first["counts"]) <= {"daily_loss_limit", "max_loss_limit", "daily_orders_cap", "close_only"}
    assert "prop profile 'tight test firm' (report only)" in out.getvalue()
    assert b"Prop-firm profile tight test firm" in admin_client.get(
        f"/admin/backtest/backtestrun/{run.pk}/change/").content
    assert "Prop-firm profile tight test firm" in admin_client.get(f"/backtests/{run.pk}/").content.decode()
    with pytest.raises(CommandError, match="unknown prop rule profile 'nope'"):
        call_command("backtest", "--max-bars", "50", "--prop-profile", "nope", stdout=io.StringIO())
