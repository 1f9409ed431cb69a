"""A real Celery worker logs the same JSON lines as every other process (the ``setup_logging``
hook in tradeops/celery.py), not Celery's own ``[time: LEVEL/Process] message`` format."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
CELERY_FORMAT = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+: (DEBUG|INFO|WARNING|ERROR|CRITICAL)/")


def test_worker_logs_are_json_lines_with_our_keys():
    env = dict(os.environ, LOG_LEVEL="INFO", LOG_FORMAT="json")
    name = f"logtest-{os.getpid()}@%h"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tradeops", "-q", "worker", "-Q", f"logtest-{os.getpid()}", "-n", name,
         "--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("ready." in line for line in lines), timeout=60, what="the worker to be ready",
                 procs=[proc])
    finally:
        proc.terminate()
        proc.wait(30)
        reader.join(10)
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    ready = [e for e in logged if e["event"].endswith("ready.")]
    assert ready and ready[0]["logger"] == "celery.apps.worker" and ready[0]["level"] == "info"
    assert all({"event", "level", "logger", "timestamp"} <= set(e) for e in logged)
    assert not [line for line in lines if CELERY_FORMAT.match(line)]
