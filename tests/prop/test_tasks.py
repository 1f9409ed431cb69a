"""The guard's Celery tasks: pinned names and options, and the periodic path through a real worker
(Redis, PostgreSQL and the simulator over sockets) flattening and halting an account."""

from decimal import Decimal as D

import pytest
from celery.contrib.testing.worker import start_worker
from django_celery_beat.models import PeriodicTask

from accounts.models import Account, AuditLog
from orders import broker
from prop import tasks
from prop.guard import sync_and_guard
from prop.models import RuleProfile, RuleState
from tests.orders.conftest import EURUSD_BID, orders_settings, sim, sim_accounts  # noqa: F401
from tests.waiting import wait_for
from tradeops.celery import app


def test_task_names_and_options_are_pinned():
    assert {n for n in app.tasks if n.startswith("prop.")} == {"prop.guard_accounts", "prop.guard_account"}
    assert tasks.guard_accounts.expires == tasks.GUARD_EVERY
    for t in (tasks.guard_accounts, tasks.guard_account):
        assert t.acks_late and t.reject_on_worker_lost and t.queue == "orders"


@pytest.mark.django_db
def test_beat_entry_exists(seeded):
    entry = PeriodicTask.objects.get(task="prop.guard_accounts")
    assert entry.enabled and entry.queue == "orders" and entry.expire_seconds == tasks.GUARD_EVERY
    assert entry.interval.every == tasks.GUARD_EVERY


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_periodic_guard_on_a_real_worker_flattens_and_halts(sim, redis_client):
    profile = RuleProfile.objects.create(name="worker guard", firm="W", daily_loss_amount=D("300"),
                                         close_only_buffer_pct=D("20"), flatten_margin_pct=D("10"))
    (acct,) = sim_accounts(sim, 1, rule_profile=profile)
    client = broker.client_for(acct)
    client.open_position("EURUSD", "BUY", D("5"))  # 50 USD a pip, no stop, opened outside tradeops
    sync_and_guard(acct.pk)  # the periodic balance read sees the floating PnL: the account is guarded
    floor = D("9700")
    bid = D(str(EURUSD_BID))
    with start_worker(app, pool="threads", concurrency=2, queues=["orders"], perform_ping_check=False,
                      shutdown_timeout=20, loglevel="WARNING"):
        for _ in range(40):
            checked = RuleState.objects.filter(account=acct).values_list("last_checked_at", flat=True).first()
            tasks.guard_accounts.delay()
            wait_for(lambda: RuleState.objects.filter(account=acct).exclude(last_checked_at=checked).exists(),
                     timeout=30, what="the guard's run")
            if Account.objects.get(pk=acct.pk).halted:
                break
            assert client.balance().equity > floor
            bid -= D("0.00005")  # 25 USD a step: smaller than the 60 buffer and the 30 margin
            sim.control.market(paused=True, prices={"EURUSD": float(bid)})
        acct.refresh_from_db()
        assert acct.halted and acct.halt_cause == "firm_rule"
        wait_for(lambda: client.open_positions() == [], timeout=30, what="the flatten")
    assert client.balance().equity > floor
    assert AuditLog.objects.filter(account=acct, action=AuditLog.Action.FIRM_RULE).exists()
