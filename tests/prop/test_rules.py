"""prop.rules against hand-computed cases: firm days across DST, each daily-loss basis, static vs
trailing maximum loss, shrink vs skip, caps, an SL edit's worst case, the guard's thresholds, sessions and news windows."""

from datetime import UTC, datetime, time
from decimal import Decimal as D

import pytest

from prop.rules import (
    Basis,
    Caps,
    EntryContext,
    Floors,
    GuardAction,
    LossRules,
    MaxLossMode,
    NewsWindow,
    Rule,
    Session,
    Usage,
    blackout_hit,
    check_entry,
    check_stop_edit,
    daily_reference,
    firm_day,
    floors,
    guard_action,
    headrooms,
    live_equity,
    max_loss_floor,
    may_modify,
    raise_high_water,
    resolve_amount,
    session_block,
    stop_widens,
    weekend_flatten_due,
)


def utc(*a):
    return datetime(*a, tzinfo=UTC)


# --- firm days --------------------------------------------------------------------------------------
class TestFirmDay:
    def test_new_york_17h_in_winter_is_22h_utc(self):
        d = firm_day(utc(2026, 1, 14, 21, 59), time(17), "America/New_York")
        assert d.day.isoformat() == "2026-01-13"
        assert d.start == utc(2026, 1, 13, 22) and d.end == utc(2026, 1, 14, 22)
        assert firm_day(utc(2026, 1, 14, 22, 0), time(17), "America/New_York").day.isoformat() == "2026-01-14"

    def test_dst_start_day_is_23_hours_and_moves_the_utc_boundary(self):
        # US DST starts Sunday 2026-03-08 02:00 local. The firm day starting Sat 03-07 17:00 EST (22:00 UTC)
        # ends Sun 03-08 17:00 EDT (21:00 UTC): 23 hours.
        d = firm_day(utc(2026, 3, 8, 12), time(17), "America/New_York")
        assert d.day.isoformat() == "2026-03-07"
        assert d.start == utc(2026, 3, 7, 22) and d.end == utc(2026, 3, 8, 21)
        assert d.hours == 23
        # 21:30 UTC on the 8th is already the next firm day (it would not be with a fixed 22:00 UTC)
        assert firm_day(utc(2026, 3, 8, 21, 30), time(17), "America/New_York").day.isoformat() == "2026-03-08"

    def test_dst_end_day_is_25_hours_in_prague(self):
        # EU DST ends Sunday 2026-10-25 03:00 CEST → 02:00 CET. Midnight Prague: 22:00 UTC before, 23:00 after.
        d = firm_day(utc(2026, 10, 25, 12), time(0), "Europe/Prague")
        assert d.start == utc(2026, 10, 24, 22) and d.end == utc(2026, 10, 25, 23)
        assert d.hours == 25

    def test_utc_midnight_default(self):
        d = firm_day(utc(2026, 6, 1, 0, 0), time(0), "UTC")
        assert d.start == utc(2026, 6, 1) and d.end == utc(2026, 6, 2)

    def test_naive_time_refused(self):
        with pytest.raises(ValueError):
            firm_day(datetime(2026, 1, 1), time(0), "UTC")


# --- daily loss per basis across a reset with a DST change --------------------------------------------
class TestDailyBasis:
    """An account with initial balance 100,000, daily limit 5 % of initial = 5,000, firm day reset at
    17:00 New York across the DST start (snapshot at Sat 03-07 22:00 UTC, next at Sun 03-08 21:00 UTC).

    Day-start snapshot (03-07 22:00 UTC): balance 101,000, equity 102,500 (a winner still open).
    Next day's snapshot (03-08 21:00 UTC): balance 99,000, equity 98,200.
    """

    limit = resolve_amount(D("5"), None, D("100000"))
    day1 = dict(day_balance=D("101000"), day_equity=D("102500"), initial_balance=D("100000"))
    day2 = dict(day_balance=D("99000"), day_equity=D("98200"), initial_balance=D("100000"))

    def test_limit_is_five_percent_of_initial(self):
        assert self.limit == D("5000.00")

    @pytest.mark.parametrize("basis, floor1, floor2", [
        (Basis.BALANCE, D("96000"), D("94000")),
        (Basis.EQUITY, D("97500"), D("93200")),
        (Basis.HIGHER, D("97500"), D("94000")),
        (Basis.INITIAL, D("95000"), D("95000")),
    ])
    def test_floor_per_basis(self, basis, floor1, floor2):
        rules = LossRules(basis, self.limit)
        assert floors(rules, **self.day1, high_water=None).daily == floor1
        assert floors(rules, **self.day2, high_water=None).daily == floor2

    def test_which_snapshot_applies_follows_the_dst_shifted_boundary(self):
        # 21:30 UTC on 03-08 belongs to the day starting 03-08 (23-hour day before it): day2's snapshot.
        boundary = firm_day(utc(2026, 3, 8, 21, 30), time(17), "America/New_York")
        assert boundary.start == utc(2026, 3, 8, 21)
        # equity 97,000 at that time on the HIGHER basis: floor 94,000 → headroom 3,000
        rules = LossRules(Basis.HIGHER, self.limit)
        (h,) = headrooms(rules, floors(rules, **self.day2, high_water=None), D("97000"))
        assert h.rule == Rule.DAILY_LOSS and h.headroom == D("3000") and h.used_pct == D("40.0")

    def test_unknown_reference_is_none(self):
        assert daily_reference(Basis.HIGHER, day_balance=D("1"), day_equity=None, initial_balance=None) is None
        assert daily_reference(Basis.INITIAL, day_balance=None, day_equity=None, initial_balance=None) is None
        with pytest.raises(ValueError):
            daily_reference("weekly", day_balance=D("1"), day_equity=D("1"), initial_balance=D("1"))


# --- maximum loss -------------------------------------------------------------------------------------
class TestMaxLoss:
    def test_static_floor_ignores_the_high_water_mark(self):
        rules = LossRules(Basis.BALANCE, None, MaxLossMode.STATIC, D("10000"))
        assert max_loss_floor(rules, initial_balance=D("100000"), high_water=D("108000")) == D("90000")

    def test_trailing_floor_follows_the_mark(self):
        rules = LossRules(Basis.BALANCE, None, MaxLossMode.TRAILING, D("6000"))
        assert max_loss_floor(rules, initial_balance=D("100000"), high_water=None) == D("94000")
        assert max_loss_floor(rules, initial_balance=D("100000"), high_water=D("103500")) == D("97500")

    def test_trailing_stops_at_initial(self):
        rules = LossRules(Basis.BALANCE, None, MaxLossMode.TRAILING, D("6000"), trailing_stops_at_initial=True)
        assert max_loss_floor(rules, initial_balance=D("100000"), high_water=D("104000")) == D("98000")
        assert max_loss_floor(rules, initial_balance=D("100000"), high_water=D("109000")) == D("100000")

    def test_high_water_only_rises_on_observed_equity(self):
        hwm = None
        for observed in (D("100000"), D("101200"), D("99500"), D("101000")):
            hwm = raise_high_water(hwm, observed)
        assert hwm == D("101200")

    def test_static_vs_trailing_same_equity_path(self):
        # equity path 100k → 104k → 97k; limit 6k. Static floor 94k: 3k headroom; trailing 98k: breached.
        path = [D("100000"), D("104000"), D("97000")]
        hwm = None
        for e in path:
            hwm = raise_high_water(hwm, e)
        static = LossRules(Basis.BALANCE, None, MaxLossMode.STATIC, D("6000"))
        trailing = LossRules(Basis.BALANCE, None, MaxLossMode.TRAILING, D("6000"))
        (hs,) = headrooms(static, floors(static, day_balance=None, day_equity=None, initial_balance=D("100000"),
                                         high_water=hwm), path[-1])
        (ht,) = headrooms(trailing, floors(trailing, day_balance=None, day_equity=None,
                                           initial_balance=D("100000"), high_water=hwm), path[-1])
        assert hs.headroom == D("3000") and ht.headroom == D("-1000")
        assert guard_action(trailing, [ht]).action == GuardAction.FLATTEN
        assert guard_action(static, [hs]).action == GuardAction.OK


def test_live_equity_is_the_lower_figure():
    assert live_equity(D("10050"), D("10020")) == D("10020")
    assert live_equity(D("10050"), None) == D("10050")
    assert live_equity(None, None) is None


# --- the pre-trade check -------------------------------------------------------------------------------
def _ctx(equity, daily_floor=None, max_floor=None, **kw):
    return EntryContext(equity=D(equity), floors=Floors(daily_floor, max_floor), **kw)


RULES = LossRules(Basis.BALANCE, D("500"), close_only_buffer_pct=D("20"), flatten_margin_pct=D("5"))


class TestCheckEntry:
    """Daily limit 500 → buffer 100, flatten margin 25. EURUSD, stop 20 pips: 200 USD per lot."""

    kw = dict(loss_per_lot=D("200"), lot_step=D("0.01"), min_volume=D("0.01"))

    def test_fits(self):
        d = check_entry(RULES, Caps(), _ctx("10000", daily_floor=D("9500")), volume=D("1.00"), **self.kw)
        assert d.volume == D("1.00") and not d.rule

    def test_shrunk_to_fit(self):
        # equity 9,800, floor 9,500: headroom 300 − margin 25 − open risk 100 = 175 → 0.87 lot (174 USD)
        d = check_entry(RULES, Caps(), _ctx("9800", daily_floor=D("9500"), open_risk=D("100")), volume=D("1.00"),
                        **self.kw)
        assert d.volume == D("0.87") and d.rule == Rule.DAILY_LOSS and d.shrunk
        assert d.volume * D("200") + D("100") <= D("300") - D("25")

    def test_skipped_when_below_min_volume(self):
        # headroom 130 − 25 − 104 open risk = 1 → 0.005 lot < 0.01
        d = check_entry(RULES, Caps(), _ctx("9630", daily_floor=D("9500"), open_risk=D("104")), volume=D("1.00"),
                        **self.kw)
        assert not d.allowed and d.rule == Rule.DAILY_LOSS

    def test_close_only_inside_the_buffer(self):
        d = check_entry(RULES, Caps(), _ctx("9599", daily_floor=D("9500")), volume=D("0.01"), **self.kw)
        assert not d.allowed and d.rule == Rule.CLOSE_ONLY

    def test_max_loss_shrinks_more_than_daily(self):
        rules = LossRules(Basis.BALANCE, D("500"), MaxLossMode.STATIC, D("1000"), close_only_buffer_pct=D("0"),
                          flatten_margin_pct=D("0"))
        # daily floor 9,500 (headroom 500), max floor 9,900 (headroom 100) → 0.50 lot
        d = check_entry(rules, Caps(), _ctx("10000", daily_floor=D("9500"), max_floor=D("9900")), volume=D("2"),
                        **self.kw)
        assert d.volume == D("0.50") and d.rule == Rule.MAX_LOSS

    def test_no_stop_no_entry(self):
        d = check_entry(RULES, Caps(), _ctx("10000", daily_floor=D("9500")), volume=D("1"), loss_per_lot=None,
                        lot_step=D("0.01"), min_volume=D("0.01"))
        assert d.rule == Rule.NO_STOP_LOSS and not d.allowed

    def test_unknown_reference_no_entry(self):
        d = check_entry(RULES, Caps(), _ctx("10000"), volume=D("1"), **self.kw)
        assert d.rule == Rule.DAILY_LOSS and not d.allowed

    def test_daily_lots_cap_shrinks_then_skips(self):
        caps = Caps(lots_per_day=D("10"))
        ctx = _ctx("100000", daily_floor=D("95000"), usage=Usage(lots=D("9.7")))
        d = check_entry(RULES, caps, ctx, volume=D("1.00"), **self.kw)
        assert d.volume == D("0.30") and d.rule == Rule.DAILY_LOTS
        ctx = _ctx("100000", daily_floor=D("95000"), usage=Usage(lots=D("10")))
        assert check_entry(RULES, caps, ctx, volume=D("1.00"), **self.kw).rule == Rule.DAILY_LOTS

    def test_order_and_open_order_caps(self):
        ctx = _ctx("100000", daily_floor=D("95000"), usage=Usage(orders=5), open_orders=2)
        assert check_entry(RULES, Caps(orders_per_day=5), ctx, volume=D("1"), **self.kw).rule == Rule.DAILY_ORDERS
        assert check_entry(RULES, Caps(open_orders=2), ctx, volume=D("1"), **self.kw).rule == Rule.MAX_OPEN_ORDERS
        assert check_entry(RULES, Caps(orders_per_day=6, open_orders=3), ctx, volume=D("1"), **self.kw).allowed

    def test_modification_cap(self):
        assert may_modify(Caps(modifications_per_day=2000), Usage(modifications=1999)) == (True, "")
        assert may_modify(Caps(modifications_per_day=2000), Usage(modifications=2000)) == (
            False, Rule.DAILY_MODIFICATIONS)
        assert may_modify(Caps(), Usage(modifications=10 ** 6))[0]


class TestGuard:
    def test_thresholds(self):
        def act(equity):
            return guard_action(RULES, headrooms(RULES, Floors(D("9500"), None), D(equity)))

        assert act("9601").action == GuardAction.OK
        assert act("9600").action == GuardAction.CLOSE_ONLY
        assert act("9526").action == GuardAction.CLOSE_ONLY
        d = act("9525")
        assert d.action == GuardAction.FLATTEN and d.rule == Rule.DAILY_LOSS

    def test_default_profile_flattens_exactly_at_the_limit(self):
        rules = LossRules(Basis.BALANCE, D("500"), close_only_buffer_pct=D("0"), flatten_margin_pct=D("0"))
        fl = Floors(D("9500"), None)
        assert guard_action(rules, headrooms(rules, fl, D("9500.01"))).action == GuardAction.OK
        assert guard_action(rules, headrooms(rules, fl, D("9500"))).action == GuardAction.FLATTEN


# --- sessions and news ------------------------------------------------------------------------------------
def test_trading_hours_and_weekend():
    s = Session(tz="Europe/Prague", start=time(8), end=time(22), weekend_holding=False, friday_cutoff=time(21))
    assert session_block(s, utc(2026, 1, 14, 10)) == ""  # Wed 11:00 Prague
    assert session_block(s, utc(2026, 1, 14, 6)) == Rule.TRADING_HOURS  # 07:00 Prague
    assert session_block(s, utc(2026, 1, 16, 20, 30)) == Rule.WEEKEND  # Fri 21:30 Prague
    assert session_block(s, utc(2026, 1, 17, 12)) == Rule.WEEKEND  # Saturday
    assert weekend_flatten_due(s, utc(2026, 1, 16, 20, 0))  # Fri 21:00 Prague
    assert not weekend_flatten_due(s, utc(2026, 1, 16, 19, 59))
    overnight = Session(tz="UTC", start=time(22), end=time(6))
    assert session_block(overnight, utc(2026, 1, 14, 23)) == "" and session_block(overnight, utc(2026, 1, 14, 12))


def test_news_blackout_window():
    nfp = NewsWindow(utc(2026, 2, 6, 13, 30), "USD", "high", "Non-Farm Payrolls")
    cpi = NewsWindow(utc(2026, 2, 6, 10, 0), "EUR", "medium", "CPI flash")
    kw = dict(currencies={"EUR", "USD"}, before_s=120, after_s=120)
    assert blackout_hit([cpi, nfp], utc(2026, 2, 6, 13, 28), **kw) is nfp
    assert blackout_hit([cpi, nfp], utc(2026, 2, 6, 13, 32), **kw) is nfp
    assert blackout_hit([cpi, nfp], utc(2026, 2, 6, 13, 32, 1), **kw) is None
    assert blackout_hit([cpi, nfp], utc(2026, 2, 6, 10, 0), **kw) is None  # medium < high
    assert blackout_hit([cpi, nfp], utc(2026, 2, 6, 10, 0), **kw, min_impact="medium") is cpi
    assert blackout_hit([nfp], utc(2026, 2, 6, 13, 30), currencies={"EUR", "JPY"}, before_s=120, after_s=120) is None


@pytest.mark.parametrize(
    "realized, unrealized, breached",
    [
        ("-300", "-199.99", False),
        ("-300", "-200", True),  # reaching the limit halts
        ("-600", "0", True),
        ("200", "-650", False),  # a profit today offsets an open loss
        ("200", "-700", True),  # unrealized counts
        ("-700", "200", True),
        ("-700", "201", False),
    ],
)
def test_default_profile_is_the_old_daily_loss_limit(realized, unrealized, breached):
    """The tradeops default profile (balance at 00:00 UTC, the account's limit, no buffer, no margin)
    decides exactly what the old per-account check did: today's realized + unrealized loss reaching
    the limit halts (``breached``), anything less trades."""
    rules = LossRules(Basis.BALANCE, D("500"), close_only_buffer_pct=D("0"), flatten_margin_pct=D("0"))
    day_balance = D("10000")
    equity = day_balance + D(realized) + D(unrealized)
    fl = floors(rules, day_balance=day_balance, day_equity=day_balance, initial_balance=None, high_water=None)
    d = check_entry(rules, Caps(), EntryContext(equity=equity, floors=fl), volume=D("0.01"), loss_per_lot=D("1"),
                    lot_step=D("0.01"), min_volume=D("0.01"))
    assert d.allowed is not breached and d.breached is breached
    if breached:
        assert d.rule == Rule.DAILY_LOSS == "daily_loss_limit"


def test_default_profile_zero_limit_allows_no_loss_but_allows_profit():
    rules = LossRules(Basis.BALANCE, D("0"), close_only_buffer_pct=D("0"), flatten_margin_pct=D("0"))
    fl = Floors(D("10000"), None)
    kw = dict(volume=D("0.01"), loss_per_lot=D("0.0001"), lot_step=D("0.01"), min_volume=D("0.01"))
    assert check_entry(rules, Caps(), EntryContext(equity=D("10010"), floors=fl), **kw).allowed
    assert check_entry(rules, Caps(), EntryContext(equity=D("9999.99"), floors=fl), **kw).breached


def test_marks_convert_a_loss_as_sizing_does_at_the_exit_price():
    """One home for the conversion: the worst case at the stop is sizing's loss per lot (rate at
    the stop, 1 / stop on USDJPY for a USD account), and a mark at a price is booked at that price."""
    from decimal import Decimal as Dec

    from orders.policy import assemble_size
    from prop import marks

    spec = marks.Spec(Dec("100000"), "USD", "JPY")
    for entry, stop in ((Dec("150.000"), Dec("149.000")), (Dec("150.000"), Dec("151.000"))):
        per_lot = marks.loss_per_lot_at_stop(spec, "USD", entry=entry, stop=stop)
        assert per_lot == Dec("1.000") * Dec("100000") / stop
        side = "BUY" if stop < entry else "SELL"
        assert marks.pnl(side, Dec("1"), entry, stop, spec, "USD") == -per_lot
        # the volume sizing chose for a 1,000 budget loses at most that much at the stop, as priced here
        symbol = type("S", (), dict(quote_currency="JPY", base_currency="USD", contract_size=Dec("100000"),
                                    lot_step=Dec("0.01"), min_volume=Dec("0.01"), max_volume=Dec("100"),
                                    tick_size=Dec("0.001")))
        sized = assemble_size(equity=Dec("100000"), risk_pct=Dec("1"), account_currency="USD", symbol=symbol,
                              entry_price=entry, stop_loss=stop, take_profit=None)
        assert sized.volume * per_lot <= Dec("1000") < (sized.volume + Dec("0.01")) * per_lot


class TestStopEdit:
    """An SL edit's worst case against the loss headroom (check_stop_edit), by hand: daily limit 500
    on a day start of 10,000 → floor 9,500; flatten margin 5 % of 500 = 25."""

    DAILY = LossRules(basis=Basis.BALANCE, daily_limit=D("500"))
    FLOORS = Floors(D("9500"), None)

    def test_which_moves_widen(self):
        assert stop_widens("BUY", D("1.0980"), D("1.0970"))  # a long's stop moved down
        assert not stop_widens("BUY", D("1.0980"), D("1.0985"))  # up: tighter
        assert stop_widens("SELL", D("1.1020"), D("1.1030"))  # a short's stop moved up
        assert not stop_widens("SELL", D("1.1020"), D("1.1010"))
        assert not stop_widens("BUY", D("1.0980"), D("1.09800"))  # unchanged (a TP-only edit)
        assert not stop_widens("BUY", None, D("1.0900"))  # a stop where there was none
        assert stop_widens("sell", D("1.1020"), None)  # a stop removed

    def test_the_new_worst_case_must_fit_the_headroom_less_the_margin_and_the_open_risk(self):
        # live equity 9,800 → headroom 300; − margin 25 − other positions' risk 100 = 175 available
        def decide(new_risk):
            return check_stop_edit(self.DAILY, widens=True, equity=D("9800"), floors=self.FLOORS,
                                   new_risk=D(new_risk), other_risk=D("100"))

        assert decide("175").allowed
        refused = decide("175.01")
        assert (refused.allowed, refused.rule) == (False, Rule.DAILY_LOSS) == (False, "daily_loss_limit")
        assert refused.detail.startswith("worst case 175.01 at the new stop exceeds 175.00 available")
        assert "floor 9500" in refused.detail

    def test_the_maximum_loss_rule_binds_when_it_is_tighter(self):
        # static max loss 1,000 from an initial 10,000 → floor 9,000; a day start of 10,400 → daily
        # floor 9,900; live equity 10,050: daily headroom 150 (− 25 → 125), max headroom 1,050 (− 50)
        rules = LossRules(basis=Basis.BALANCE, daily_limit=D("500"), max_loss_mode=MaxLossMode.STATIC,
                          max_loss=D("1000"))
        fl = floors(rules, day_balance=D("10400"), day_equity=None, initial_balance=D("10000"), high_water=None)
        assert fl == Floors(D("9900"), D("9000"))
        ok = check_stop_edit(rules, widens=True, equity=D("10050"), floors=fl, new_risk=D("125"), other_risk=D("0"))
        assert ok.allowed
        no = check_stop_edit(rules, widens=True, equity=D("10050"), floors=fl, new_risk=D("126"), other_risk=D("0"))
        assert no.rule == Rule.DAILY_LOSS
        # without the daily rule, the max-loss rule: 1,050 − 50 − 990 open = 10 available
        only_max = LossRules(basis=Basis.BALANCE, daily_limit=None, max_loss_mode=MaxLossMode.STATIC,
                             max_loss=D("1000"))
        assert check_stop_edit(only_max, widens=True, equity=D("10050"), floors=fl, new_risk=D("10"),
                               other_risk=D("990")).allowed
        assert check_stop_edit(only_max, widens=True, equity=D("10050"), floors=fl, new_risk=D("10.5"),
                               other_risk=D("990")).rule == Rule.MAX_LOSS == "max_loss_limit"

    def test_a_tightening_edit_passes_even_past_the_limit(self):
        # live equity 9,490: below the floor, an unknown worst case — tightening still only lowers it
        assert check_stop_edit(self.DAILY, widens=False, equity=D("9490"), floors=self.FLOORS, new_risk=None,
                               other_risk=D("Infinity")).allowed

    def test_accounts_without_loss_rules_are_unaffected(self):
        none = LossRules(basis=Basis.BALANCE, daily_limit=None)
        assert check_stop_edit(none, widens=True, equity=None, floors=Floors(None, None), new_risk=None,
                               other_risk=D("0")).allowed

    def test_unknowns_refuse_a_widening_edit_never_guess(self):
        kw = dict(widens=True, floors=self.FLOORS, other_risk=D("0"))
        assert check_stop_edit(self.DAILY, equity=D("9800"), new_risk=None, **kw).rule == Rule.NO_STOP_LOSS
        assert check_stop_edit(self.DAILY, equity=D("9800"), new_risk=D("Infinity"), **kw).rule == Rule.NO_STOP_LOSS
        assert check_stop_edit(self.DAILY, equity=None, new_risk=D("1"), **kw).rule == Rule.NO_EQUITY
        assert check_stop_edit(self.DAILY, widens=True, equity=D("9800"), floors=Floors(None, None), new_risk=D("1"),
                               other_risk=D("0")).rule == Rule.DAILY_LOSS  # day start unknown
        assert check_stop_edit(LossRules(basis=Basis.BALANCE, daily_limit=None, unresolved=(Rule.MAX_LOSS,)),
                               equity=D("9800"), new_risk=D("1"), **kw).rule == Rule.MAX_LOSS
        # another position's unbounded risk leaves no room for a wider stop
        assert check_stop_edit(self.DAILY, widens=True, equity=D("9800"), floors=self.FLOORS, new_risk=D("1"),
                               other_risk=D("Infinity")).rule == Rule.DAILY_LOSS
