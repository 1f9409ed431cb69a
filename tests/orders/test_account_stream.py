"""Account state in seconds: positions the broker closes by TP/SL are closed in PostgreSQL with the
broker's figures, through the push path (the simulator's ``positionClosed`` WebSocket extension)
and the budgeted polling path (the real APIs); a reconnect's gap is filled from the open-positions
snapshot and history. A real simulator over real sockets, the worker in a thread."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from decimal import Decimal as D

import pytest

from accounts.models import Account, EquitySnapshot
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from orders.models import Position
from tests.orders.conftest import EURUSD_BID, eurusd, eurusd_buy_signal, sim_accounts
from tests.waiting import wait_for
from workers.account_stream import AccountStream, BudgetedPoller, PollBudget, touched

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def running(worker):
    stop = threading.Event()
    th = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    th.start()
    try:
        assert worker.ready.wait(10)
        yield worker
    finally:
        stop.set()
        th.join(10)
        assert not th.is_alive()


def open_positions(sim, n: int) -> list[Position]:
    accounts = sim_accounts(sim, n)
    signal = eurusd_buy_signal(symbol=eurusd())  # TP 1.10400, SL 1.09800
    for a in accounts:
        assert place_signal_order(a.pk, signal.pk) == S.FILLED
    positions = list(Position.objects.filter(account__in=accounts, status=Position.Status.OPEN))
    assert len(positions) == n
    return positions


def test_push_take_profit_hits_are_closed_in_the_database_within_a_second(sim):
    positions = open_positions(sim, 3)
    stream = AccountStream(balance_every_s=0.2)
    with running(stream):
        wait_for(lambda: all(c.connects for c in stream.conns.values()) and len(stream.conns) == 3)
        wait_for(lambda: stream.stats["frames"] >= 6)  # the first snapshots arrived
        hit_at = time.monotonic()
        sim.control.market(prices={"EURUSD": 1.10450})  # bid above every TP
        wait_for(lambda: not Position.objects.filter(pk__in=[p.pk for p in positions],
                                                      status=Position.Status.OPEN).exists(), timeout=5)
        lag_s = time.monotonic() - hit_at
        wait_for(lambda: Account.objects.filter(pk=positions[0].account_id, balance__gt=D("10000")).exists())
    assert lag_s <= 1.0, lag_s
    for p in Position.objects.filter(pk__in=[p.pk for p in positions]):
        assert p.close_reason == Position.CloseReason.TAKE_PROFIT
        assert p.close_price == D("1.10450")
        # 0.25 lots x (1.10450 - 1.10008) x 100,000 = 110.50; commission 0.88 (3.5 x 0.25)
        assert p.realized_pnl == D("110.50") and p.commission == D("-0.88")
    assert stream.stats["closes_applied"] == 3
    assert EquitySnapshot.objects.filter(account_id=positions[0].account_id).exists()


def test_push_reconnect_fills_the_gap_from_the_snapshot_and_history(sim):
    positions = open_positions(sim, 2)
    stream = AccountStream()
    with running(stream):
        wait_for(lambda: all(c.connects == 1 for c in stream.conns.values()) and len(stream.conns) == 2)
        # the broker closes one position while nobody listens: drop the sockets first
        sim.control.set_faults(ws_drop_every_s=0.0)
        gone = positions[0]
        conn = stream.conns[gone.account_id]
        sim.control.drop_websockets()
        sim.control.close_position(gone.broker_position_id)  # closed "behind our back" during the outage
        wait_for(lambda: conn.connects >= 2, timeout=10)
        wait_for(lambda: Position.objects.get(pk=gone.pk).status == Position.Status.CLOSED, timeout=10)
    gone.refresh_from_db()
    assert gone.close_price is not None and gone.realized_pnl != 0
    assert Position.objects.get(pk=positions[1].pk).status == Position.Status.OPEN
    assert stream.stats["reconnects"] >= 1


def test_poll_stop_loss_hit_is_closed_within_seconds_and_within_budget(sim, settings):
    positions = open_positions(sim, 2)
    flat = sim_accounts(sim, 1)[0]
    settings.ACCOUNT_POLL_OPEN_S = 1.0
    settings.ACCOUNT_POLL_FLAT_S = 10.0
    poller = BudgetedPoller(PollBudget.from_settings(), threads=4, touch_check_s=0.1)
    with running(poller):
        wait_for(lambda: all(st.polls >= 1 for st in poller.accounts.values()) and len(poller.accounts) == 3)
        hit_at = time.monotonic()
        sim.control.market(prices={"EURUSD": 1.09790})  # bid below every SL
        wait_for(lambda: not Position.objects.filter(pk__in=[p.pk for p in positions],
                                                      status=Position.Status.OPEN).exists(), timeout=10)
        lag_s = time.monotonic() - hit_at
        time.sleep(0)  # no sleep-based assertions below: the counts are read from the poller
        polls_open = poller.accounts[positions[0].account_id].poll_times
        polls_flat = poller.accounts[flat.pk].poll_times
    assert lag_s <= 5.0, lag_s
    for p in Position.objects.filter(pk__in=[p.pk for p in positions]):
        assert p.close_reason == Position.CloseReason.STOP_LOSS and p.close_price == D("1.09790")
    # the cadence: never more than one read a second per account (60/min), urgent reads included;
    # flat accounts far less
    gaps = [b - a for a, b in zip(polls_open, polls_open[1:])]
    assert all(g >= 0.95 for g in gaps), gaps
    assert len(polls_flat) <= 2


def test_budget_arithmetic_and_the_host_cap():
    b = PollBudget(open_every_s=1.0, flat_every_s=10.0, max_per_min=60, host_max_per_s=200)
    assert b.interval_s(True, 10) == 1.0 and b.interval_s(False, 10) == 10.0
    # 1,000 accounts on one host: 200/s shared → 12/min each → one read every 5 s
    assert b.interval_s(True, 1000) == pytest.approx(5.0)
    assert b.per_account_per_min(1) == 60


def test_touch_detection_uses_the_closing_side():
    assert touched("BUY", "1.0979", "1.0980", D("1.098"), D("1.104"))
    assert touched("BUY", "1.1040", "1.1041", D("1.098"), D("1.104"))
    assert not touched("BUY", "1.1000", "1.0970", D("1.098"), D("1.104"))  # the ask does not close a BUY
    assert touched("SELL", "1.0900", "1.1041", D("1.104"), D("1.098"))


def test_polls_yield_to_trading_when_the_account_bucket_runs_low(sim, settings):
    from orders import broker

    (acct,) = sim_accounts(sim, 1)
    client = broker.client_for(acct)
    limiter = client.rate_limiter
    # trading drains the bucket down to just above the normal reserve
    while limiter.try_acquire(1, "normal") <= 0 and limiter.try_acquire(0, "low") <= 0:
        pass
    poller = BudgetedPoller(PollBudget.from_settings(), threads=1)
    poller._refresh()
    st = poller.accounts[acct.pk]
    poller.poll_one(st)
    assert st.polls == 0 and poller.stats["skipped_for_trading"] == 1
    assert limiter.try_acquire(1, "normal") <= 0  # a trading request still gets its token


def test_a_broker_stop_out_is_recorded_as_stop_out_with_the_brokers_figures(sim):
    from django.utils import timezone

    from matchtrader import protocol as P
    from matchtrader.models import ClosedPosition
    from orders import state_sync

    (pos,) = open_positions(sim, 1)
    row = ClosedPosition(id=pos.broker_position_id, symbol="EURUSD", side="BUY", volume=pos.volume,
                         open_price=pos.open_price, close_price=D("1.09000"), profit=D("-252.00"),
                         net_profit=D("-252.88"), open_time=pos.opened_at, close_time=timezone.now(),
                         close_reason=P.CLOSE_REASON_STOP_OUT, closing_order_id="X1")
    assert state_sync.apply_close(pos.account_id, row)
    assert not state_sync.apply_close(pos.account_id, row)  # applied once
    pos.refresh_from_db()
    assert pos.close_reason == Position.CloseReason.STOP_OUT and pos.close_price == D("1.09000")
    assert pos.realized_pnl == D("-252.00") and pos.commission == D("-0.88")
