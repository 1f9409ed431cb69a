"""The rule profiles inside the order engine, against the simulator: shrink to the headroom or skip
with the rule's name, day caps spent per firm day, news blackout, and the fan-out's copy rules."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from accounts.models import Account
from orders import batch
from orders.dispatch import dispatch_signal
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from orders.models import Order
from prop.models import DailyUsage, NewsEvent, Owner, RuleProfile, StrategyOwner
from signals.models import StrategyConfig
from tests.factories import make_account
from tests.orders.conftest import eurusd, eurusd_buy_signal, ledger_counts, orders_settings, sim, sim_accounts  # noqa: F401

pytestmark = pytest.mark.django_db

NO_BUFFER = dict(close_only_buffer_pct=D("0"), flatten_margin_pct=D("0"))


def order_of(signal, account) -> Order:
    return Order.objects.get(signal=signal, account=account)


def test_an_order_is_shrunk_to_the_daily_headroom_and_one_is_skipped(sim):
    """4 % of 10,000 over a 20-pip stop = 2 lots (400 at the stop). Daily limit 300 on the balance at
    the day's start (10,000): 300 of headroom → 1.50 lots (300 at the stop). An account already 299
    down has 1 of headroom: less than 0.01 lot's 2 at the stop → skipped ``daily_loss_limit``."""
    profile = RuleProfile.objects.create(name="shrink", firm="F", daily_loss_amount=D("300"), **NO_BUFFER)
    fits, tight = sim_accounts(sim, 2, risk_per_trade_pct=D("4"), rule_profile=profile)
    Account.objects.filter(pk=tight.pk).update(equity=D("9701"))  # the broker's last read: 299 down
    signal = eurusd_buy_signal()
    batch.place_signal_orders(signal.pk, [fits.pk, tight.pk])
    shrunk, skipped = order_of(signal, fits), order_of(signal, tight)
    assert shrunk.status == S.FILLED and shrunk.volume == D("1.50")
    assert skipped.status == S.SKIPPED and skipped.reason == "daily_loss_limit"
    assert "headroom" in skipped.last_error
    assert not Account.objects.get(pk=tight.pk).halted  # 1 of headroom left: not at the limit
    assert ledger_counts(sim, fits) == (1, 1) and ledger_counts(sim, tight) == (0, 0)
    usage = DailyUsage.objects.get(account=fits)
    assert (usage.lots, usage.orders, usage.start_balance, usage.start_source) == (D("1.50"), 1, D("10000"),
                                                                                  "rebuilt")


def test_max_loss_trailing_high_water_shrinks(sim):
    """Trailing maximum loss 1,000 from a high-water mark of 10,600 observed: floor 9,600, equity
    10,000 → 400 of headroom, no margin → 2 lots at 200 each."""
    from prop import state

    profile = RuleProfile.objects.create(name="trail", firm="F", daily_loss_amount=D("5000"),
                                         max_loss_mode="trailing", max_loss_amount=D("1000"), **NO_BUFFER)
    (acct,) = sim_accounts(sim, 1, risk_per_trade_pct=D("10"), rule_profile=profile, initial_balance=D("10000"))
    state.raise_high_water(acct.pk, D("10600"))
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.FILLED
    assert order_of(signal, acct).volume == D("2.00")


def test_lots_per_day_cap_shrinks_then_skips(sim):
    profile = RuleProfile.objects.create(name="lots", firm="F", max_lots_per_day=D("0.40"))
    (acct,) = sim_accounts(sim, 1, rule_profile=profile)
    first, second, third = eurusd_buy_signal(), eurusd_buy_signal(), eurusd_buy_signal()
    assert place_signal_order(acct.pk, first.pk) == S.FILLED  # 0.25
    assert place_signal_order(acct.pk, second.pk) == S.FILLED
    assert order_of(second, acct).volume == D("0.15")  # 0.40 − 0.25
    assert place_signal_order(acct.pk, third.pk) == S.SKIPPED
    assert order_of(third, acct).reason == "daily_lots_cap"
    assert DailyUsage.objects.get(account=acct).lots == D("0.40")


def test_news_blackout_on_funded_accounts_only(sim):
    profile = RuleProfile.objects.create(name="news", firm="F", news_scope="funded", news_before_s=300,
                                         news_after_s=300, news_min_impact="high")
    funded, evaluation = sim_accounts(sim, 2, rule_profile=profile)
    Account.objects.filter(pk=funded.pk).update(program_phase="funded")
    Account.objects.filter(pk=evaluation.pk).update(program_phase="evaluation")
    NewsEvent.objects.create(at=timezone.now() + timedelta(seconds=120), currency="USD", impact="high",
                             title="FOMC statement")
    signal = eurusd_buy_signal()
    batch.place_signal_orders(signal.pk, [funded.pk, evaluation.pk])
    blocked = order_of(signal, funded)
    assert blocked.status == S.SKIPPED and blocked.reason == "news_blackout" and "FOMC" in blocked.last_error
    assert order_of(signal, evaluation).status == S.FILLED


def test_at_the_limit_the_pre_trade_check_halts_with_the_firm_rule_cause(sim):
    profile = RuleProfile.objects.create(name="limit", firm="F", daily_loss_amount=D("300"), **NO_BUFFER)
    (acct,) = sim_accounts(sim, 1, rule_profile=profile)
    Account.objects.filter(pk=acct.pk).update(equity=D("9650"))
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.SKIPPED
    acct.refresh_from_db()
    assert acct.halted and acct.halt_cause == "firm_rule" and acct.halt_reason.startswith("firm rule: daily_loss_limit")


@pytest.mark.usefixtures("redis_client")
def test_fanout_leaves_out_accounts_whose_profile_forbids_copying(admin_client):
    """Owners listed [Bea, Al] by the strategy. Firm X forbids copying across owners and between
    evaluation accounts: at X only Bea's accounts trade, and of her evaluation accounts only the
    lowest id. An account on the default profile (no firm) is not grouped."""
    al, bea = Owner.objects.create(name="Al"), Owner.objects.create(name="Bea")
    x = RuleProfile.objects.create(name="X eval", firm="X", forbid_copy_across_owners=True,
                                   forbid_copy_between_evaluations=True)
    config = StrategyConfig.objects.create(name="volume-surge-scalper")
    StrategyOwner.objects.create(strategy=config, owner=bea, position=1)
    StrategyOwner.objects.create(strategy=config, owner=al, position=2)
    a1 = make_account(owner=al, rule_profile=x, program_phase="funded")
    b1 = make_account(owner=bea, rule_profile=x, program_phase="evaluation")
    b2 = make_account(owner=bea, rule_profile=x, program_phase="evaluation")
    b3 = make_account(owner=bea, rule_profile=x, program_phase="funded")
    c = make_account(owner=al)  # default profile
    signal = eurusd_buy_signal(symbol=eurusd())
    result = dispatch_signal(signal.pk)
    assert result["enqueued"] == 3
    skipped = dict(Order.objects.filter(signal=signal).values_list("account_id", "reason"))
    assert skipped == {a1.pk: "copy_across_owners", b2.pk: "copy_between_evaluations"}
    assert set(Order.objects.filter(signal=signal).values_list("status", flat=True)) == {S.SKIPPED}
    # a second dispatch of the signal (redelivery) adds nothing
    from orders.dispatch import fanout

    assert fanout.apply_copy_rules(signal.pk, signal.symbol_id, [a1.pk, b1.pk, b2.pk, b3.pk, c.pk]) == [
        b1.pk, b3.pk, c.pk]
    assert Order.objects.filter(signal=signal).count() == 2
    # the admin shows why
    page = admin_client.get(f"/admin/orders/order/{Order.objects.get(account=a1).pk}/change/")
    assert page.status_code == 200 and b"forbids copying across owners" in page.content
