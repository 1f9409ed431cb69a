"""The breach guard against the simulator over real sockets, prices moved through its control API.

Account: 10,000 USD, profile daily loss 500 on the balance (floor 9,500), close-only buffer 20 %
(100 of headroom), flatten margin 10 % (50), a minimum hold of one hour (the loss rule must win
over it). Positions: 0.25 lot EURUSD from a signal (stop 20 pips away) and 4 lots opened at the
broker without a stop (what a gap or a late stop leaves behind): 42.5 USD per pip. The bid walks
down in half-pip steps (≈21 USD, smaller than the buffer and the margin); after each step the
guard runs. The account must go close-only, then be flattened and halted BEFORE the simulator's
own equity crosses 9,500.
"""

from decimal import Decimal as D

import pytest

from accounts.models import Account, AuditLog
from orders import broker
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from orders.models import Position
from prop import guard
from prop.models import RuleProfile, RuleState
from prop.rules import GuardAction, Rule
from tests.orders.conftest import EURUSD_BID, eurusd, eurusd_buy_signal, orders_settings, sim, sim_accounts  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FLOOR = D("9500")


@pytest.fixture
def profile():
    return RuleProfile.objects.create(
        name="guard test", firm="Sim Firm", daily_loss_basis="balance", daily_loss_amount=D("500"),
        reset_time="00:00", reset_timezone="UTC", close_only_buffer_pct=D("20"), flatten_margin_pct=D("10"),
        min_hold_seconds=3600)


def test_close_only_then_flatten_and_halt_before_the_limit(sim, profile):
    (acct,) = sim_accounts(sim, 1, rule_profile=profile)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    client = broker.client_for(acct)
    client.open_position("EURUSD", "BUY", D("4"))  # no stop
    assert len(client.open_positions()) == 2

    seen = []
    bid = D(str(EURUSD_BID))
    for _ in range(60):
        result = guard.check_account(acct.pk)
        seen.append(result.action)
        if result.action == GuardAction.FLATTEN:
            break
        assert client.balance().equity > FLOOR  # never crossed while positions were open
        bid -= D("0.00005")  # half a pip: ~21 USD, smaller than the 100 buffer and the 50 margin
        sim.control.market(paused=True, prices={"EURUSD": float(bid)})
    assert GuardAction.CLOSE_ONLY in seen and seen[-1] == GuardAction.FLATTEN
    assert seen.index(GuardAction.CLOSE_ONLY) < len(seen) - 1

    after = client.balance()
    assert client.open_positions() == []
    assert after.equity > FLOOR and after.balance > FLOOR, after
    acct.refresh_from_db()
    assert acct.halted and acct.halt_reason.startswith(f"firm rule: {Rule.DAILY_LOSS}")
    assert AuditLog.objects.filter(account=acct, action=AuditLog.Action.FIRM_RULE).count() == 1
    assert AuditLog.objects.filter(account=acct, action=AuditLog.Action.CLOSE_ONLY).exists()
    pos = Position.objects.get(account=acct)  # closed despite the one-hour minimum hold
    assert pos.status == Position.Status.CLOSED and pos.close_reason == "firm_rule"
    rs = RuleState.objects.get(account=acct)
    assert rs.close_only and Rule.DAILY_LOSS in rs.headroom

    # a second run finds nothing open and does not halt or audit twice
    again = guard.check_account(acct.pk)
    assert again.closed == 0
    assert AuditLog.objects.filter(account=acct, action=AuditLog.Action.FIRM_RULE).count() == 1
    assert Account.objects.get(pk=acct.pk).halted


def test_close_only_lifts_when_headroom_returns(sim, profile):
    (acct,) = sim_accounts(sim, 1, rule_profile=profile)
    client = broker.client_for(acct)
    client.open_position("EURUSD", "BUY", D("4"))
    bid = D(str(EURUSD_BID))
    # 4 lots = 40 USD/pip; spread 0.8 pip + commission 14 → equity ≈ 9,954. Down 10 pips → ≈ 9,554: buffer.
    sim.control.market(paused=True, prices={"EURUSD": float(bid - D("0.0010"))})
    assert guard.check_account(acct.pk).action == GuardAction.CLOSE_ONLY
    assert RuleState.objects.get(account=acct).close_only
    sim.control.market(paused=True, prices={"EURUSD": float(bid)})
    assert guard.check_account(acct.pk).action == GuardAction.OK
    assert not RuleState.objects.get(account=acct).close_only
    assert AuditLog.objects.filter(account=acct, action=AuditLog.Action.CLOSE_ONLY_LIFTED).count() == 1
    assert not Account.objects.get(pk=acct.pk).halted
    for p in client.open_positions():
        client.close_position(p.id, p.symbol, p.side, p.volume)


def test_flatten_before_news_closes_positions_on_the_events_currency(sim):
    from datetime import timedelta

    from django.utils import timezone

    from prop.models import NewsEvent

    profile = RuleProfile.objects.create(name="news flatten", firm="N", news_scope="all", news_before_s=300,
                                         news_after_s=60, news_flatten_before=True)
    (acct,) = sim_accounts(sim, 1, rule_profile=profile)
    eurusd()  # the symbol's currencies (EUR, USD) come from our Symbol table
    client = broker.client_for(acct)
    client.open_position("EURUSD", "BUY", D("0.10"))
    assert guard.check_account(acct.pk).closed == 0  # no event listed
    NewsEvent.objects.create(at=timezone.now() + timedelta(seconds=200), currency="USD", impact="high",
                             title="CPI")
    assert guard.check_account(acct.pk).closed == 1
    assert client.open_positions() == []
    assert AuditLog.objects.filter(account=acct, action=AuditLog.Action.CLOSE_ALL,
                                   details__rule="news_blackout").exists()
    assert not Account.objects.get(pk=acct.pk).halted
