"""Two minutes of live trading against a moving simulator market: positions open every few
seconds with tight SL/TP and a short time stop, the broker closes them by TP/SL while our time
stops race it, and the account stream keeps PostgreSQL in step. Every second the database's open
positions are compared with the broker's: no difference may last more than 5 s, none may remain
once trading stops, and no exit order may be rejected."""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal as D

import pytest

from orders import broker
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from orders.models import Order, Position
from orders.positions import close_position, positions_due
from tests.factories import make_signal
from tests.orders.conftest import eurusd, sim_accounts
from tests.waiting import wait_for
from workers.account_stream import AccountStream
from workers.state_check import StateCheck, rejected_exit_orders

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]

RUN_S = 120.0
PIP = D("0.0001")


def test_two_minutes_of_trading_keep_the_database_within_5_s_of_the_broker(sim):
    from django.utils import timezone

    accounts = sim_accounts(sim, 5, max_open_positions=50)
    symbol = eurusd()
    rng = random.Random(3)
    started = timezone.now()
    stream = AccountStream(balance_every_s=1.0)
    stop = threading.Event()
    th = threading.Thread(target=stream.run, args=(stop,), daemon=True)
    th.start()
    check = StateCheck(max_age_s=5.0)
    late: list = []
    sim.control.market(paused=False)
    try:
        assert stream.ready.wait(10)
        t0 = time.monotonic()
        next_signal = 0.0
        while time.monotonic() - t0 < RUN_S:
            now = time.monotonic() - t0
            if now >= next_signal:
                next_signal = now + 6.0
                (quote,) = broker.client_for(accounts[0]).quotations(["EURUSD"])
                side = rng.choice(["BUY", "SELL"])
                entry = quote.ask if side == "BUY" else quote.bid
                sl_d, tp_d = rng.randint(3, 12) * PIP / 4, rng.randint(3, 12) * PIP / 4
                sl = entry - sl_d if side == "BUY" else entry + sl_d
                tp = entry + tp_d if side == "BUY" else entry - tp_d
                signal = make_signal(symbol=symbol, side=side, entry_price=entry, stop_loss=sl, take_profit=tp,
                                     time_stop_seconds=rng.randint(8, 20))
                for a in accounts:
                    place_signal_order(a.pk, signal.pk)
            for pid, reason in positions_due():
                close_position(pid, reason)
            late += check.check_once(accounts)
            time.sleep(1.0)
        sim.control.market(paused=True)
        # trading stopped: every remaining difference disappears within 5 s
        for pid, reason in positions_due(timezone.now() + timezone.timedelta(hours=1)):
            close_position(pid, reason)
        wait_for(lambda: not StateCheck().check_once(accounts) and not any(
            StateCheck().differences(a) for a in accounts), timeout=10)
    finally:
        sim.control.market(paused=True)
        stop.set()
        th.join(10)
    assert not late, late[:5]
    assert rejected_exit_orders(started) == 0
    closed = Position.objects.filter(account__in=accounts, status=Position.Status.CLOSED)
    assert closed.count() >= 10
    by_broker = closed.filter(close_reason__in=[Position.CloseReason.TAKE_PROFIT, Position.CloseReason.STOP_LOSS])
    assert by_broker.exists()  # the market moved enough for the broker to close some by itself
    assert not Order.objects.filter(account__in=accounts, purpose=Order.Purpose.CLOSE, status=S.REJECTED).exists()
    assert check.worst_age_s <= 5.0
