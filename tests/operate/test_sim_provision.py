"""Provisioning the simulator from the database: idempotent, same identities, usable logins."""

from __future__ import annotations

import threading
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Account
from matchtrader.client import MatchTraderClient
from matchtrader.simulator.testing import running_simulator
from tests.factories import make_account
from workers.sim_provision import provision_forever, provision_simulator, system_uuid_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def sim():
    with running_simulator(seed=3, history_minutes=5) as handle:
        yield handle


def test_provisioning_twice_creates_each_account_once(sim, settings):
    call_command("seed_demo", "--accounts", "5", "--no-superuser", "--no-symbols", stdout=StringIO(), stderr=StringIO())
    before = sim.control.stats()["accounts"]
    first = provision_simulator(sim.url)
    assert sorted(first.accounts) == [f"demo-00{i}" for i in range(1, 6)] and first.feed
    after_first = sim.control.stats()["accounts"]
    assert after_first - before <= 6  # 5 accounts + the feed login (unless an earlier test made it)
    provision_simulator(sim.url)
    assert sim.control.stats()["accounts"] == after_first

    # the database's credentials log in, on the account with the database's uuid
    account = Account.objects.get(name="demo-002")
    client = MatchTraderClient(sim.url, account.email, account.password, account.broker_id,
                               system_uuid=account.system_uuid)
    client.login()
    assert client.balance().balance == Decimal("25000")
    assert account.trading_account_id  # kept in step with the simulator's numbering

    feed = MatchTraderClient(sim.url, settings.FEED_EMAIL, settings.FEED_PASSWORD, settings.FEED_BROKER_ID)
    feed.login()


def test_an_account_without_uuid_gets_one_and_live_accounts_are_left_alone(sim):
    manual = make_account(name="added-in-admin", system_uuid="")
    live = make_account(name="live-one", mode=Account.Mode.LIVE, system_uuid="")
    result = provision_simulator(sim.url, include_feed=False)
    manual.refresh_from_db()
    live.refresh_from_db()
    assert "added-in-admin" in result.accounts and "live-one" not in result.accounts
    assert manual.system_uuid == system_uuid_for("added-in-admin")
    assert live.system_uuid == ""


def test_background_loop_picks_up_new_accounts(sim):
    stop = threading.Event()
    thread = threading.Thread(target=provision_forever, args=(sim.url, stop), kwargs={"interval_s": 0.2}, daemon=True)
    thread.start()
    try:
        new = make_account(name="late-arrival", system_uuid="")
        uuid = system_uuid_for("late-arrival")
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                sim.control.ledger(uuid)
                break
            except RuntimeError:  # 404 until provisioned
                time.sleep(0.1)
        else:
            pytest.fail("the provisioning loop did not create the new account within 10 s")
        new.refresh_from_db()
        assert new.system_uuid == uuid
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_command_reports_an_unreachable_simulator():
    with pytest.raises(CommandError, match="unreachable|did not answer"):
        call_command("provision_simulator", "--url", "http://127.0.0.1:9", stdout=StringIO())
    with pytest.raises(CommandError, match="http"):
        call_command("provision_simulator", "--url", "ftp://x", stdout=StringIO())


def test_command_provisions_and_reports(sim):
    call_command("seed_demo", "--accounts", "2", "--no-superuser", "--no-symbols", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("provision_simulator", "--url", sim.url, "--wait", "5", stdout=out)
    assert "2 simulation account(s) and the feed login present" in out.getvalue()
    for name in ("demo-001", "demo-002"):
        assert sim.control.ledger(system_uuid_for(name))["systemUuid"] == system_uuid_for(name)


def test_a_trader_api_account_from_the_admin_trades_through_its_token(sim):
    """Added in the admin with a token of the user's choosing, provisioned on the simulator, it
    answers on the Trader API with exactly that token."""
    from accounts.models import Account
    from matchtrader.ratelimit import NoLimit
    from matchtrader.trader_client import TraderApiClient

    account = Account.objects.create(name="ta-admin", api="trader", platform_url=sim.url,
                                     trader_api_token="my-sim-token-1", mode=Account.Mode.SIMULATION)
    provision_simulator(sim.url, include_feed=False)
    provision_simulator(sim.url, include_feed=False)  # idempotent, token included
    account.refresh_from_db()
    client = TraderApiClient(sim.url, "my-sim-token-1", rate_limiter=NoLimit())
    assert client.balance().balance > 0
    assert client.open_position("EURUSD", "BUY", Decimal("0.01"), intent="x").position_id
    assert len(sim.control.ledger(account.system_uuid)["executions"]) == 1
