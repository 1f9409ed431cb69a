"""Operator modifications (orders/modify.py) against the simulator over real sockets: an SL/TP edit
and a partial close reach the broker and the database, each counts against the firm day's
modification cap, the N+1th is refused with the rule's name (also after a restart, from another
process), a partial close whose answer is lost is read back, never sent twice, and an SL edit that
widens the stop beyond the account's loss headroom is refused unsent and uncounted."""

import os
import subprocess
import sys
from decimal import Decimal as D

import pytest
from django.db import connection

from accounts.models import AuditLog
from orders import broker, modify
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from orders.models import Order, Position, Trade
from prop.models import DailyUsage, RuleProfile
from tests.orders.conftest import eurusd_buy_signal, orders_settings, sim, sim_accounts  # noqa: F401

pytestmark = pytest.mark.django_db


def open_position(sim, **account_kw):
    """One 0.25-lot EURUSD BUY (entry 1.10008, SL 1.09800, TP 1.10400) opened through the engine."""
    (acct,) = sim_accounts(sim, 1, **account_kw)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FILLED
    position = Position.objects.get(account=acct, status=Position.Status.OPEN)
    assert (position.volume, position.stop_loss, position.take_profit) == (D("0.25"), D("1.09800"), D("1.10400"))
    return acct, position


def at_broker(acct, position):
    return next(p for p in broker.client_for(acct).open_positions() if p.id == position.broker_position_id)


def requests_to(sim, acct, tail: str) -> int:
    return sum(1 for r in sim.control.ledger(acct.system_uuid)["requests"] if str(r.get("path", "")).endswith(tail))


def test_sl_tp_edit_reaches_the_broker_rounded_to_the_tick_and_is_counted(sim):
    profile = RuleProfile.objects.create(name="mods", firm="F", max_modifications_per_day=5)
    acct, position = open_position(sim, rule_profile=profile)
    # a BUY's stop rounds UP to the tick (less loss than asked), the target to the nearest tick
    order = modify.request_edit(position.pk, stop_loss="1.098504", take_profit="1.104996", actor="tester")
    assert (order.stop_loss, order.take_profit) == (D("1.09851"), D("1.10500"))
    assert modify.execute(order.pk) == S.FILLED
    live = at_broker(acct, position)
    assert (live.stop_loss, live.take_profit) == (D("1.09851"), D("1.10500"))
    position.refresh_from_db()
    assert (position.stop_loss, position.take_profit) == (D("1.09851"), D("1.10500"))
    assert DailyUsage.objects.get(account=acct).modifications == 1
    audit = AuditLog.objects.get(action=AuditLog.Action.MODIFY, account=acct)
    assert audit.actor == "tester" and audit.details["kind"] == "edit" and audit.details["order"] == order.pk


def test_partial_close_floors_to_the_lot_step_and_records_a_partial_trade(sim):
    acct, position = open_position(sim)
    order = modify.request_partial_close(position.pk, volume="0.109", actor="tester")
    assert order.volume == D("0.10")  # floored, never rounded up
    assert modify.execute(order.pk) == S.FILLED
    assert at_broker(acct, position).volume == D("0.15")
    position.refresh_from_db()
    assert position.volume == D("0.15") and position.status == Position.Status.OPEN
    trade = Trade.objects.get(position=position, kind=Trade.Kind.PARTIAL_CLOSE)
    assert trade.volume == D("0.10") and trade.order_id == order.pk
    # the default profile has no cap, but the modification is counted all the same
    assert DailyUsage.objects.get(account=acct).modifications == 1


def test_bad_partial_volumes_are_refused_before_anything_is_recorded(sim):
    _, position = open_position(sim)
    for volume, words in (("0.004", "below one lot step"), ("0.25", "whole position"),
                          ("0.30", "whole position"), ("-0.1", "must be positive")):
        with pytest.raises(modify.ModificationRefused, match=words):
            modify.request_partial_close(position.pk, volume=volume, actor="tester")
    assert not Order.objects.filter(position=position, purpose=Order.Purpose.PARTIAL).exists()


def test_removing_the_stop_is_refused_under_loss_rules(sim):
    profile = RuleProfile.objects.create(name="loss", firm="F", daily_loss_amount=D("300"))
    _, position = open_position(sim, rule_profile=profile)
    with pytest.raises(modify.ModificationRefused, match="no_stop_loss"):
        modify.request_edit(position.pk, stop_loss=None, take_profit="1.1040", actor="t")
    assert not Order.objects.filter(position=position, purpose=Order.Purpose.EDIT).exists()


def test_the_cap_refuses_the_n_plus_first_modification_with_the_rules_name(sim):
    profile = RuleProfile.objects.create(name="two mods", firm="F", max_modifications_per_day=2)
    acct, position = open_position(sim, rule_profile=profile)
    first = modify.request_edit(position.pk, stop_loss="1.0982", take_profit="1.1040", actor="t")
    assert modify.execute(first.pk) == S.FILLED
    second = modify.request_partial_close(position.pk, volume="0.05", actor="t")
    assert modify.execute(second.pk) == S.FILLED
    third = modify.request_edit(position.pk, stop_loss="1.0984", take_profit="1.1040", actor="t")
    assert third.status == S.SKIPPED and third.reason == "daily_modifications_cap"
    assert "allows 2 modification" in third.last_error
    assert modify.execute(third.pk) == S.SKIPPED  # a delivery of the refused row sends nothing
    assert requests_to(sim, acct, "/position/edit") == 1
    assert requests_to(sim, acct, "/position/close-partially") == 1
    assert at_broker(acct, position).stop_loss == D("1.09820")
    assert DailyUsage.objects.get(account=acct).modifications == 2


def test_the_gate_under_the_lock_refuses_what_the_early_check_let_through(sim):
    """Two requests made while one modification was left: both pass the early read, the
    compare-and-set in execute() lets exactly one through."""
    profile = RuleProfile.objects.create(name="one mod", firm="F", max_modifications_per_day=1)
    acct, position = open_position(sim, rule_profile=profile)
    a = modify.request_edit(position.pk, stop_loss="1.0982", take_profit=None, actor="t")
    b = modify.request_edit(position.pk, stop_loss="1.0983", take_profit=None, actor="t")
    assert (a.status, b.status) == (S.NEW, S.NEW)
    assert modify.execute(a.pk) == S.FILLED
    assert modify.execute(b.pk) == S.SKIPPED
    assert Order.objects.get(pk=b.pk).reason == "daily_modifications_cap"
    assert requests_to(sim, acct, "/position/edit") == 1


def test_a_partial_close_whose_answer_is_lost_is_read_back_not_sent_twice(sim):
    acct, position = open_position(sim)
    order = modify.request_partial_close(position.pk, volume="0.10", actor="t")
    sim.control.set_faults(p_lost=1.0, lost_mode="5xx", scope="write")
    try:
        assert modify.execute(order.pk) == S.FILLED
    finally:
        sim.control.set_faults(p_lost=0.0)
    assert requests_to(sim, acct, "/position/close-partially") == 1
    assert at_broker(acct, position).volume == D("0.15")
    position.refresh_from_db()
    assert position.volume == D("0.15")


def test_an_edit_whose_answer_is_lost_is_read_back_and_counted_once(sim):
    acct, position = open_position(sim)
    order = modify.request_edit(position.pk, stop_loss="1.0983", take_profit="1.1050", actor="t")
    sim.control.set_faults(p_lost=1.0, lost_mode="5xx", scope="write")
    try:
        assert modify.execute(order.pk) == S.FILLED  # the broker shows the requested levels
    finally:
        sim.control.set_faults(p_lost=0.0)
    assert requests_to(sim, acct, "/position/edit") == 1
    assert (at_broker(acct, position).stop_loss, Position.objects.get(pk=position.pk).stop_loss) == (
        D("1.09830"), D("1.09830"))
    assert DailyUsage.objects.get(account=acct).modifications == 1


def test_a_position_closed_meanwhile_is_not_modified(sim):
    acct, position = open_position(sim)
    order = modify.request_edit(position.pk, stop_loss="1.0982", take_profit=None, actor="t")
    sim.control.close_position(position.broker_position_id)  # the broker closed it (SL/TP, stop-out)
    assert modify.execute(order.pk) == S.CANCELLED
    assert Order.objects.get(pk=order.pk).reason == "not_needed"


@pytest.mark.usefixtures("redis_client")
def test_admin_action_shows_the_form_then_records_and_queues_the_edit(sim, admin_client):
    profile = RuleProfile.objects.create(name="admin mods", firm="F", max_modifications_per_day=3)
    acct, position = open_position(sim, rule_profile=profile)
    url = "/admin/orders/position/"
    page = admin_client.post(url, {"action": "modify_position", "_selected_action": [position.pk]})
    assert page.status_code == 200 and b"3 left today" in page.content
    done = admin_client.post(url, {"action": "modify_position", "_selected_action": [position.pk], "apply": "1",
                                   "kind": "edit", "stop_loss": "1.09830", "take_profit": ""}, follow=True)
    assert done.status_code == 200
    order = Order.objects.get(position=position, purpose=Order.Purpose.EDIT)
    assert order.status == S.NEW and order.stop_loss == D("1.09830") and order.take_profit is None
    assert AuditLog.objects.filter(action=AuditLog.Action.MODIFY, account=acct, actor="admin").exists()
    assert modify.execute(order.pk) == S.FILLED  # what the worker runs for the queued message
    assert at_broker(acct, position).take_profit in (None, D("0"))


@pytest.mark.django_db(transaction=True)
def test_the_cap_survives_a_restart(sim):
    """One modification left, spent here; a separate process (a restarted worker, via manage.py)
    finds the day's count in PostgreSQL and refuses the next one with the rule's name."""
    profile = RuleProfile.objects.create(name="restart mods", firm="F", max_modifications_per_day=1)
    acct, position = open_position(sim, rule_profile=profile)
    first = modify.request_edit(position.pk, stop_loss="1.0982", take_profit="1.1040", actor="t")
    assert modify.execute(first.pk) == S.FILLED
    db = connection.settings_dict["NAME"]
    env = dict(os.environ, DB_NAME=db, DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}")
    out = subprocess.run([sys.executable, "manage.py", "modify_position", str(position.pk), "--sl", "1.0985"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr[-2000:]
    assert "daily_modifications_cap" in out.stderr
    assert requests_to(sim, acct, "/position/edit") == 1
    assert DailyUsage.objects.get(account=acct).modifications == 1


def test_a_widening_edit_beyond_the_loss_headroom_is_refused_before_sending_and_takes_no_modification(sim):
    """Daily loss 300 on a day start of 10,000 (floor 9,700), flatten margin 5 % = 15: 285 of room
    for the position's worst case (0.25 lots from 1.10008, no other position). A stop at 1.08700
    could lose 0.01308 × 25,000 = 327 (more from any live price below the entry): refused with the
    rule's name; a stop at 1.09600 (102) fits and goes out."""
    profile = RuleProfile.objects.create(name="loss 300", firm="F", daily_loss_amount=D("300"),
                                         max_modifications_per_day=5)
    acct, position = open_position(sim, rule_profile=profile)
    wide = modify.request_edit(position.pk, stop_loss="1.0870", take_profit="1.1040", actor="t")
    assert wide.status == S.NEW
    assert modify.execute(wide.pk) == S.SKIPPED
    wide.refresh_from_db()
    assert wide.reason == "daily_loss_limit" and "exceeds" in wide.last_error
    assert requests_to(sim, acct, "/position/edit") == 0
    assert at_broker(acct, position).stop_loss == position.stop_loss == D("1.09800")
    assert DailyUsage.objects.get(account=acct).modifications == 0
    fits = modify.request_edit(position.pk, stop_loss="1.0960", take_profit="1.1040", actor="t")
    assert modify.execute(fits.pk) == S.FILLED
    assert at_broker(acct, position).stop_loss == D("1.09600")
    assert DailyUsage.objects.get(account=acct).modifications == 1


def test_a_tightening_edit_passes_at_the_limit_where_any_widening_is_refused(sim):
    """The day started at 10,290 (losses earlier today): floor 9,990, live equity 10,000 → 10 of
    headroom, inside the flatten margin of 15. Moving the stop towards the price still goes out;
    moving it one tick away does not."""
    profile = RuleProfile.objects.create(name="at the limit", firm="F", daily_loss_amount=D("300"))
    acct, position = open_position(sim, rule_profile=profile)
    DailyUsage.objects.filter(account=acct).update(start_balance=D("10290"), start_equity=D("10290"),
                                                   start_source=DailyUsage.Source.OBSERVED)
    tighter = modify.request_edit(position.pk, stop_loss="1.0990", take_profit="1.1040", actor="t")
    assert modify.execute(tighter.pk) == S.FILLED
    assert at_broker(acct, position).stop_loss == D("1.09900")
    wider = modify.request_edit(position.pk, stop_loss="1.09899", take_profit="1.1040", actor="t")
    assert modify.execute(wider.pk) == S.SKIPPED
    assert Order.objects.get(pk=wider.pk).reason == "daily_loss_limit"
    assert requests_to(sim, acct, "/position/edit") == 1
    assert DailyUsage.objects.get(account=acct).modifications == 1
