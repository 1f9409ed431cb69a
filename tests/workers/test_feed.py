"""The feed process end to end: the real simulator over a real socket, the real Redis and the
test database. The feed runs in a thread (``FeedWorker.running``) or, for SIGTERM, as
``manage.py run_feed`` in a subprocess; every wait polls a condition with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command

from marketdata import redis_keys as keys
from marketdata.health import read_gaps, read_health
from marketdata.models import Symbol
from marketdata.reader import read_windows
from matchtrader.simulator.testing import running_simulator
from tests.waiting import wait_for as wait_until
from tests.factories import make_symbol
from workers.feed import FeedConfig, FeedWorker

FEED_EMAIL = "feed@test.local"
FEED_PASSWORD = "feed-pw"




@pytest.fixture
def sim():
    with running_simulator(seed=3, tick_rate=40, history_minutes=30) as handle:
        handle.control.create_account(FEED_EMAIL, FEED_PASSWORD)
        yield handle


def feed_config(sim, **kw) -> FeedConfig:
    base = dict(base_url=sim.url, email=FEED_EMAIL, password=FEED_PASSWORD, symbols_poll_s=0.2,
                health_interval_s=0.2, warmup_minutes=30)
    base.update(kw)
    return FeedConfig(**base)


@pytest.mark.django_db(transaction=True)
def test_enabled_symbol_streams_disabled_one_stops(sim, redis_client):
    # given: EURUSD enabled, GBPUSD disabled in the database
    make_symbol("EURUSD", enabled=True)
    make_symbol("GBPUSD", enabled=False)
    worker = FeedWorker(feed_config(sim), redis=redis_client)
    with worker.running():
        # then: EURUSD streams, with 1 m history from the REST warm-up; GBPUSD does not
        wait_until(lambda: redis_client.xlen(keys.ticks_stream("EURUSD")) >= 20, what="EURUSD ticks")
        assert redis_client.smembers(keys.SYMBOLS) == {b"EURUSD"}
        win = read_windows(redis_client, ["EURUSD"])["EURUSD"]
        assert len(win.bars_1m) >= 25  # 30 min of history minus the forming minute, plus live
        assert win.book is not None and len(win.book.bid_prices) > 0
        assert redis_client.xlen(keys.ticks_stream("GBPUSD")) == 0

        # when: GBPUSD is enabled in the admin (a plain DB update), no restart
        Symbol.objects.filter(name="GBPUSD").update(enabled=True)
        wait_until(lambda: redis_client.xlen(keys.ticks_stream("GBPUSD")) >= 10, what="GBPUSD ticks")

        # when: EURUSD is disabled, it stops: once unsubscribed its stream no longer grows
        Symbol.objects.filter(name="EURUSD").update(enabled=False)
        wait_until(lambda: redis_client.smembers(keys.SYMBOLS) == {b"GBPUSD"}, what="md:symbols update")
        g0 = redis_client.xlen(keys.ticks_stream("GBPUSD"))
        # (frames already in flight when the unsubscribe went out may still land: let them)
        wait_until(lambda: redis_client.xlen(keys.ticks_stream("GBPUSD")) >= g0 + 80, what="more GBPUSD")
        e1 = redis_client.xlen(keys.ticks_stream("EURUSD"))
        g1 = redis_client.xlen(keys.ticks_stream("GBPUSD"))
        wait_until(lambda: redis_client.xlen(keys.ticks_stream("GBPUSD")) >= g1 + 40, what="still more GBPUSD")
        assert redis_client.xlen(keys.ticks_stream("EURUSD")) == e1

        health = wait_until(lambda: (h := read_health(redis_client)).symbols.get("GBPUSD") and h,
                            what="health")
        assert health.process["transport"] == "websocket"
        assert health.process["connection"] == "connected"
        assert health.symbols["GBPUSD"].ticks > 0
        assert not health.problems(5)


def test_dropped_socket_reconnects_and_the_gap_is_recorded(sim, redis_client):
    worker = FeedWorker(feed_config(sim), redis=redis_client, symbol_source=lambda: {"EURUSD", "USDJPY"})
    worker.transport.backoff_base = 0.05  # reconnect quickly in the test
    with worker.running():
        wait_until(lambda: redis_client.xlen(keys.ticks_stream("USDJPY")) >= 10, what="ticks")
        # when: the server drops every WebSocket
        assert sim.control.drop_websockets() >= 1
        # then: a reconnect gap is recorded for the subscribed symbols, and ticks flow again
        gaps = wait_until(lambda: [g for g in read_gaps(redis_client) if g["reason"] == "reconnect"],
                          what="reconnect gap")
        assert set(gaps[0]["symbols"].split(",")) == {"EURUSD", "USDJPY"}
        assert int(gaps[0]["to_ms"]) >= int(gaps[0]["from_ms"])
        n = redis_client.xlen(keys.ticks_stream("USDJPY"))
        wait_until(lambda: redis_client.xlen(keys.ticks_stream("USDJPY")) >= n + 10, what="ticks after reconnect")
        health = wait_until(lambda: (h := read_health(redis_client)).process.get("reconnects", 0) >= 1 and h,
                            what="reconnects in health")
        assert health.process["gaps"] >= 1 and health.symbols["USDJPY"].gaps >= 1


def test_malformed_and_out_of_order_frames_are_counted_and_lose_no_good_tick(sim, redis_client):
    # given: the simulator garbles frames (extra truncated copies, replayed older frames)
    sim.control.set_faults(p_ws_malformed=0.3, p_ws_out_of_order=0.2)
    worker = FeedWorker(feed_config(sim), redis=redis_client, symbol_source=lambda: {"EURUSD"}, warmup=False)
    with worker.running():
        wait_until(lambda: (h := read_health(redis_client)).process.get("malformed", 0) >= 20
                   and h.process.get("out_of_order", 0) >= 10, what="bad frames counted")
    # then: the good frames' sequence has no hole (no "sequence" gap), ticks are in time order
    assert not [g for g in read_gaps(redis_client) if g["reason"] == "sequence"]
    win = read_windows(redis_client, ["EURUSD"], ticks=5000)["EURUSD"]
    assert len(win.ticks) > 50
    quotes = win.ticks.volume == 0
    assert (win.ticks.ts_ms[quotes][1:] >= win.ticks.ts_ms[quotes][:-1]).all()
    h = read_health(redis_client, ["EURUSD"])
    assert h.symbols["EURUSD"].out_of_order >= 10
    assert h.process["connection"] == "stopped"  # clean shutdown wrote a last health record


@pytest.mark.django_db
def test_feed_status_command(redis_client, capsys):
    # no feed ever ran: stale, exit 1
    with pytest.raises(SystemExit) as exc:
        call_command("feed_status", "--max-age", "5")
    assert exc.value.code == 1
    # a fresh health record: exit 0 (no exception), a table, and JSON on request
    from marketdata.store import MarketDataWriter
    from matchtrader.events import QuoteEvent

    now = int(time.time() * 1000)
    w = MarketDataWriter(redis_client, transport_name="websocket")
    w.set_subscribed(["EURUSD"])
    w.ingest([QuoteEvent("EURUSD", 1.1, 1.1002, now - 5, now)])
    w.write_health()
    assert w.flush()
    call_command("feed_status", "--max-age", "5")
    out = capsys.readouterr().out
    assert "EURUSD" in out and "status: ok" in out
    call_command("feed_status", "--json", "--max-age", "5")
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["stale"] is False and data["symbols"]["EURUSD"]["ticks"] == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_feed_command_sigterm_flushes_and_exits_zero(sim, redis_client):
    make_symbol("EURUSD", enabled=True)
    db = settings.DATABASES["default"]
    env = dict(os.environ, FEED_BASE_URL=sim.url, FEED_EMAIL="feed2@test.local", FEED_PASSWORD="pw2",
               FEED_SIM_AUTO_ACCOUNT="true", SIMULATION_MODE="true", REDIS_URL=settings.REDIS_URL,
               DATABASE_URL=f"postgres://{quote(db['USER'])}{':' + quote(db['PASSWORD']) if db.get('PASSWORD') else ''}"
                            f"@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
               FEED_SYMBOLS_POLL_S="0.2", FEED_WARMUP_MINUTES="10", LOG_LEVEL="INFO")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "manage.py", "run_feed"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: redis_client.xlen(keys.ticks_stream("EURUSD")) >= 20 or proc.poll() is not None,
                   timeout=30, what="ticks from the subprocess feed")
        assert proc.poll() is None, proc.stdout.read()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "feed_stopped" in out
    health = read_health(redis_client, ["EURUSD"])
    assert health.process["connection"] == "stopped"
    # everything the process counted was flushed before it exited
    assert health.symbols["EURUSD"].ticks == redis_client.xlen(keys.ticks_stream("EURUSD"))


def test_polling_transport_feeds_redis(sim, redis_client):
    # the real Platform API path: REST /quotations + /candles (no depth, no prints)
    worker = FeedWorker(feed_config(sim, transport="polling", poll_interval_s=0.5), redis=redis_client,
                        symbol_source=lambda: {"EURUSD", "XAUUSD"})
    with worker.running():
        wait_until(lambda: redis_client.xlen(keys.ticks_stream("XAUUSD")) >= 3, timeout=15, what="polled ticks")
        health = wait_until(lambda: (h := read_health(redis_client)).process.get("ticks", 0) >= 3 and h,
                            what="health")
    assert health.process["transport"] == "polling"
    win = read_windows(redis_client, ["EURUSD", "XAUUSD"])
    for w in win.values():
        assert len(w.ticks) >= 1 and (w.ticks.volume == 0).all()  # quotes only
        assert w.book is None
        assert len(w.bars_1m) >= 25  # broker M1 candles: warm-up history, then polled candles
        assert (w.bars_1m.volume[:-1] > 0).all()
        assert (w.bars_1m.ts_ms[1:] > w.bars_1m.ts_ms[:-1]).all()


def test_redis_away_for_a_moment_does_not_kill_the_feed(sim, tmp_path):
    import shutil

    import redis as redis_lib

    from tests.marketdata.conftest import PrivateRedis

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not on PATH")
    server = PrivateRedis(str(tmp_path / "r.sock"))
    server.start()
    client = redis_lib.Redis(unix_socket_path=server.socket_path, socket_timeout=1, socket_connect_timeout=0.5)
    worker = FeedWorker(feed_config(sim, redis_backoff_max_s=0.2), redis=client, symbol_source=lambda: {"EURUSD"},
                        warmup=False)
    try:
        with worker.running():
            wait_until(lambda: client.xlen(keys.ticks_stream("EURUSD")) >= 10, what="ticks")
            # when: Redis goes away while ticks keep arriving
            server.stop()
            wait_until(lambda: worker.writer.redis_errors >= 2, what="the writer to notice")
            wait_until(lambda: worker.writer.buffered_ticks >= 20, what="ticks buffered meanwhile")
            # then: it comes back, the buffer drains into it and the feed is still running
            server.start()
            wait_until(lambda: client.xlen(keys.ticks_stream("EURUSD")) >= 20, what="buffered ticks delivered")
            n = client.xlen(keys.ticks_stream("EURUSD"))
            wait_until(lambda: client.xlen(keys.ticks_stream("EURUSD")) >= n + 10, what="live ticks again")
            assert worker.writer.dropped == 0
            assert read_health(client).process["redis_errors"] >= 2
    finally:
        client.close()
        server.stop()


def test_candles_to_bars_leaves_out_the_forming_candle():
    from decimal import Decimal

    from matchtrader.models import Candle
    from workers.feed import candles_to_bars

    t = 1_700_000_040_000
    candles = [Candle(t - 60_000, Decimal("1.1"), Decimal("1.2"), Decimal("1.0"), Decimal("1.15"), Decimal("42")),
               Candle(t, Decimal("1.15"), Decimal("1.16"), Decimal("1.14"), Decimal("1.155"), Decimal("7"))]
    bars = candles_to_bars(candles, now_ms=t + 30_000)
    assert [(b.ts_ms, b.open, b.high, b.low, b.close, b.volume, b.buy_volume, b.ticks) for b in bars] == [
        (t - 60_000, 1.1, 1.2, 1.0, 1.15, 42.0, 0.0, 42)]
