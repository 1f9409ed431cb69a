"""manage.py healthcheck: non-zero when something is down, zero with fresh heartbeats."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from marketdata import redis_keys
from dashboard import health
from workers import heartbeat

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block exits: nothing listens there


def now_ms() -> int:
    return int(time.time() * 1000)


def plant_fresh_heartbeats(r, at_ms=None):
    at = at_ms or now_ms()
    r.hset(redis_keys.HEALTH, mapping={"heartbeat_ms": at, "transport": "websocket", "connection": "connected"})
    r.sadd(redis_keys.SYMBOLS, "EURUSD")
    r.hset(redis_keys.health_symbol("EURUSD"), mapping={"last_tick_ms": at - 20, "last_recv_ms": at, "ticks": 5})
    heartbeat.write_beat(r, at)
    heartbeat.write_worker(r, "orders@test", ["orders", "default"], at)
    heartbeat.write_worker(r, "analysis@test", ["analysis"], at)
    heartbeat.write_worker(r, "ops@test", ["ops"], at)
    r.set(health.ANALYSIS_LAST_RUN_KEY, at)
    # a clock measurement within limits, as check_clock caches it (measured for real in test_clock_*)
    r.set(health.CLOCK_CACHE_KEY, json.dumps({"offset_s": 0.1, "bound_s": 0.0, "rtt_s": 0.001, "at_ms": at,
                                              "url": settings.HEALTH_CLOCK_URL or settings.FEED_BASE_URL}))


def run_healthcheck(*args):
    """-> (exit code, stdout) of the command run in this process (on the test database)."""
    out = StringIO()
    try:
        call_command("healthcheck", *args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue()


def test_exits_non_zero_when_redis_is_unreachable():
    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", LOG_LEVEL="WARNING",
               DATABASE_URL=_database_url())
    proc = subprocess.run([sys.executable, "manage.py", "healthcheck", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "down"
    assert report["checks"]["database"]["ok"] is True
    assert report["checks"]["redis"]["ok"] is False and "ConnectionError" in report["checks"]["redis"]["detail"]
    assert report["checks"]["feed"]["detail"] == "unknown: Redis is down"


def _database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def test_exits_zero_with_fresh_heartbeats(redis_client):
    plant_fresh_heartbeats(redis_client)
    code, out = run_healthcheck()
    assert code == 0, out
    assert out.count("ok  ") == len(health.CHECKS) and "status: ok" in out


def test_stale_beat_and_missing_workers_fail(redis_client):
    plant_fresh_heartbeats(redis_client)
    heartbeat.write_beat(redis_client, now_ms() - 120_000)
    redis_client.delete(heartbeat.WORKERS_KEY)
    code, out = run_healthcheck("--json")
    report = json.loads(out)
    assert code == 1
    assert report["checks"]["beat"]["ok"] is False and "120" in report["checks"]["beat"]["detail"]
    assert report["checks"]["workers"]["ok"] is False
    assert report["checks"]["feed"]["ok"] is True


def test_a_queue_nobody_consumes_fails_the_worker_check(redis_client):
    plant_fresh_heartbeats(redis_client)
    heartbeat.remove_worker(redis_client, "analysis@test")
    code, out = run_healthcheck("--only", "workers")
    assert code == 1 and "nobody consumes analysis" in out


def test_stale_feed_fails(redis_client):
    plant_fresh_heartbeats(redis_client, at_ms=now_ms() - 60_000)
    code, out = run_healthcheck("--only", "feed")
    assert code == 1 and "old" in out


def test_only_and_skip(redis_client):
    code, out = run_healthcheck("--only", "database,redis")
    assert code == 0 and "database" in out and "feed" not in out
    with pytest.raises(CommandError, match="unknown check"):
        call_command("healthcheck", "--only", "disk", stdout=StringIO())
    with pytest.raises(CommandError, match="no check left"):
        call_command("healthcheck", "--only", "redis", "--skip", "redis", stdout=StringIO())
