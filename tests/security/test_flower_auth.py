"""Flower, started as the Procfile starts it, answers nothing without its basic auth."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(url, auth=None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture
def flower():
    from tests.operate.test_procfile import procfile

    port = free_port()
    command = procfile()["flower"].replace("exec celery", f"exec {Path(sys.executable).parent}/celery")
    env = dict(os.environ, FLOWER_BASIC_AUTH="ops:flower-pass-6610", FLOWER_PORT=str(port))
    proc = subprocess.Popen(["sh", "-c", command], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: status(base + "/", "ops:flower-pass-6610") == 200, timeout=60, what="flower answering")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_metrics_and_healthcheck_need_the_basic_auth(flower):
    for path in ("/metrics", "/healthcheck", "/", "/api/workers"):
        assert status(flower + path) == 401, path
        assert status(flower + path, "ops:wrong") == 401, path
    assert status(flower + "/metrics", "ops:flower-pass-6610") == 200
    assert status(flower + "/healthcheck", "ops:flower-pass-6610") == 200
