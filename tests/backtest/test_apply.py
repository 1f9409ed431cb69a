"""A backtest result applied to the live StrategyConfig from the admin: diff, audit entry, undo."""

from __future__ import annotations

import pytest

from backtest import apply as applying
from backtest.models import BacktestRun, StrategyChange, Sweep
from signals import service
from signals.models import StrategyConfig
from tests.factories import make_symbol

pytestmark = pytest.mark.django_db


def a_run(**kw):
    fields = dict(strategy="volume_surge", symbol="EURUSD", source="backtesting:EURUSD", status="done",
                  params={"surge_min_ratio": 4.0}, summary={"score": {"oos": 1.5, "is": 2.0}})
    fields.update(kw)
    return BacktestRun.objects.create(**fields)


def test_apply_shows_the_diff_then_changes_the_live_config_with_an_audit_entry_and_undo_restores_it(admin_client):
    eur = make_symbol("EURUSD")
    live = StrategyConfig.objects.create(symbol=eur, params={"surge_min_ratio": 3.5, "cooldown_ms": 30000})
    run = a_run()

    page = admin_client.get(f"/admin/backtest/backtestrun/{run.pk}/apply/")
    body = page.content.decode()
    assert page.status_code == 200 and "apply-diff" in body
    assert applying.diff(run) == [("cooldown_ms", 30000, "(default)"), ("surge_min_ratio", 3.5, 4.0)]

    admin_client.post(f"/admin/backtest/backtestrun/{run.pk}/apply/")
    live.refresh_from_db()
    assert live.params == {"surge_min_ratio": 4.0}
    assert service.load_params([eur])["EURUSD"].surge_min_ratio == 4.0
    change = StrategyChange.objects.get()
    assert change.actor == "admin" and change.run == run
    assert change.before["params"] == {"surge_min_ratio": 3.5, "cooldown_ms": 30000}
    listing = admin_client.get("/admin/backtest/strategychange/").content.decode()
    assert f"/admin/backtest/strategychange/{change.pk}/undo/" in listing and "__csrf__" not in listing

    admin_client.post(f"/admin/backtest/strategychange/{change.pk}/undo/")
    live.refresh_from_db()
    assert live.params == {"surge_min_ratio": 3.5, "cooldown_ms": 30000}
    change.refresh_from_db()
    assert change.undone_at is not None and change.undone_by == "admin"
    with pytest.raises(applying.ApplyError, match="already undone"):
        applying.undo(change, "admin")


def test_apply_creates_the_symbol_row_when_missing_and_undo_removes_it_and_a_later_edit_blocks_undo():
    eur = make_symbol("EURUSD")
    run = a_run(strategy="ma_cross", params={"fast": 3, "slow": 10})
    change = applying.apply(run, "ops")
    row = StrategyConfig.objects.get(symbol=eur)
    assert row.strategy == "ma_cross" and service.load_strategies([eur])["EURUSD"][0].name == "ma_cross"
    row.params = {"fast": 4, "slow": 10}
    row.save()
    with pytest.raises(applying.ApplyError, match="edited since"):
        applying.undo(change, "ops")
    row.params = {"fast": 3, "slow": 10}
    row.save()
    applying.undo(change, "ops")
    assert not StrategyConfig.objects.filter(symbol=eur).exists()


def test_apply_refuses_an_unfinished_run_or_an_unknown_symbol():
    make_symbol("EURUSD")
    with pytest.raises(applying.ApplyError, match="not finished"):
        applying.apply(a_run(status="running"), "ops")
    with pytest.raises(applying.ApplyError, match="no symbol 'GBPUSD'"):
        applying.apply(a_run(symbol="GBPUSD"), "ops")


def test_sweep_admin_shows_progress_and_ranking_and_cancels(admin_client):
    sweep = Sweep.objects.create(definition={"strategy": "volume_surge", "symbol": "EURUSD", "source": "x",
                                             "params": {}}, combinations=[{}, {}, {}], total=3)
    a_run(sweep=sweep, sweep_index=0, summary={"score": {"oos": 0.5, "is": 3.0}})
    a_run(sweep=sweep, sweep_index=1, summary={"score": {"oos": 2.5, "is": 1.0}})
    page = admin_client.get(f"/admin/backtest/sweep/{sweep.pk}/change/").content.decode()
    assert "2/3 done" in page and page.index("2.5") < page.index("0.5")
    admin_client.post("/admin/backtest/sweep/", {"action": "cancel_sweeps", "_selected_action": [sweep.pk]})
    sweep.refresh_from_db()
    assert sweep.status == "cancelled"
