"""The batched fan-out body (orders.batch) against the simulator over a real socket, run in the test.

Every per-order guarantee of the single-order task must hold for a chunk: one order per account,
sized per account, never sent twice across redeliveries, risk and kill switch enforced, failures
recorded with their reason; and the chunk's database work must not grow with its size.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Account, TradingSwitch
from matchtrader.client import MatchTraderClient
from matchtrader.errors import BrokerUnavailable
from orders import batch, execution, submit
from orders.bulk import account_locks, bulk_transition
from orders.lifecycle import IllegalTransition
from orders.lifecycle import OrderStatus as S
from orders.models import Order, Position
from tests.orders.conftest import eurusd_buy_signal, ledger_counts, sim_accounts

pytestmark = pytest.mark.django_db


def statuses(signal) -> dict[int, str]:
    return dict(Order.objects.filter(signal=signal).values_list("account_id", "status"))


def test_a_chunk_gets_one_sized_filled_and_linked_order_per_account(sim):
    accounts = sim_accounts(sim, 6) + sim_accounts(sim, 2, balance="20000")
    signal = eurusd_buy_signal()
    counts = batch.place_signal_orders(signal.pk, [a.pk for a in accounts])
    assert counts == {S.FILLED: 8}
    orders = {o.account_id: o for o in Order.objects.filter(signal=signal)}
    # 0.5 % risk over 20 pips: 10,000 → 0.25 lots, 20,000 → 0.50 lots
    assert [orders[a.pk].volume for a in accounts] == [D("0.25")] * 6 + [D("0.50")] * 2
    assert all(o.attempts == 1 and o.broker_order_id and o.position_id for o in orders.values())
    assert Position.objects.filter(account__in=accounts).count() == 8
    assert [ledger_counts(sim, a) for a in accounts] == [(1, 1)] * 8


def test_redelivering_a_chunk_sends_nothing_again(sim):
    accounts = sim_accounts(sim, 5)
    signal = eurusd_buy_signal()
    ids = [a.pk for a in accounts]
    batch.place_signal_orders(signal.pk, ids)
    assert batch.place_signal_orders(signal.pk, ids) == {S.FILLED: 5}
    assert Order.objects.filter(signal=signal).count() == 5
    assert [ledger_counts(sim, a) for a in accounts] == [(1, 1)] * 5


def test_the_chunk_database_work_does_not_grow_with_its_size(sim, settings):
    settings.ORDERS_LINK_FILL_INLINE = False  # links are a follow-up task (no worker here)

    def queries_for(n: int) -> int:
        accounts = sim_accounts(sim, n)
        signal = eurusd_buy_signal()
        with CaptureQueriesContext(connection) as ctx:
            assert batch.place_signal_orders(signal.pk, [a.pk for a in accounts]) == {S.FILLED: n}
        # SAVEPOINT / RELEASE are the test's own transaction around the engine's atomic blocks (the
        # INSERT; the CAS with the budgets): in the worker's autocommit they are BEGIN … COMMIT
        return len([q for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))])

    queries_for(2)  # warm the signal cache and the clients
    small, large = queries_for(3), queries_for(settings.ORDERS_SEND_CONCURRENCY)  # one wave of calls
    # 10 of the engine (the exposure statement also reads the rule profiles' inputs: profile, the
    # day's budget rows, high-water mark, holdings; the unlock statement also settles the fan-out
    # record's pairs and adds the orders' hop timestamps to the signal) + 6 of the rule profiles
    # (prop.pretrade: on these fresh accounts' first order of the firm day, their budget rows are
    # SELECTed, INSERTed, read back and the day start rebuilt (a read, an UPDATE); the budget UPDATE)
    assert small == large and large <= 16, (small, large)


def test_a_crash_mid_chunk_is_resolved_on_redelivery_without_a_second_execution(sim, monkeypatch):
    # given a chunk whose worker dies after three orders executed at the broker, before any fill
    # was recorded (every row of the chunk is still "submitted")
    accounts = sim_accounts(sim, 8)
    signal = eurusd_buy_signal()
    ids = [a.pk for a in accounts]
    original = MatchTraderClient.open_position
    sent = []
    lock = threading.Lock()  # the calls of a chunk run in parallel

    class WorkerKilled(BaseException):
        pass

    def dies_after_three(self, *args, **kw):
        with lock:
            if len(sent) == 3:
                raise WorkerKilled
            sent.append(self.email)
        return original(self, *args, **kw)

    monkeypatch.setattr(MatchTraderClient, "open_position", dies_after_three)
    with pytest.raises(WorkerKilled):
        batch.place_signal_orders(signal.pk, ids)
    assert set(statuses(signal).values()) == {S.SUBMITTED}
    assert sum(ledger_counts(sim, a)[1] for a in accounts) == 3
    # when the chunk is delivered again
    monkeypatch.setattr(MatchTraderClient, "open_position", original)
    assert batch.place_signal_orders(signal.pk, ids) == {S.FILLED: 8}
    # then: the three executions were found (not resent), the five others sent exactly once
    assert [ledger_counts(sim, a)[1] for a in accounts] == [1] * 8
    attempts = dict(Order.objects.filter(signal=signal).values_list("account_id", "attempts"))
    assert sorted(attempts.values()) == [1] * 3 + [2] * 5


def test_the_kill_switch_stops_the_rest_of_a_chunk_mid_send(sim, monkeypatch, settings):
    # waves of one call, the switch read before each wave (a single call runs in the task's own
    # thread, so the switch flipped by the fake below is in the test's transaction)
    settings.ORDERS_SEND_CONCURRENCY = 1
    accounts = sim_accounts(sim, 6)
    signal = eurusd_buy_signal()
    original = MatchTraderClient.open_position
    calls = []

    def flip_after_the_second(self, *args, **kw):
        result = original(self, *args, **kw)
        calls.append(1)
        if len(calls) == 2:
            TradingSwitch.objects.update_or_create(id=1, defaults={"kill_switch": True, "reason": "test"})
        return result

    monkeypatch.setattr(MatchTraderClient, "open_position", flip_after_the_second)
    batch.place_signal_orders(signal.pk, [a.pk for a in accounts])
    orders = {o.account_id: o for o in Order.objects.filter(signal=signal)}
    assert [orders[a.pk].status for a in accounts] == [S.FILLED] * 2 + [S.FAILED] * 4
    assert {orders[a.pk].reason for a in accounts[2:]} == {"kill_switch"}
    assert [ledger_counts(sim, a)[1] for a in accounts] == [1, 1, 0, 0, 0, 0]


@pytest.mark.parametrize("concurrency, expected", [(20, 10), (4, 4), (1, 1)])
def test_a_chunks_calls_are_in_flight_together_up_to_the_send_concurrency(sim, monkeypatch, settings,
                                                                          concurrency, expected):
    # a fan-out is bound by the broker's round trip: with 100 ms per order call, a chunk of ten
    # sent one after another would take a second; the calls overlap instead
    settings.ORDERS_SEND_CONCURRENCY = concurrency
    accounts = sim_accounts(sim, 10)
    sim.control.set_faults(latency_ms=100.0, scope="write")
    original = MatchTraderClient.open_position
    lock = threading.Lock()
    in_flight, peak = [0], [0]

    def counted(self, *args, **kw):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            return original(self, *args, **kw)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(MatchTraderClient, "open_position", counted)
    signal = eurusd_buy_signal()
    assert batch.place_signal_orders(signal.pk, [a.pk for a in accounts]) == {S.FILLED: 10}
    assert peak[0] == expected
    assert [ledger_counts(sim, a) for a in accounts] == [(1, 1)] * 10


def test_rejects_are_recorded_per_order_and_not_retried(sim):
    accounts = sim_accounts(sim, 4)
    sim.control.set_faults(p_reject=1.0, reject_code="MARKET_CLOSED")
    signal = eurusd_buy_signal()
    assert batch.place_signal_orders(signal.pk, [a.pk for a in accounts]) == {S.REJECTED: 4}
    assert set(Order.objects.filter(signal=signal).values_list("reason", "attempts")) == {("MARKET_CLOSED", 1)}
    assert [ledger_counts(sim, a) for a in accounts] == [(1, 0)] * 4


def test_broker_errors_continue_in_the_single_order_loop_and_end_exactly_once(sim, settings):
    # 5xx on every write: each order is looked up after each failure and resent until attempts run out
    settings.ORDERS_MAX_SUBMIT_ATTEMPTS = 2
    accounts = sim_accounts(sim, 3)
    sim.control.set_faults(p_5xx=1.0, scope="write")
    signal = eurusd_buy_signal()
    assert batch.place_signal_orders(signal.pk, [a.pk for a in accounts]) == {S.FAILED: 3}
    assert set(Order.objects.filter(signal=signal).values_list("reason", "attempts")) == {("not_executed", 2)}
    assert [ledger_counts(sim, a) for a in accounts] == [(2, 0)] * 3


def test_risk_limits_and_eligibility_are_checked_per_account(sim):
    ok, full, losing, rounds_to_zero, paused = (
        sim_accounts(sim, 1)[0],
        sim_accounts(sim, 1, max_open_positions=0)[0],
        sim_accounts(sim, 1, daily_loss_limit=D("250"))[0],
        sim_accounts(sim, 1, balance="100")[0],
        sim_accounts(sim, 1, needs_reconciliation=True)[0],
    )
    Account.objects.filter(pk=losing.pk).update(equity=D("9700"))  # 300 down today, limit 250
    signal = eurusd_buy_signal()
    batch.place_signal_orders(signal.pk, [ok.pk, full.pk, losing.pk, rounds_to_zero.pk, paused.pk])
    reasons = dict(Order.objects.filter(signal=signal).values_list("account_id", "reason"))
    assert statuses(signal)[ok.pk] == S.FILLED
    assert reasons == {ok.pk: "", full.pk: "max_open_positions", losing.pk: "daily_loss_limit",
                       rounds_to_zero.pk: "below_min_volume", paused.pk: "needs_reconciliation"}
    losing.refresh_from_db()
    assert losing.halted and "daily loss limit" in losing.halt_reason
    assert [ledger_counts(sim, a)[1] for a in (ok, full, losing, rounds_to_zero, paused)] == [1, 0, 0, 0, 0]


@pytest.mark.parametrize("requeues, task, args", [
    (0, "orders.place_orders", lambda signal, busy: [signal.pk, [busy.pk]]),  # a chunk of its own, later
    (5, "orders.place_order", lambda signal, busy: [busy.pk, signal.pk]),  # then the task that waits
])
def test_an_account_locked_elsewhere_is_queued_again_then_handed_to_the_single_order_task(
        sim, redis_client, requeues, task, args):
    import base64
    import json
    import threading

    accounts = sim_accounts(sim, 3)
    signal = eurusd_buy_signal()
    busy = accounts[1]
    held, release = threading.Event(), threading.Event()

    def hold_the_lock():  # another session (a reconciliation, say) holds the account
        from django.db import connections

        try:
            with account_locks([busy.pk]):
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert held.wait(10)
        counts = batch.place_signal_orders(signal.pk, [a.pk for a in accounts], requeues)
    finally:
        release.set()
        holder.join(10)
    assert counts == {"handed_over": 1, S.FILLED: 2}
    assert busy.pk not in statuses(signal) and ledger_counts(sim, busy) == (0, 0)
    queued = [json.loads(raw) for raw in redis_client.lrange("orders", 0, -1)]
    assert [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in queued] == [
        (task, args(signal, busy))]


def test_bulk_transition_checks_the_table_and_moves_only_rows_still_as_read(sim):
    accounts = sim_accounts(sim, 3)
    signal = eurusd_buy_signal()
    batch.place_signal_orders(signal.pk, [a.pk for a in accounts])
    filled = list(Order.objects.filter(signal=signal))
    with pytest.raises(IllegalTransition):
        bulk_transition([(o, {}) for o in filled], S.SUBMITTED)  # filled is terminal
    # two copies of the same new row: the first moves it, the second lost the race
    other = eurusd_buy_signal()
    order = Order.objects.create(account=accounts[0], signal=other, symbol=other.symbol, side="BUY",
                                 volume=D("0.1"), idempotency_key="test:bulk")
    copy = Order.objects.get(pk=order.pk)
    assert bulk_transition([(order, {"reason": "one"})], S.SKIPPED) == {order.pk}
    assert bulk_transition([(copy, {"reason": "two"})], S.SKIPPED) == set()
    assert copy.status == S.NEW and Order.objects.get(pk=order.pk).reason == "one"


def test_link_fills_links_each_fill_once_with_one_read_per_account(sim, settings):
    from orders.linking import link_fills

    settings.ORDERS_LINK_FILL_INLINE = False
    accounts = sim_accounts(sim, 4)
    first, second = eurusd_buy_signal(), eurusd_buy_signal()
    ids = [a.pk for a in accounts]
    batch.place_signal_orders(first.pk, ids)
    batch.place_signal_orders(second.pk, ids)  # two identical fills per account to tell apart
    orders = list(Order.objects.filter(account__in=accounts).order_by("pk"))
    assert len(orders) == 8 and not any(o.position_id for o in orders)
    requests_before = _broker_requests(sim)
    assert link_fills([o.pk for o in orders]) == 8
    assert _broker_requests(sim) - requests_before == 4  # one open-positions read per account
    linked = list(Order.objects.filter(pk__in=[o.pk for o in orders]))
    assert all(o.position_id and o.broker_position_id and o.fill_price for o in linked)
    # each broker position explains exactly one order, and each has its opening trade
    assert len({o.broker_position_id for o in linked}) == 8
    from orders.models import Trade

    assert Trade.objects.filter(account__in=accounts, kind="open").count() == 8
    assert Position.objects.filter(account__in=accounts).count() == 8
    assert link_fills([o.pk for o in orders]) == 0  # nothing left: no read, no write
    assert _broker_requests(sim) - requests_before == 4


def _broker_requests(sim) -> int:
    """Broker API requests the simulator has served (its control API is not counted)."""
    return sim.control.stats()["requests"]


def test_a_call_that_waited_too_long_for_the_pool_reads_the_kill_switch_again(sim, monkeypatch):
    # the wave's switch read is "too old" by the time the calls would leave (a busy pool): none is
    # sent by the wave; each goes through the single-order loop, which reads the switch again
    monkeypatch.setattr(submit, "GATE_MAX_AGE_S", -1.0)
    accounts = sim_accounts(sim, 3)
    signal = eurusd_buy_signal()
    original = submit.send_open
    calls = []

    def switch_on_then_send(order, account, **kw):
        calls.append(kw)
        if len(calls) == 2:  # the switch goes on between the first and the second late order
            TradingSwitch.objects.update_or_create(id=1, defaults={"kill_switch": True, "reason": "test"})
        return original(order, account, **kw)

    monkeypatch.setattr(submit, "send_open", switch_on_then_send)
    batch.place_signal_orders(signal.pk, [a.pk for a in accounts])
    assert calls == [{"first_attempt_counted": True}] * 3
    assert [statuses(signal)[a.pk] for a in accounts] == [S.FILLED, S.FAILED, S.FAILED]
    assert [ledger_counts(sim, a)[1] for a in accounts] == [1, 0, 0]
    assert set(Order.objects.filter(signal=signal).values_list("attempts", flat=True)) == {1}


def test_calls_that_waited_too_long_for_the_pool_go_out_again_together(sim, monkeypatch):
    # a busy machine: the whole first wave waited past its gate read. The calls read the gate again
    # and leave together in one more wave; none is left to the one-by-one single-order loop
    accounts = sim_accounts(sim, 4)
    signal = eurusd_buy_signal()
    original_call, original_send_open = submit._call, submit.send_open
    tried, single = [], []

    def pool_too_slow_the_first_time(client, signal_, order, not_after):
        tried.append(order.pk)
        if tried.count(order.pk) == 1:
            return submit.NOT_SENT
        return original_call(client, signal_, order, not_after)

    def single_order_loop(order, account, **kw):
        single.append(order.pk)
        return original_send_open(order, account, **kw)

    monkeypatch.setattr(submit, "_call", pool_too_slow_the_first_time)
    monkeypatch.setattr(submit, "send_open", single_order_loop)
    batch.place_signal_orders(signal.pk, [a.pk for a in accounts])
    orders = list(Order.objects.filter(signal=signal))
    assert single == [] and sorted(tried) == sorted([o.pk for o in orders] * 2)
    assert {(o.status, o.attempts) for o in orders} == {(S.FILLED, 1)}
    assert [ledger_counts(sim, a)[1] for a in accounts] == [1, 1, 1, 1]
    signal.refresh_from_db()
    assert sorted(int(k) for k in signal.hops["orders"]) == sorted(o.pk for o in orders)  # each answer timed


def test_an_order_filled_by_the_single_order_loop_has_its_hops(sim, monkeypatch):
    # the wave's call of one order never reached the broker (retryable): the single-order loop
    # sends it again and it fills; its hops are those of the call that got the answer, in order
    accounts = sim_accounts(sim, 3)
    signal = eurusd_buy_signal()
    original_call = submit._call
    failed_once = []

    def first_call_unavailable(client, signal_, order, not_after):
        if not failed_once:
            failed_once.append(order.pk)
            order.hop_send = order.hop_answer = time.monotonic() * 1000.0
            return BrokerUnavailable("connect refused")
        return original_call(client, signal_, order, not_after)

    monkeypatch.setattr(submit, "_call", first_call_unavailable)
    task_start = time.monotonic() * 1000.0
    batch.place_signal_orders(signal.pk, [a.pk for a in accounts])
    orders = {o.pk: o for o in Order.objects.filter(signal=signal)}
    assert {o.status for o in orders.values()} == {S.FILLED}
    signal.refresh_from_db()
    rows = signal.hops["orders"]
    assert sorted(int(k) for k in rows) == sorted(orders)  # the retried order's answer timed too
    task, send, answer = rows[str(failed_once[0])]
    assert task_start <= task <= send <= answer
    assert send > min(r[1] for k, r in rows.items() if int(k) != failed_once[0])  # its second call's


def test_the_single_account_driver_records_its_orders_hops(sim):
    (account,) = sim_accounts(sim, 1)
    signal = eurusd_buy_signal()
    assert execution.place_signal_order(account.pk, signal.pk) == S.FILLED
    order = Order.objects.get(signal=signal)
    signal.refresh_from_db()
    task, send, answer = signal.hops["orders"][str(order.pk)]
    assert task <= send <= answer
