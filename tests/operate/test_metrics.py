"""Prometheus metrics and JSON logs of the real processes: gunicorn (2 workers, the Procfile's
config) serves ``/metrics`` aggregated over its workers plus the system state; an orders worker
(real ``celery worker``, prefork) serves its children's broker-call and signal → order histograms
on its metrics port; the numbers move after a fan-out to the simulator; ``/metrics`` refuses a
client without the token from an address outside METRICS_ALLOWED_IPS; every line gunicorn,
Flower and the worker print parses as JSON."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal as signals
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from orders.dispatch import dispatch_signal
from orders.lifecycle import TERMINAL
from orders.models import Order
from tests.alerts.receivers import free_port
from tests.orders.conftest import eurusd_buy_signal, sim, sim_accounts  # noqa: F401 - sim is a fixture
from tests.waiting import wait_for
from tradeops import metrics

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "metrics-token-for-the-test-0123"

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def process_env(tmp_path, **extra) -> dict:
    db = connection.settings_dict
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL, CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        CELERY_RESULT_BACKEND=settings.CELERY_RESULT_BACKEND, METRICS_DIR=str(tmp_path / "metrics"),
        METRICS_TOKEN=TOKEN, LOG_LEVEL="INFO", LOG_FORMAT="json", SIMULATION_MODE="true",
        ORDERS_RECONCILE_ON_WORKER_READY="false", **extra,
    )
    return env


class Proc:
    def __init__(self, cmd, env, log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def stop(self, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(signals.SIGTERM)  # the main process only, as honcho/Heroku do
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signals.SIGKILL)
                self.p.wait(5)
        self.log.close()

    def lines(self) -> list[str]:
        return [line for line in self.log_path.read_text().splitlines() if line.strip()]


# Celery prints this one notice with print() on SIGTERM, outside logging (celery/apps/worker.py).
CELERY_SHUTDOWN_NOTICE = re.compile(r"^worker: (Warm|Cold) shutdown \(MainProcess\)$")


def assert_json_lines(proc: Proc, what: str, ignore=None) -> list[dict]:
    lines = [line for line in proc.lines() if not (ignore and ignore.match(line))]
    assert lines, f"{what} printed nothing"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{what} printed a line that is not JSON: {line[:300]!r}") from None
    return parsed


@pytest.fixture
def web(tmp_path):
    port = free_port()
    proc = Proc([str(BIN / "gunicorn"), "tradeops.wsgi", "-c", "python:tradeops.gunicorn_conf", "--bind",
                 f"0.0.0.0:{port}", "--workers", "2", "--access-logfile", "-", "--graceful-timeout", "10"],
                process_env(tmp_path), tmp_path / "web.log")
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(url + "/healthz?checks=database", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, 60, "gunicorn to answer", procs=[proc.p])
        proc.url, proc.port = url, port
        yield proc
    finally:
        proc.stop()


def get_from(port: int, path: str, source: str, token: str | None = None) -> tuple[int, str]:
    """GET from a chosen source address (127.0.0.2 is loopback but outside the default allow-list)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, body


def sample(text: str, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total, found = total + float(m.group(4)), True
    assert found, f"no sample {name}{labels}"
    return total


def test_metrics_refused_without_the_token_from_another_address(web):
    status, body = get_from(web.port, "/metrics", "127.0.0.2")
    assert status == 403 and "token" in body
    status, _ = get_from(web.port, "/metrics", "127.0.0.2", token="wrong")
    assert status == 403
    status, body = get_from(web.port, "/metrics", "127.0.0.2", token=TOKEN)
    assert status == 200 and "tradeops_queue_depth" in body
    status, _ = get_from(web.port, "/metrics", "127.0.0.1")  # the default allow-list: loopback
    assert status == 200


def test_metrics_move_after_a_fan_out_and_every_process_logs_json(web, sim, redis_client, tmp_path):
    from orders import broker

    broker.reset_clients()
    worker_port = free_port()
    worker = Proc([str(BIN / "celery"), "-A", "tradeops", "--quiet", "worker", "-Q", "orders", "--concurrency", "2",
                   "--without-gossip", "--without-mingle", "-n", f"orders@metrics-test-{worker_port}"],
                  process_env(tmp_path, SIMULATOR_URL=sim.url, ORDERS_UNKNOWN_SETTLE_S="0",
                              METRICS_PORTS=f"orders={worker_port}"), tmp_path / "worker.log")
    flower_port = free_port()
    flower = Proc([str(BIN / "celery"), "-A", "tradeops", "flower", "--conf=tradeops/flower_conf.py",
                   "--address=127.0.0.1", f"--port={flower_port}"],
                  process_env(tmp_path, FLOWER_BASIC_AUTH="u:p"), tmp_path / "flower.log")
    try:
        accounts = sim_accounts(sim, 12)
        wait_for(lambda: b"ready" in worker.log_path.read_bytes(), 60, "the orders worker", procs=[worker.p])
        before = requests.get(web.url + "/metrics", timeout=10).text
        # requests served by both gunicorn workers (a sync worker serves one at a time, so bursts of
        # concurrent requests reach the second one): one aggregated counter
        n_requests = 0

        def web_pids() -> set[str]:
            return {f.name.rsplit("_", 1)[-1] for f in (tmp_path / "metrics" / "web").glob("counter_*.db")}

        def a_burst_reached_both_workers() -> bool:
            nonlocal n_requests
            with ThreadPoolExecutor(max_workers=8) as pool:
                codes = list(pool.map(
                    lambda _: requests.get(web.url + "/healthz?checks=database", timeout=10).status_code, range(16)))
            assert codes == [200] * 16, codes
            n_requests += len(codes)
            return len(web_pids()) == 2

        wait_for(a_burst_reached_both_workers, 30, "both gunicorn workers to serve requests", interval=0.1)
        # the fan-out
        signal = eurusd_buy_signal()
        dispatch_signal(signal.pk)
        wait_for(lambda: Order.objects.filter(signal=signal, status__in=TERMINAL).count() == len(accounts), 90,
                 "every order terminal", procs=[worker.p])
        after = requests.get(web.url + "/metrics", timeout=10).text
        # state, read at scrape: orders by status moved by the fan-out; queue depth and equity present
        assert sample(after, "tradeops_orders_last_24h", status="filled") == len(accounts)
        assert "tradeops_orders_last_24h" not in before or 'status="filled"' not in before
        sample(after, "tradeops_queue_depth", queue="orders")
        assert sample(after, "tradeops_account_equity", account=accounts[0].name) > 0
        # events: the web counter adds up over both workers' files
        web_counted = sample(after, "tradeops_http_requests_total", method="GET", status="2xx")
        assert web_counted >= n_requests
        pids = web_pids()
        assert len(pids) == 2, f"expected both gunicorn workers to have recorded requests, got {pids}"
        # the worker's port: its prefork children's histograms, aggregated
        status, worker_metrics = get_from(worker_port, "/metrics", "127.0.0.1")
        assert status == 200
        assert sample(worker_metrics, "tradeops_signal_to_order_sent_seconds_count") == len(accounts)
        opens = sum(sample(worker_metrics, "tradeops_broker_call_seconds_count", endpoint=e, outcome="200")
                    for e in {m for m in re.findall(r'endpoint="([^"]*position/open[^"]*)"', worker_metrics)})
        assert opens >= len(accounts)
        assert get_from(worker_port, "/metrics", "127.0.0.2")[0] == 403
        wait_for(lambda: b"flower" in flower.log_path.read_bytes().lower(), 30, "flower to start", procs=[flower.p])
    finally:
        worker.stop()
        flower.stop()
        web.stop()
    web_lines = assert_json_lines(web, "gunicorn")
    assert any(e.get("event") == "http_request" and e.get("path") == "/metrics" and e.get("status") == 200
               for e in web_lines)
    assert any(e.get("logger", "").startswith("gunicorn.error") for e in web_lines)
    worker_lines = assert_json_lines(worker, "the celery worker", ignore=CELERY_SHUTDOWN_NOTICE)
    assert any(e.get("signal_id") == signal.pk for e in worker_lines), "no worker line carries the signal id"
    assert_json_lines(flower, "flower")
