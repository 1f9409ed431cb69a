"""Sweeps: validated grids, one task per combination through a REAL Celery worker started with
the Procfile's own command line (the ``backtest`` queue, concurrency 1, nice), ranking, cancel,
and applying a result to the live StrategyConfig with an audit entry and undo."""

from __future__ import annotations

import io
import os
import signal as os_signal
import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from backtest import sweeps
from backtest.models import BacktestRun, Sweep
from backtest.runner import Definition
from signals.strategy import StrategyParamsError
from tests.signals.test_beat_e2e import subprocess_env
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_grid_expansion_sampling_and_validation():
    combos = sweeps.combinations("volume_surge", {"cooldown_ms": 1000},
                                 {"surge_min_ratio": {"min": 2, "max": 3, "step": 0.5}, "recent_window_s": [3, 5]})
    assert len(combos) == 6 and all(c["cooldown_ms"] == 1000 for c in combos)
    assert {(c["surge_min_ratio"], c["recent_window_s"]) for c in combos} == {
        (r, w) for r in (2.0, 2.5, 3.0) for w in (3, 5)}
    picked = sweeps.combinations("volume_surge", {}, {"surge_min_ratio": [2, 3, 4, 5], "recent_window_s": [3, 5]},
                                 sample=3, seed=9)
    assert len(picked) == 3 and picked == sweeps.combinations(
        "volume_surge", {}, {"surge_min_ratio": [2, 3, 4, 5], "recent_window_s": [3, 5]}, sample=3, seed=9)
    with pytest.raises(StrategyParamsError, match="surge_min_ratio: 0.5 must be >= 1.0"):
        sweeps.combinations("volume_surge", {}, {"surge_min_ratio": [0.5]})
    with pytest.raises(StrategyParamsError, match="unknown strategy parameter"):
        sweeps.combinations("volume_surge", {}, {"nope": [1]})
    with pytest.raises(StrategyParamsError, match="too many|more than"):
        sweeps.combinations("volume_surge", {}, {"cooldown_ms": {"min": 0, "max": 10_000_000, "step": 1000}})


@pytest.mark.django_db
def test_bad_sweep_cli_input_is_refused_before_anything_is_queued():
    for args, message in ((["--grid", '{"surge_min_ratio": [0.5]}'], "must be >= 1.0"),
                          (["--grid", "nope"], "not JSON"), ([], "--grid is required"),
                          (["--grid", '{"surge_min_ratio": [3]}', "--symbol", "NOPE"], "unknown symbol"),
                          (["--status", "999"], "no sweep #999")):
        with pytest.raises(CommandError, match=message):
            call_command("backtest_sweep", *args, stdout=io.StringIO())
    assert not Sweep.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_sweep_runs_through_a_real_worker_ranked_by_out_of_sample_score(redis_client, tmp_path):
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line)
    command = procfile["backtest"].replace("exec ", "exec " + "", 1)
    assert "-Q backtest" in command and "--concurrency 1" in command and "nice" in command
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(["sh", "-c", command.replace("celery", f"{ROOT}/.venv/bin/celery", 1)], cwd=ROOT,
                              env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out = io.StringIO()
        call_command("backtest_sweep", "--grid", '{"surge_min_ratio": [2.5, 4.0]}', "--max-bars", "700",
                     "--seeds", "1", "--wait", "--timeout", "240", stdout=out, stderr=io.StringIO())
        sweep = Sweep.objects.get()
        assert sweep.status == Sweep.Status.DONE and sweep.progress()["done"] == 2
        runs = sweep.ranked()
        assert sorted(r.params["surge_min_ratio"] for r in runs) == [2.5, 4.0]
        scores = [r.summary["score"]["oos"] for r in runs]
        assert scores == sorted(scores, reverse=True)
        text = out.getvalue()
        assert "OOS score" in text and "IS score" in text and "surge_min_ratio" in text
        # a redelivered message finds its finished row: no second run
        assert sweeps.run_combination(sweep.pk, 0) == "already"
        assert BacktestRun.objects.filter(sweep=sweep).count() == 2
    except Exception as exc:
        raise AssertionError(f"{exc}\n{(tmp_path / 'worker.log').read_text()[-3000:]}") from exc
    finally:
        os.killpg(worker.pid, os_signal.SIGTERM)
        worker.wait(20)
        log.close()


@pytest.mark.django_db
def test_a_cancelled_sweep_runs_nothing_more():
    sweep = sweeps.create(Definition(max_bars=100), {"surge_min_ratio": [2.0, 3.0, 4.0]}, send=False)
    assert sweeps.cancel(sweep) == 3
    assert sweeps.run_combination(sweep.pk, 1) == "skipped_cancelled"
    assert not BacktestRun.objects.exists()
    sweep.refresh_from_db()
    assert sweep.status == Sweep.Status.CANCELLED
