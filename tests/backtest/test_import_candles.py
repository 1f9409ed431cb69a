"""manage.py import_candles against the simulator's /candles over a real socket: chunked,
resumable after an interruption, never duplicating a candle, clear errors."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from backtest.data import load_series
from backtest.models import Candle
from matchtrader.client import MatchTraderClient
from matchtrader.simulator.testing import running_simulator
from tests.factories import make_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def sim_account(settings, redis_client):
    from orders import broker

    with running_simulator(seed=5, symbols=("EURUSD",), tick_rate=2.0, history_minutes=240,
                           surges_per_hour=0.0) as sim:
        sim.control.create_account("hist@bt.test", "hist-pw-1")
        settings.SIMULATION_MODE = True
        settings.SIMULATOR_URL = sim.url
        broker.reset_clients()
        account = make_account("hist", email="hist@bt.test", password="hist-pw-1")
        yield sim, account
        broker.reset_clients()


def run(*args) -> str:
    out = io.StringIO()
    call_command("import_candles", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_an_interrupted_import_resumes_and_never_duplicates(sim_account):
    sim, account = sim_account
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, end = now - timedelta(minutes=200), now - timedelta(minutes=20)
    args = ["--account", "hist", "--symbol", "EURUSD", "--interval", "M1", "--from", start.isoformat(),
            "--to", end.isoformat(), "--chunk", "25"]
    truth = MatchTraderClient(sim.url, "hist@bt.test", "hist-pw-1", "0").candles("EURUSD", "M1", start,
                                                                                 end - timedelta(seconds=1))
    assert len(truth) == 180

    first = run(*args, "--max-chunks", "3")  # interrupted after 3 chunks
    assert "stopped early" in first and Candle.objects.count() == 75
    second = run(*args)
    assert "(resumed)" in second and "complete" in second
    assert Candle.objects.count() == 180
    third = run(*args)
    assert "0 new" in third or "0 chunk" in third
    # a range overlapping what is stored: only the new minutes are added, nothing twice
    run("--account", "hist", "--symbol", "EURUSD", "--interval", "M1", "--from", (start - timedelta(minutes=10)).isoformat(),
        "--to", end.isoformat(), "--chunk", "1000")
    assert Candle.objects.count() == 190
    stored = {(int(c.time.timestamp() * 1000), c.close) for c in Candle.objects.filter(time__gte=start)}
    assert stored == {(c.time_ms, c.close) for c in truth}
    # the backtest reads them back
    series = load_series("db:M1", "EURUSD", start.isoformat(), end.isoformat())
    assert len(series) == 180 and series.times_ms[0] == int(start.timestamp() * 1000)


def test_bad_import_arguments_are_clear_errors(sim_account):
    now = datetime.now(UTC)
    base = ["--account", "hist", "--symbol", "EURUSD", "--from", (now - timedelta(hours=1)).isoformat(),
            "--to", now.isoformat()]
    with pytest.raises(CommandError, match="no account 'nobody'"):
        run("--account", "nobody", *base[2:])
    with pytest.raises(CommandError, match="interval must be one of"):
        run(*base, "--interval", "M7")
    with pytest.raises(CommandError, match="empty range"):
        run("--account", "hist", "--symbol", "EURUSD", "--from", now.isoformat(), "--to", now.isoformat())
    with pytest.raises(CommandError, match="--from/--to"):
        run("--account", "hist", "--symbol", "EURUSD", "--from", "yesterday", "--to", now.isoformat())
    with pytest.raises(CommandError, match="broker error.*NOPE|Unknown symbol"):
        run("--account", "hist", "--symbol", "NOPE", *base[4:])
    assert not Candle.objects.exists()


def test_a_range_into_the_future_stores_only_closed_candles_and_stops(sim_account):
    now = datetime.now(UTC)
    out = run("--account", "hist", "--symbol", "EURUSD", "--from", (now - timedelta(minutes=30)).isoformat(),
              "--to", (now + timedelta(hours=1)).isoformat(), "--chunk", "10")
    assert "stopped early" in out
    newest = Candle.objects.order_by("-time").first()
    assert newest.time + timedelta(minutes=1) <= datetime.now(UTC)
