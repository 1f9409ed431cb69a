"""The "Done when" of the operate issue, end to end: scripts/smoke.sh starts the whole system as
``make run`` does (honcho, every Procfile process, fresh database, free ports), waits for a
Signal and an Order (120 s deadline), checks the healthcheck, then stops it with SIGTERM and
checks that every process exited cleanly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_make_run_produces_signals_and_orders_and_stops_cleanly():
    db = os.environ.get("TEST_DATABASE_NAME", "test_tradeops") + "_smoke"
    env = dict(os.environ, SMOKE_DB=db, SMOKE_REDIS_URL=settings.REDIS_URL, SMOKE_DEADLINE_S="120",
               SMOKE_LOG=str(ROOT / "artifacts" / "smoke.log"))
    proc = subprocess.run(["bash", "scripts/smoke.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "processes stopped cleanly" in proc.stdout
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", db], check=False,
                   capture_output=True)
