"""The order task body against the simulator over a real socket (no worker: run in the test)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from accounts.models import Account, AuditLog, TradingSwitch
from orders.execution import place_signal_order
from orders.lifecycle import OrderStatus as S
from orders.models import Order, Position, Trade, idempotency_key_for
from tests.factories import make_signal
from tests.orders.conftest import eurusd, eurusd_buy_signal, ledger_counts, sim_accounts, usdjpy

pytestmark = pytest.mark.django_db


def order_of(signal, account) -> Order:
    return Order.objects.get(idempotency_key=idempotency_key_for(signal.pk, account.pk))


def test_signal_becomes_one_sized_filled_order_with_position_and_trade(sim):
    # given an account with 10,000 equity risking 0.5 %
    (acct,) = sim_accounts(sim, 1)
    signal = eurusd_buy_signal()
    # when
    status = place_signal_order(acct.pk, signal.pk)
    # then: 50 USD / (0.00200 × 100,000) = 0.25 lots, filled, linked
    assert status == S.FILLED
    order = order_of(signal, acct)
    assert order.volume == D("0.25") and order.attempts == 1 and order.broker_order_id
    assert order.stop_loss == D("1.09800") and order.take_profit == D("1.10400")
    pos = Position.objects.get(account=acct)
    assert order.position_id == pos.pk and pos.broker_position_id == order.broker_position_id
    assert pos.volume == D("0.25") and pos.side == "BUY" and pos.open_price == D("1.10008")  # the ask
    assert pos.time_stop_at is not None and (pos.time_stop_at - pos.opened_at).total_seconds() == 300
    trade = Trade.objects.get(account=acct)
    assert trade.broker_trade_id == f"open:{pos.broker_position_id}" and trade.order_id == order.pk
    assert ledger_counts(sim, acct) == (1, 1)


def test_a_second_delivery_sends_nothing(sim):
    (acct,) = sim_accounts(sim, 1)
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.FILLED
    assert place_signal_order(acct.pk, signal.pk) == S.FILLED
    assert Order.objects.filter(account=acct).count() == 1
    assert ledger_counts(sim, acct) == (1, 1)


def test_quote_currency_is_converted_to_the_account_currency(sim):
    (acct,) = sim_accounts(sim, 1, risk_per_trade_pct=D("1"))
    # USDJPY 150 → stop 149.5: 0.5 × 100,000 = 50,000 JPY, booked at the stop = 334.45 USD per lot;
    # 100 USD → 0.299 → 0.29 lots (at the entry's 333.33 it was 0.30, i.e. 100.33 USD lost at the stop)
    signal = make_signal(symbol=usdjpy(), side="BUY", entry_price=D("150.000"), stop_loss=D("149.500"),
                         take_profit=D("151.000"))
    assert place_signal_order(acct.pk, signal.pk) == S.FILLED
    assert order_of(signal, acct).volume == D("0.29")


def test_size_rounding_to_zero_is_skipped_with_reason_and_never_sent(sim):
    (acct,) = sim_accounts(sim, 1, balance="100")  # 0.5 USD of risk → 0.0025 lots
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.SKIPPED
    order = order_of(signal, acct)
    assert order.reason == "below_min_volume" and order.volume == 0
    assert ledger_counts(sim, acct) == (0, 0)


def test_reject_is_recorded_with_its_code_and_not_retried(sim):
    (acct,) = sim_accounts(sim, 1)
    sim.control.set_faults(p_reject=1.0, reject_code="NOT_ENOUGH_MONEY")
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.REJECTED
    order = order_of(signal, acct)
    assert order.reason == "NOT_ENOUGH_MONEY" and order.attempts == 1
    assert ledger_counts(sim, acct) == (1, 0)  # one request, nothing executed, no retry
    assert place_signal_order(acct.pk, signal.pk) == S.REJECTED  # redelivery: still one request
    assert ledger_counts(sim, acct) == (1, 0)


def test_5xx_on_the_write_is_reconciled_then_resent_once(sim):
    # a 5xx on a write is an unknown outcome: the engine reads back, finds nothing, resends
    (acct,) = sim_accounts(sim, 1)
    sim.control.set_faults(p_5xx=1.0, scope="write")
    signal = eurusd_buy_signal()
    from django.conf import settings

    settings.ORDERS_MAX_SUBMIT_ATTEMPTS = 3
    assert place_signal_order(acct.pk, signal.pk) == S.FAILED
    order = order_of(signal, acct)
    assert order.reason == "not_executed" and order.attempts == 3
    assert ledger_counts(sim, acct) == (3, 0)


def test_executed_but_answer_lost_is_found_not_resent(sim):
    (acct,) = sim_accounts(sim, 1)
    sim.control.set_faults(p_lost=1.0, lost_mode="5xx")
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.FILLED
    order = order_of(signal, acct)
    assert order.broker_position_id and order.position is not None
    assert ledger_counts(sim, acct) == (1, 1)
    assert not Account.objects.get(pk=acct.pk).needs_reconciliation


def test_redelivery_after_a_crash_mid_call_finds_the_execution(sim):
    # given: a worker sent the order (it executed) and died before recording the answer
    (acct,) = sim_accounts(sim, 1)
    signal = eurusd_buy_signal()
    from orders.broker import client_for

    order = Order.objects.create(account=acct, signal=signal, symbol=signal.symbol, side="BUY", volume=D("0.25"),
                                 stop_loss=D("1.09800"), take_profit=D("1.10400"),
                                 idempotency_key=idempotency_key_for(signal.pk, acct.pk))
    order.transition(S.SUBMITTED, attempts=1)
    client_for(acct).open_position("EURUSD", "BUY", D("0.25"), D("1.09800"), D("1.10400"))
    # when the message is redelivered
    assert place_signal_order(acct.pk, signal.pk) == S.FILLED
    # then it found the position instead of sending again
    assert ledger_counts(sim, acct) == (1, 1)
    assert Position.objects.filter(account=acct).count() == 1


def test_redelivery_after_a_crash_before_the_send_resends_once(sim):
    (acct,) = sim_accounts(sim, 1)
    signal = eurusd_buy_signal()
    order = Order.objects.create(account=acct, signal=signal, symbol=signal.symbol, side="BUY", volume=D("0.25"),
                                 stop_loss=D("1.09800"), take_profit=D("1.10400"),
                                 idempotency_key=idempotency_key_for(signal.pk, acct.pk))
    order.transition(S.SUBMITTED, attempts=1)  # died after the CAS, before the request left
    assert place_signal_order(acct.pk, signal.pk) == S.FILLED
    assert ledger_counts(sim, acct) == (1, 1)
    assert order_of(signal, acct).attempts == 2


def test_max_open_positions_blocks_the_next_order(sim):
    (acct,) = sim_accounts(sim, 1, max_open_positions=1)
    first, second = eurusd_buy_signal(), eurusd_buy_signal()
    assert place_signal_order(acct.pk, first.pk) == S.FILLED
    assert place_signal_order(acct.pk, second.pk) == S.SKIPPED
    assert order_of(second, acct).reason == "max_open_positions"
    assert ledger_counts(sim, acct) == (1, 1)


def test_max_volume_per_symbol_clamps_to_the_room_then_blocks(sim):
    (acct,) = sim_accounts(sim, 1, max_volume_per_symbol=D("0.40"))
    first, second, third = eurusd_buy_signal(), eurusd_buy_signal(), eurusd_buy_signal()
    assert place_signal_order(acct.pk, first.pk) == S.FILLED  # 0.25
    # 0.25 + 0.25 > 0.40: sent with the 0.15 lots of room left, not skipped
    assert place_signal_order(acct.pk, second.pk) == S.FILLED
    assert order_of(second, acct).volume == D("0.15")
    assert Position.objects.get(pk=order_of(second, acct).position_id).volume == D("0.15")
    # 0.40 open: no room left → skipped, never sent
    assert place_signal_order(acct.pk, third.pk) == S.SKIPPED
    assert order_of(third, acct).reason == "max_volume_per_symbol"
    assert ledger_counts(sim, acct) == (2, 2)


def test_risk_size_above_the_symbol_cap_is_sent_at_the_cap(sim):
    # 10 % of 10,000 over 20 pips = 5 lots of risk size; cap 2 lots → 2 lots
    (acct,) = sim_accounts(sim, 1, risk_per_trade_pct=D("10"), max_volume_per_symbol=D("2"))
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.FILLED
    assert order_of(signal, acct).volume == D("2.00")
    assert ledger_counts(sim, acct) == (1, 1)


def test_daily_loss_limit_halts_the_account_and_says_why(sim):
    # given equity 300 below balance read today (an open loss) and a limit of 250
    (acct,) = sim_accounts(sim, 1, daily_loss_limit=D("250"))
    Account.objects.filter(pk=acct.pk).update(equity=D("9700"))
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.SKIPPED
    acct.refresh_from_db()
    assert acct.halted and "daily loss limit" in acct.halt_reason
    assert order_of(signal, acct).reason == "daily_loss_limit"
    assert AuditLog.objects.filter(account=acct, action=AuditLog.Action.HALT).exists()
    assert ledger_counts(sim, acct) == (0, 0)


def test_kill_switch_stops_new_orders(sim):
    (acct,) = sim_accounts(sim, 1)
    TradingSwitch.objects.update_or_create(id=1, defaults={"kill_switch": True, "reason": "test"})
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.SKIPPED
    assert order_of(signal, acct).reason == "kill_switch"
    assert ledger_counts(sim, acct) == (0, 0)


def test_kill_switch_is_rechecked_between_retries(sim, settings, monkeypatch):
    # the switch goes on while the order is being retried: the next attempt is not sent
    (acct,) = sim_accounts(sim, 1)
    sim.control.set_faults(p_5xx=1.0, scope="write")
    settings.ORDERS_MAX_SUBMIT_ATTEMPTS = 5
    from orders import submit

    original = submit.resolve_in_doubt

    def flip_then_resolve(order, account, **kw):
        TradingSwitch.objects.update_or_create(id=1, defaults={"kill_switch": True})
        return original(order, account, **kw)

    monkeypatch.setattr(submit, "resolve_in_doubt", flip_then_resolve)
    assert place_signal_order(acct.pk, eurusd_buy_signal().pk) == S.FAILED
    assert Order.objects.get(account=acct).reason == "kill_switch"
    assert ledger_counts(sim, acct) == (1, 0)


def test_ineligible_accounts_are_skipped_with_reason(sim, settings):
    a, b = sim_accounts(sim, 2)
    other = eurusd()
    Account.objects.filter(pk=a.pk).update(needs_reconciliation=True)
    from marketdata.models import Symbol

    b.allowed_symbols.add(usdjpy())
    signal = eurusd_buy_signal(symbol=other)
    assert place_signal_order(a.pk, signal.pk) == S.SKIPPED
    assert place_signal_order(b.pk, signal.pk) == S.SKIPPED
    assert order_of(signal, a).reason == "needs_reconciliation"
    assert order_of(signal, b).reason == "symbol_not_allowed"
    assert Symbol.objects.filter(name="EURUSD").exists()


# --- stops re-anchored on the live price (orders.pricing) -------------------------------------------
def _publish_quote(sim, symbol: str, bid: float) -> None:
    """Move the simulator's market and write its quote where the market-data ingest would."""
    import time as _time

    from marketdata import redis_keys
    from orders import broker

    q = sim.control.market(paused=True, prices={symbol: bid})["quotes"][0]
    now = int(_time.time() * 1000)
    broker.get_redis().hset(redis_keys.quote(symbol),
                            mapping={"bid": q["bid"], "ask": q["ask"], "ts_ms": now, "recv_ms": now})


@pytest.fixture
def live_quotes(sim):
    from marketdata import redis_keys
    from orders import broker

    yield lambda symbol, bid: _publish_quote(sim, symbol, bid)
    broker.get_redis().delete(redis_keys.quote("EURUSD"), redis_keys.quote("USDJPY"))


def test_sell_after_the_market_fell_through_its_target_is_sent_with_stops_on_the_live_bid(sim, live_quotes):
    # SELL entry 1.10000, SL +20 pips, TP −5 pips; the bid has fallen to 1.09920 (ask 1.09928), below
    # the TP: sent as is, the broker answers INVALID_STOPS ("Take profit 1.0995 must be below 1.09928").
    # 0.00080 adverse ≤ 0.5 × 0.00200 → re-anchored on the bid: SL 1.10120, TP 1.09870
    (acct,) = sim_accounts(sim, 1)
    live_quotes("EURUSD", 1.09920)
    signal = eurusd_buy_signal(side="SELL", stop_loss=D("1.10200"), take_profit=D("1.09950"))
    assert place_signal_order(acct.pk, signal.pk) == S.FILLED
    order = order_of(signal, acct)
    assert (order.price, order.stop_loss, order.take_profit) == (D("1.09920"), D("1.10120"), D("1.09870"))
    assert order.volume == D("0.25")  # same stop distance, same size
    pos = Position.objects.get(pk=order.position_id)
    assert pos.open_price == D("1.09920") and pos.stop_loss == D("1.10120") and pos.take_profit == D("1.09870")
    assert ledger_counts(sim, acct) == (1, 1)


def test_price_moved_against_the_signal_is_skipped_and_never_sent(sim, live_quotes):
    # BUY entry 1.10000, stop distance 0.00200 → at most 0.00100 adverse; ask now 1.10158
    (acct,) = sim_accounts(sim, 1)
    live_quotes("EURUSD", 1.10150)
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.SKIPPED
    order = order_of(signal, acct)
    assert order.reason == "price_moved" and "1.10158" in order.last_error
    assert ledger_counts(sim, acct) == (0, 0)


def test_stale_quote_falls_back_to_the_signal_prices(sim, live_quotes, settings):
    (acct,) = sim_accounts(sim, 1)
    live_quotes("EURUSD", 1.10000)  # the sim still quotes 1.10000/1.10008
    from marketdata import redis_keys
    from orders import broker

    broker.get_redis().hset(redis_keys.quote("EURUSD"), mapping={"ask": "1.20000", "recv_ms": 1})  # ancient
    signal = eurusd_buy_signal()
    assert place_signal_order(acct.pk, signal.pk) == S.FILLED
    order = order_of(signal, acct)
    assert (order.stop_loss, order.take_profit) == (D("1.09800"), D("1.10400"))
