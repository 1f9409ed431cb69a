"""Stored runs: ``manage.py backtest`` end to end (definition, seeds, in/out-of-sample, summary,
trades), exports, the admin and the dashboard page, and bad CLI input."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command

from backtest.models import BacktestRun, BacktestTrade

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def stored_run(django_db_setup, django_db_blocker, tmp_path_factory):
    out = tmp_path_factory.mktemp("bt")
    with django_db_blocker.unblock():
        call_command("backtest", "--seeds", "1,2", "--max-bars", "800", "--name", "fixture",
                     "--export-json", str(out / "run.json"), "--export-csv", str(out / "trades.csv"),
                     stdout=io.StringIO())
        run = BacktestRun.objects.get(name="fixture")
    yield run, out
    with django_db_blocker.unblock():
        run.delete()


def test_a_run_stores_its_definition_summary_and_every_seeds_trades(stored_run):
    run, out = stored_run
    assert run.status == "done" and run.bars == 800 and run.seeds == [1, 2] and run.code_version
    assert run.effective_params["surge_min_ratio"] == 3.0
    per_seed = run.summary["per_seed"]
    for seed in ("1", "2"):
        all_, is_, oos = per_seed[seed]["all"], per_seed[seed]["is"], per_seed[seed]["oos"]
        assert all_["trades"] == is_["trades"] + oos["trades"]
        assert all_["net_pnl"] == pytest.approx(is_["net_pnl"] + oos["net_pnl"], abs=0.011)
        assert BacktestTrade.objects.filter(run=run, seed=int(seed)).count() == all_["trades"]
    assert sum(per_seed[s]["all"]["trades"] for s in ("1", "2")) > 0
    assert run.summary["aggregate"]["all"]["net_pnl"]["min"] <= run.summary["aggregate"]["all"]["net_pnl"]["max"]
    assert "absent" in run.inputs["order book (imbalance, walls)"]
    doc = json.loads((out / "run.json").read_text())
    rows = list(csv.DictReader((out / "trades.csv").open()))
    assert len(doc["trades"]) == len(rows) == run.trades.count()
    assert {r["segment"] for r in rows} <= {"is", "oos"}


def test_admin_and_dashboard_pages_show_the_run(admin_client, stored_run):
    run, _ = stored_run
    page = admin_client.get(f"/admin/backtest/backtestrun/{run.pk}/change/")
    assert page.status_code == 200 and b"net_pnl" in page.content
    assert admin_client.get(f"/admin/backtest/backtestrun/{run.pk}/csv/").content.startswith(b"seed,segment")
    dash = admin_client.get(f"/backtests/{run.pk}/")
    assert dash.status_code == 200
    body = dash.content.decode()
    assert body.count("chart-line") == 3 and "Which analyzers had real input" in body
    assert admin_client.get("/admin/backtest/backtestrun/").status_code == 200
    assert 'href="/backtests/"' in admin_client.get("/dashboard/").content.decode()


@pytest.mark.parametrize("args, message", [
    (["--symbol", "NOPE"], "unknown symbol 'NOPE'"),
    (["--from", "2030-01-01", "--to", "2030-02-01"], "no bars of EURUSD in the range"),
    (["--param", "surge_min_ratio=0.5"], "surge_min_ratio: 0.5 must be >= 1.0"),
    (["--param", "nonsense=1"], "unknown strategy parameter"),
    (["--strategy", "nope"], "unknown strategy 'nope'"),
    (["--seeds", "a,b"], "--seeds"),
    (["--accounts", '[{"name": "x", "equity": -5}]'], "equity must be > 0"),
    (["--accounts", "{"], "--accounts is not JSON"),
    (["--oos-fraction", "1.5"], "oos_fraction"),
    (["--source", "/nonexistent.csv"], "/nonexistent.csv"),
])
def test_bad_cli_input_is_a_clear_error_and_stores_nothing(args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace("'", "'")):
        call_command("backtest", "--max-bars", "50", *args, stdout=io.StringIO())
    assert not BacktestRun.objects.exclude(name="fixture").exists()


def test_the_demo_backtest_is_run_once_per_code_version(monkeypatch):
    from backtest import demo, runner

    calls = []
    real = runner.run_definition

    def short(defn):
        calls.append(defn)
        defn.max_bars, defn.seeds = 300, [1]
        return real(defn)

    monkeypatch.setattr(runner, "run_definition", short)
    monkeypatch.setattr(demo, "run_and_save", lambda d: runner.save(short(d)))
    first = demo.ensure_demo_run()
    again = demo.ensure_demo_run()
    assert "demo backtest #" in first and "already there" in again and len(calls) == 1
    assert BacktestRun.objects.get(name=demo.DEMO_NAME).status == "done"
