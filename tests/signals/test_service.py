"""``signals.service.run_analysis`` against the real Redis (windows written by the feed's own
writer) and the real PostgreSQL."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis as redis_lib
from django.conf import settings

from signals import service
from signals.models import Signal, StrategyConfig
from signals.strategy import Reason

from .fixtures import TICK_SIZE, now_ms

pytestmark = pytest.mark.django_db


def queued(redis, queue: str) -> list[dict]:
    """Celery messages waiting in a Redis list: ``[{"task", "args", "kwargs", "headers"}]``."""
    out = []
    for raw in redis.lrange(queue, 0, -1):
        msg = json.loads(raw)
        args, kwargs, _embed = json.loads(base64.b64decode(msg["body"]))
        out.append({"task": msg["headers"]["task"], "args": args, "kwargs": kwargs, "headers": msg["headers"]})
    return out


def on_grid(value: Decimal, step: Decimal = TICK_SIZE) -> bool:
    return value % step == 0


def test_planted_surge_gives_exactly_one_signal_dispatched_on_the_orders_queue(
    redis_client, market, symbol_factory, django_capture_on_commit_callbacks
):
    # given: a buy surge in EURUSD, a calm GBPUSD
    eurusd = symbol_factory("EURUSD")
    symbol_factory("GBPUSD")
    window = market.surge("EURUSD", direction=1, seed=1)
    market.calm("GBPUSD", seed=1)
    now = now_ms()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        run = service.run_analysis(redis_client, now_ms=now)

    # then: one row, with what justified it
    signal = Signal.objects.get()
    assert run.signals == [signal.pk]
    assert run.reasons == {"signal": 1, "no_surge": 1}
    assert signal.symbol == eurusd
    assert signal.side == Signal.Side.BUY
    assert Decimal("0") < signal.strength <= Decimal("1")
    assert signal.features["volume_ratio"] >= 3.0
    assert signal.features["volume_zscore"] >= 3.0
    assert signal.features["buy_ratio"] >= 0.6
    assert signal.features["book"] == "present"
    assert signal.status == Signal.Status.NEW
    # SL < entry < TP, every price on the symbol's tick grid; entry is the last ask
    assert signal.stop_loss < signal.entry_price < signal.take_profit
    assert all(on_grid(p) for p in (signal.entry_price, signal.stop_loss, signal.take_profit))
    assert signal.entry_price == Decimal(repr(float(window.ticks.ask[-1]))).quantize(TICK_SIZE)
    assert signal.time_stop_seconds == 120
    # tick_at is the venue time of the newest tick the analysis saw
    assert signal.tick_at == datetime.fromtimestamp(window.last_tick_ms / 1000, tz=UTC)
    assert signal.latency_ms is not None and signal.latency_ms >= 0
    # the cool-down is recorded in Redis
    assert int(redis_client.hget(service.LAST_SIGNAL_KEY, "EURUSD")) == now
    assert redis_client.hget(service.LAST_SIGNAL_KEY, "GBPUSD") is None
    # and the dispatch message is really on the orders queue, by name, with the id
    messages = queued(redis_client, "orders")
    assert [(m["task"], m["args"]) for m in messages] == [("orders.dispatch_signal", [signal.pk])]


def test_a_sell_surge_gives_a_sell_with_mirrored_exits(redis_client, market, symbol_factory):
    symbol_factory("EURUSD")
    market.surge("EURUSD", direction=-1, seed=1)

    service.run_analysis(redis_client)

    signal = Signal.objects.get()
    assert signal.side == Signal.Side.SELL
    assert signal.take_profit < signal.entry_price < signal.stop_loss


def test_the_next_pass_is_in_cooldown(redis_client, market, symbol_factory):
    symbol_factory("EURUSD")
    market.surge("EURUSD", seed=1)
    now = now_ms()
    first = service.run_analysis(redis_client, now_ms=now)

    second = service.run_analysis(redis_client, now_ms=now + 1_000)

    assert len(first.signals) == 1
    assert second.signals == [] and second.reasons == {"cooldown": 1}
    assert Signal.objects.count() == 1


def test_a_wake_up_in_cool_down_answers_before_reading_the_window(redis_client, market, symbol_factory,
                                                                  monkeypatch):
    # given: EURUSD signalled by a beat pass; GBPUSD calm
    symbol_factory("EURUSD")
    symbol_factory("GBPUSD")
    now = now_ms()
    market.surge("EURUSD", seed=1, at_ms=now)
    market.calm("GBPUSD", seed=2, at_ms=now)
    assert len(service.run_analysis(redis_client, now_ms=now).signals) == 1
    from marketdata import reader

    real, read = reader.read_windows, []

    def spy(redis, names, *a, **k):
        read.append(list(names))
        return real(redis, names, *a, **k)

    monkeypatch.setattr(reader, "read_windows", spy)

    # when: the pre-screen keeps looking at both while EURUSD's surge lasts
    both = service.run_analysis(redis_client, now_ms=now + 200, only=["EURUSD", "GBPUSD"])
    one = service.run_analysis(redis_client, now_ms=now + 400, only=["EURUSD"])

    # then: the cool-down answers EURUSD without its window (the strategy's rule, its decision)
    assert both.reasons == {"cooldown": 1, "no_surge": 1} and one.reasons == {"cooldown": 1}
    assert read == [["GBPUSD"]]
    assert Signal.objects.count() == 1
    # a beat pass still reads every window (and decides the cool-down in the strategy)
    assert service.run_analysis(redis_client, now_ms=now + 600).reasons == {"cooldown": 1, "no_surge": 1}
    assert read[-1] == ["EURUSD", "GBPUSD"]
    # once the cool-down is over, a wake-up reads the window again
    service.run_analysis(redis_client, now_ms=now + 61_000, only=["EURUSD"])
    assert read[-1] == ["EURUSD"]


def test_cooldown_survives_a_worker_restart(redis_client, market, symbol_factory):
    # given: a signal, then a "restart": new process state, new Redis connection
    symbol_factory("EURUSD")
    t0 = now_ms()
    market.surge("EURUSD", seed=1, at_ms=t0)
    assert len(service.run_analysis(redis_client, now_ms=t0).signals) == 1
    fresh = redis_lib.Redis.from_url(settings.REDIS_URL)

    # when: another surge 30 s later (inside the 60 s cool-down), then one 61 s later
    market.clear()
    market.surge("EURUSD", seed=3, at_ms=t0 + 30_000)
    during = service.run_analysis(fresh, now_ms=t0 + 30_000)
    market.clear()
    market.surge("EURUSD", seed=3, at_ms=t0 + 61_000)
    after = service.run_analysis(fresh, now_ms=t0 + 61_000)
    fresh.close()

    # then
    assert during.reasons == {"cooldown": 1} and during.signals == []
    assert len(after.signals) == 1
    assert Signal.objects.count() == 2


def test_calm_market_gives_no_signal(redis_client, market, symbol_factory, django_capture_on_commit_callbacks):
    for i, name in enumerate(["EURUSD", "GBPUSD", "USDJPY"]):
        symbol_factory(name)
        market.calm(name, seed=10 + i)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run = service.run_analysis(redis_client)

    assert run.signals == [] and run.reasons == {"no_surge": 3}
    assert not Signal.objects.exists()
    assert callbacks == []
    assert redis_client.llen("orders") == 0
    assert not redis_client.exists(service.LAST_SIGNAL_KEY)


def _events(caplog, name: str) -> list[dict]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == name]


def test_stale_data_gives_no_signal_and_one_warning_a_minute(redis_client, market, symbol_factory, caplog):
    # given: a surge whose newest tick is 30 s old (the feed stopped)
    symbol_factory("EURUSD")
    now = now_ms()
    market.surge("EURUSD", seed=1, at_ms=now - 30_000)

    # when: two passes a second apart
    caplog.set_level("WARNING")
    first = service.run_analysis(redis_client, now_ms=now)
    second = service.run_analysis(redis_client, now_ms=now + 1_000)

    # then: no signal, and one warning (not one per second)
    assert first.reasons == second.reasons == {"stale_data": 1}
    assert not Signal.objects.exists()
    warnings = _events(caplog, "stale_market_data")
    assert len(warnings) == 1
    assert warnings[0]["symbol"] == "EURUSD"
    assert warnings[0]["last_tick_age_ms"] >= 30_000
    assert redis_client.ttl(service.STALE_WARN_KEY.format(symbol="EURUSD")) > 0


def test_symbol_without_any_data_is_stale_not_an_error(redis_client, market, symbol_factory, caplog):
    symbol_factory("EURUSD")
    symbol_factory("NODATA")
    market.surge("EURUSD", seed=1)
    caplog.set_level("WARNING")

    run = service.run_analysis(redis_client)

    assert run.reasons == {"signal": 1, "stale_data": 1}
    assert [w["symbol"] for w in _events(caplog, "stale_market_data")] == ["NODATA"]


def test_too_little_history_is_skipped_not_an_error(redis_client, market, symbol_factory, caplog):
    # given: 20 s of data for one symbol (a baseline of 60 s is required), a full surge for another
    symbol_factory("EURUSD")
    symbol_factory("NEWSYM")
    market.surge("NEWSYM", seed=1, history_s=20)
    market.surge("EURUSD", seed=1)
    caplog.set_level("WARNING")

    run = service.run_analysis(redis_client)

    assert run.reasons == {"insufficient_history": 1, "signal": 1}
    assert list(Signal.objects.values_list("symbol__name", flat=True)) == ["EURUSD"]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_disabled_symbols_are_not_analysed(redis_client, market, symbol_factory):
    symbol_factory("EURUSD", enabled=False)
    market.surge("EURUSD", seed=1)

    run = service.run_analysis(redis_client)

    assert run.symbols == 0 and not Signal.objects.exists()


def test_strategy_config_rows_are_applied_per_symbol(redis_client, market, symbol_factory):
    # given: the default row shortens the cool-down; a symbol row makes GBPUSD need a 50x surge
    symbol_factory("EURUSD")
    gbpusd = symbol_factory("GBPUSD")
    StrategyConfig.objects.create(params={"cooldown_ms": 1_000})
    StrategyConfig.objects.create(symbol=gbpusd, params={"surge_min_ratio": 50.0})
    market.surge("EURUSD", seed=1)
    market.surge("GBPUSD", seed=3)
    now = now_ms()

    first = service.run_analysis(redis_client, now_ms=now)
    later = service.run_analysis(redis_client, now_ms=now + 1_500)  # past the 1 s cool-down

    assert first.reasons == {"signal": 1, "no_surge": 1}
    assert Signal.objects.filter(symbol__name="GBPUSD").count() == 0
    assert later.reasons.get("signal") == 1  # EURUSD again: its cool-down came from the default row


def test_an_invalid_stored_row_falls_back_to_defaults_and_is_logged(redis_client, market, symbol_factory, caplog):
    symbol_factory("EURUSD")
    config = StrategyConfig.objects.create(params={})
    StrategyConfig.objects.filter(pk=config.pk).update(params={"surge_min_ratio": "high"})  # bypasses clean()
    market.surge("EURUSD", seed=1)
    caplog.set_level("ERROR")

    run = service.run_analysis(redis_client)

    assert run.reasons == {"signal": 1}
    errors = _events(caplog, "strategy_params_invalid")
    assert errors and "surge_min_ratio" in errors[0]["error"]


def test_query_count_of_one_pass_over_100_symbols_is_bounded(
    redis_client, market, symbol_factory, django_assert_max_num_queries
):
    # given: 100 enabled symbols, 3 of them surging, and both kinds of config rows
    names = [f"S{i:03d}" for i in range(100)]
    at = now_ms()  # one analysis time for all: writing 100 windows takes seconds
    for i, name in enumerate(names):
        symbol_factory(name)
        if i % 40 == 0:
            market.surge(name, direction=1 if i % 80 else -1, seed=1, at_ms=at)
        else:
            market.calm(name, seed=i, at_ms=at)
    StrategyConfig.objects.create(params={"cooldown_ms": 30_000})
    from marketdata.models import Symbol

    StrategyConfig.objects.create(symbol=Symbol.objects.get(name="S001"), params={"min_strength": 0.1})

    # when / then: symbols, configs, one INSERT for all signals (+ its savepoint pair in a test)
    with django_assert_max_num_queries(5):
        run = service.run_analysis(redis_client, now_ms=at)
    assert run.symbols == 100
    assert len(run.signals) == 3
    assert Signal.objects.count() == 3


def test_a_wake_up_reuses_the_last_full_pass_configuration_until_it_ages_or_a_row_is_saved(
    redis_client, market, symbol_factory, django_assert_num_queries, monkeypatch
):
    symbol_factory("EURUSD")
    symbol_factory("GBPUSD")
    at = now_ms()
    market.calm("EURUSD", seed=1, at_ms=at)
    market.calm("GBPUSD", seed=2, at_ms=at)
    service.run_analysis(redis_client, now_ms=at)  # a beat pass: loads and keeps the configuration

    # a wake-up right after it: no query at all (it analyses the symbol from Redis)
    with django_assert_num_queries(0):
        run = service.run_analysis(redis_client, now_ms=at, only=["EURUSD"])
    assert run.symbols == 1 and run.reasons == {"no_surge": 1}

    # a saved strategy row: the next wake-up reads it (and its new parameters decide)
    StrategyConfig.objects.create(params={"max_staleness_ms": 1})
    with django_assert_num_queries(2):
        run = service.run_analysis(redis_client, now_ms=at + 10_000, only=["EURUSD"])
    assert run.reasons == {"stale_data": 1}

    # older than CONFIG_MAX_AGE_S (the beat stopped): loaded again
    monkeypatch.setattr(service, "CONFIG_MAX_AGE_S", 0.0)
    with django_assert_num_queries(2):
        service.run_analysis(redis_client, now_ms=at, only=["GBPUSD"])


def test_features_are_plain_json():
    import numpy as np

    out = service.json_safe({"a": np.float64(1.5), "b": np.int64(3), "c": float("nan"), "d": "x", "e": np.bool_(True)})

    assert out == {"a": 1.5, "b": 3, "c": None, "d": "x", "e": True}
    assert type(out["b"]) is int
    json.dumps(out, allow_nan=False)


def test_reason_values_are_strings_usable_as_json_keys():
    assert str(Reason.NO_SURGE) == "no_surge"


@pytest.fixture
def unreachable_broker():
    """The Celery broker points at a port nobody listens on (a real refused connection)."""
    import socket

    from tradeops.celery import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    saved = app.conf.broker_url

    def reset_pools():
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_url = f"redis://127.0.0.1:{port}/0"
    reset_pools()
    try:
        yield
    finally:
        app.conf.broker_url = saved
        reset_pools()


def test_a_broker_outage_at_dispatch_keeps_the_signal_and_the_cooldown(
    redis_client, market, symbol_factory, unreachable_broker, django_capture_on_commit_callbacks, caplog
):
    symbol_factory("EURUSD")
    market.surge("EURUSD", seed=1)
    caplog.set_level("ERROR")

    with django_capture_on_commit_callbacks(execute=True):
        run = service.run_analysis(redis_client)

    # the row stays "new" (not dispatched) and the error says which signal
    signal = Signal.objects.get()
    assert run.signals == [signal.pk] and signal.status == Signal.Status.NEW
    failures = _events(caplog, "signal_dispatch_failed")
    assert failures and signal.pk in (failures[0].get("signal_ids") or [failures[0].get("signal_id")])
    # the cool-down still holds: the next pass does not signal (and dispatch) the same surge again
    assert redis_client.hexists(service.LAST_SIGNAL_KEY, "EURUSD")
    assert service.run_analysis(redis_client).reasons == {"cooldown": 1}


@pytest.mark.parametrize("state", ["disconnected", "resyncing"])
def test_no_signal_while_the_feed_reports_its_source_not_live(redis_client, market, symbol_factory, state):
    # given: a fresh surge, but the feed has just lost its broker (which may be restarting on
    # another price: the newest ticks are seconds old, still "fresh", and no longer the market)
    from marketdata.store import MarketDataWriter
    from matchtrader.events import ConnectionEvent, QuoteEvent

    symbol_factory("EURUSD")
    market.surge("EURUSD", direction=1, seed=1)
    now = now_ms()
    w = MarketDataWriter(redis_client)
    if state == "disconnected":
        w.ingest([ConnectionEvent("disconnected", 1, "closed by server (code 1001)")])
    else:  # the source came back numbering its quotes from 1: it restarted, history being re-checked
        w.on_source_restart = lambda symbol: True
        w.ingest([QuoteEvent("EURUSD", 1.1, 1.1002, now - 10, now - 10, seq=5),
                  QuoteEvent("EURUSD", 1.1, 1.1002, now - 5, now - 5, seq=1)])
    assert w.flush()
    # then: stale, no signal
    assert service.run_analysis(redis_client, now_ms=now).reasons == {"stale_data": 1}
    assert not Signal.objects.exists()
    # when: it is connected again / the history was re-checked, the same window signals
    if state == "disconnected":
        w.ingest([ConnectionEvent("connected", 1)])
    else:
        w.resync_done("EURUSD")
    assert w.flush()
    w.close()
    assert service.run_analysis(redis_client, now_ms=now).reasons == {"signal": 1}
