"""Walk-forward: rolling in-sample / out-of-sample folds, their per-fold results in the run's
summary (CLI, admin, dashboard page), and sweeps ranked on the mean out-of-sample score over the
folds with the in-sample mean beside it."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from backtest import sweeps, walkforward
from backtest.metrics import ranking_scores
from backtest.models import BacktestRun, BacktestTrade
from backtest.runner import Definition

pytestmark = pytest.mark.django_db


def test_folds_roll_forward_by_one_out_of_sample_window():
    # 1000 bars, 4 folds, in-sample 3x: out-of-sample 1000 // 7 = 142 bars, in-sample 426
    got = [(f.is_lo, f.is_hi, f.oos_lo, f.oos_hi) for f in walkforward.folds(1000, 4, 3.0)]
    assert got == [(0, 426, 426, 568), (142, 568, 568, 710), (284, 710, 710, 852), (426, 852, 852, 1000)]
    assert [(f.is_hi - f.is_lo, f.oos_hi - f.oos_lo) for f in walkforward.folds(100, 2, 1.0)] == [(33, 33), (33, 34)]
    with pytest.raises(walkforward.WalkForwardError, match="folds must be in"):
        walkforward.folds(1000, 1)
    with pytest.raises(walkforward.WalkForwardError, match="too few"):
        walkforward.folds(10, 5, 3.0)


def test_a_walk_forward_run_reports_every_fold(admin_client):
    out = io.StringIO()
    call_command("backtest", "--max-bars", "900", "--seeds", "1,2", "--walk-forward", "3", "--wf-is-ratio", "2",
                 "--param", "surge_min_ratio=2", "--name", "wf", stdout=out)
    run = BacktestRun.objects.get(name="wf")
    wf = run.summary["walk_forward"]
    assert wf["folds_requested"] == 3 and len(wf["folds"]) == 3 and wf["is_ratio"] == 2.0
    # 900 // (3 + 2) = 180 out-of-sample bars per fold, 360 in-sample
    assert [(f["is"]["bars"], f["oos"]["bars"]) for f in wf["folds"]] == [
        ([0, 360], [360, 540]), ([180, 540], [540, 720]), ([360, 720], [720, 900])]
    # each side counts the trades opened in its bars (seed by seed)
    for f in wf["folds"]:
        for seg in ("is", "oos"):
            lo, hi = f[seg]["bars"]
            per_seed = [run.summary["per_seed"][s]["folds"][f["fold"] - 1][seg]["trades"] for s in ("1", "2")]
            stored = [BacktestTrade.objects.filter(
                run=run, seed=s, open_time__gte=f[seg]["from"], open_time__lte=f[seg]["to"]).count() for s in (1, 2)]
            assert per_seed == stored
            assert f[seg]["spread"]["trades"]["min"] == min(per_seed)
    assert sum(f["oos"]["spread"]["trades"]["max"] for f in wf["folds"]) > 0, "some out-of-sample trades"
    assert wf["score"]["oos"] == pytest.approx(sum(f["oos"]["score"] for f in wf["folds"]) / 3, abs=1e-4)
    assert ranking_scores(run.summary) == (wf["score"]["oos"], wf["score"]["is"], "walk-forward")
    text = out.getvalue()
    assert "walk-forward (3 folds" in text and "fold 3: IS" in text
    assert b"Walk-forward: 3 folds" in admin_client.get(f"/admin/backtest/backtestrun/{run.pk}/change/").content
    assert "Walk-forward: 3 folds" in admin_client.get(f"/backtests/{run.pk}/").content.decode()


@pytest.mark.parametrize("args, message", [(["--walk-forward", "1"], "walk_forward"),
                                           (["--walk-forward", "40"], "too few")])
def test_bad_walk_forward_input_is_a_clear_error(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("backtest", "--max-bars", "100", *args, stdout=io.StringIO())
    assert not BacktestRun.objects.exists()


def test_a_walk_forward_sweep_ranks_on_the_mean_out_of_sample_score_over_the_folds():
    defn = Definition(max_bars=600, seeds=[1], walk_forward=2)
    sweep = sweeps.create(defn, {"surge_min_ratio": [1.5, 2.0, 4.0]}, send=False)
    for i in range(3):  # the task body, in process (the real worker is covered by test_sweeps)
        assert sweeps.run_combination(sweep.pk, i) == "done"
    rows = sweeps.ranking(sweep)
    assert [r["kind"] for r in rows] == ["walk-forward"] * 3
    oos = [r["oos"] for r in rows]
    assert oos == sorted(oos, reverse=True)
    for r in rows:
        wf = BacktestRun.objects.get(pk=r["run"]).summary["walk_forward"]
        assert (r["oos"], r["is"]) == (wf["score"]["oos"], wf["score"]["is"])
    out = io.StringIO()
    call_command("backtest_sweep", "--status", str(sweep.pk), stdout=out)
    assert "means over the folds" in out.getvalue()
