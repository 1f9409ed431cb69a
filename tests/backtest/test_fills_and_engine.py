"""The shared fill model against hand-computed cases, and the engine's trade life cycle on a
scripted strategy (every number below is computed by hand in the comments)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from backtest.engine import AccountSpec, BacktestConfigError, Engine, EngineConfig, SymbolSetup
from marketdata.windows import MarketWindow
from matchtrader.events import QuoteEvent, TradeEvent
from matchtrader.simulator import fills
from matchtrader.simulator.instruments import SPECS
from signals.strategies import STRATEGIES, Strategy, register
from signals.strategy import Decision, ExitPlan, Reason, Side, StrategyParams


# --- the fill model -------------------------------------------------------------------------------
def test_market_orders_fill_at_the_far_side_worsened_by_slippage():
    slip = fills.slippage_price(2, 5)  # 2 points of 0.00001
    assert slip == D("0.00002")
    assert fills.market_fill("BUY", D("1.10000"), D("1.10008"), slip) == D("1.10010")
    assert fills.market_fill("SELL", D("1.10000"), D("1.10008"), slip) == D("1.09998")
    assert fills.close_fill("BUY", D("1.10000"), D("1.10008")) == D("1.10000")  # a BUY closes by selling at bid


def test_stops_trigger_on_the_closing_side_and_a_gap_fills_at_the_gap_price():
    # BUY, SL 1.09900, TP 1.10200: judged on the bid only
    assert fills.stop_trigger("BUY", D("1.09900"), D("1.10200"), D("1.09901"), D("1.09890")) is None  # ask below SL: no
    assert fills.stop_trigger("BUY", D("1.09900"), D("1.10200"), D("1.09900"), D("1.09908")) == ("sl", D("1.09900"))
    # a gap through the stop: filled at the gap bid 1.09850, 5 pips worse than the stop
    assert fills.stop_trigger("BUY", D("1.09900"), D("1.10200"), D("1.09850"), D("1.09858")) == ("sl", D("1.09850"))
    # SELL, TP 1.09800 judged on the ask: bid at 1.09795 is not enough while the ask is 1.09803
    assert fills.stop_trigger("SELL", D("1.10100"), D("1.09800"), D("1.09795"), D("1.09803")) is None
    assert fills.stop_trigger("SELL", D("1.10100"), D("1.09800"), D("1.09792"), D("1.09800")) == ("tp", D("1.09800"))
    # a gap up through a SELL's stop fills at the gap ask
    assert fills.stop_trigger("SELL", D("1.10100"), D("1.09800"), D("1.10300"), D("1.10308")) == ("sl", D("1.10308"))


def test_commission_and_partial_close_share():
    c = fills.open_commission(D("0.30"), D("3.5"))  # 3.5 x 0.30 = 1.05
    assert c == D("-1.05")
    assert fills.commission_share(c, D("0.10"), D("0.30")) == D("-0.35")
    assert fills.commission_share(c, D("0.30"), D("0.30")) == D("-1.05")
    # 0.30 lot EURUSD, +20 points: 0.00020 x 0.30 x 100000 = 6.00 USD
    assert fills.pnl_quote("BUY", D("1.10000"), D("1.10020"), D("0.30"), D("100000")) == D("6.00000")
    # USDJPY on a USD account: 3000 JPY / 150 = 20 USD
    assert fills.pnl_to_account(D("3000"), base="USD", quote="JPY", account_currency="USD",
                                close_price=D("150")) == D("20")
    assert fills.stops_problem("BUY", D("1.1"), D("1.2"), None) == "Stop loss 1.2 must be below 1.1"


# --- the engine on a scripted strategy ---------------------------------------------------------------
class Scripted(Strategy):
    """Signals at given analysis times with a fixed plan (test only)."""

    name = "test_scripted"
    params_type = StrategyParams
    plan: dict[int, tuple[Side, ExitPlan]] = {}

    def parse_params(self, overrides):
        return StrategyParams()

    def evaluate(self, window: MarketWindow, params, now_ms, last_signal_ms, tick_size):
        if now_ms in self.plan:
            side, plan = self.plan[now_ms]
            return Decision(window.symbol, Reason.SIGNAL, {}, side=side, strength=0.5, exit=plan,
                            tick_ts_ms=window.last_tick_ms)
        return Decision(window.symbol, Reason.NO_SURGE, {}, tick_ts_ms=window.last_tick_ms)

    def prescreen(self, params):
        class Never:
            def on_tick(self, *a):
                return False
        return Never()


SCRIPTED = STRATEGIES.get("test_scripted") or register(Scripted())
T0 = 1_700_000_000_000  # a whole second


def quotes(*rows):
    return [QuoteEvent("EURUSD", bid, ask, T0 + ms, T0 + ms) for ms, bid, ask in rows]


def run(events, plans, accounts=(AccountSpec("A", D("10000"), risk_pct=D("1")),), **cfg):
    SCRIPTED.plan = plans
    engine = Engine([SymbolSetup("EURUSD", SPECS["EURUSD"], strategy="test_scripted")], list(accounts),
                    EngineConfig(**cfg))
    return engine.run(events)


def test_a_buy_fills_at_the_next_ask_and_a_gap_through_the_stop_fills_at_the_gap_bid():
    # signal at the beat T0+1000 (entry ref 1.10008, SL 1.09908 = 10 pips, TP 1.10208)
    plans = {T0 + 1000: (Side.BUY, ExitPlan(1.10008, 1.09908, 1.10208, 600, "ticks"))}
    events = quotes((0, 1.10000, 1.10008), (500, 1.10000, 1.10008),
                    (1500, 1.10010, 1.10018),  # first quote after the signal: BUY fills at ask 1.10018
                    (2500, 1.09950, 1.09958),  # above the stop
                    (3500, 1.09850, 1.09858))  # gap through 1.09908: closes at bid 1.09850
    res = run(events, plans)
    assert [s.side for s in res.signals] == ["BUY"] and res.signals[0].now_ms == T0 + 1000
    (t,) = res.trades
    # size: risk 1 % of 10,000 = 100 USD over 0.00100 x 100,000 = 100 USD per lot -> 1.00 lot
    assert t.volume == D("1.00")
    assert (t.open_price, t.close_price, t.reason) == (D("1.10018"), D("1.09850"), "sl")
    # (1.09850 - 1.10018) x 1.00 x 100,000 = -168.00; commission 3.5 x 1.00 = -3.50
    assert (t.profit, t.commission, t.net) == (D("-168.00"), D("-3.50"), D("-171.50"))
    assert t.pips == D("-16.8")
    assert res.equity["A"][-1][1] == D("10000") - D("171.50")


def test_time_stop_opposite_signal_and_the_named_skips():
    plans = {
        T0 + 1000: (Side.SELL, ExitPlan(1.10000, 1.10100, 1.09800, 2, "ticks")),  # time stop 2 s
        T0 + 5000: (Side.SELL, ExitPlan(1.10000, 1.10100, 1.09800, 600, "ticks")),
        T0 + 7000: (Side.BUY, ExitPlan(1.10008, 1.09908, 1.10208, 600, "ticks")),  # closes the SELL
    }
    events = quotes((0, 1.1, 1.10008), (1100, 1.1, 1.10008), (2000, 1.1, 1.10008), (3100, 1.10002, 1.1001),
                    (5100, 1.1, 1.10008), (6000, 1.1, 1.10008), (7100, 1.10004, 1.10012), (8000, 1.1, 1.10008))
    poor = AccountSpec("poor", D("1"), risk_pct=D("0.1"))  # 0.001 USD of risk: below the minimum lot
    res = run(events, plans, accounts=(AccountSpec("A", D("10000")), poor))
    a_trades = [t for t in res.trades if t.account == "A"]
    assert [(t.side, t.reason) for t in a_trades] == [("SELL", "time"), ("SELL", "opposite"), ("BUY", "end")]
    # the time stop closes at the first quote at/after open + 2 s: opened 1100, closed 3100 at the ask
    assert (a_trades[0].open_ms - T0, a_trades[0].close_ms - T0, a_trades[0].close_price) == (1100, 3100, D("1.1001"))
    # the opposite signal at 7000 closes at the ask of the last quote before it (6000)
    assert a_trades[1].close_ms - T0 == 6000
    # every (signal, account) pair has an outcome: 3 trades for A, 3 named skips for "poor"
    assert sorted(r for _, acct, r in res.skips if acct == "poor") == ["below_min_volume"] * 3


def test_bad_run_definitions_are_refused_with_a_clear_message():
    with pytest.raises(BacktestConfigError, match="equity must be > 0"):
        AccountSpec("X", D("0"))
    with pytest.raises(BacktestConfigError, match="risk_pct"):
        AccountSpec("X", D("100"), risk_pct=D("NaN"))
    with pytest.raises(ValueError, match="surge_min_ratio"):
        Engine([SymbolSetup("EURUSD", SPECS["EURUSD"], params={"surge_min_ratio": 0.5})], [AccountSpec()])
    with pytest.raises(ValueError, match="unknown strategy"):
        Engine([SymbolSetup("EURUSD", SPECS["EURUSD"], strategy="nope")], [AccountSpec()])
    with pytest.raises(BacktestConfigError, match="unique"):
        Engine([SymbolSetup("EURUSD", SPECS["EURUSD"])], [AccountSpec("A"), AccountSpec("A")])


def test_trade_prints_do_not_move_the_quote_fills():
    plans = {T0 + 1000: (Side.BUY, ExitPlan(1.10008, 1.09908, 1.10208, 600, "ticks"))}
    events = quotes((0, 1.1, 1.10008)) + [TradeEvent("EURUSD", 1.2, 1.0, 1, T0 + 1200, T0 + 1200)] + quotes(
        (1300, 1.10001, 1.10009))
    res = run(events, plans)
    assert res.trades[0].open_price == D("1.10009")
