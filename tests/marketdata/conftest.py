"""Fixtures of the market-data tests."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis as redis_lib


class PrivateRedis:
    """A real redis-server of our own on a unix socket (no TCP port at all), which a test can
    stop and start again to make Redis "briefly unavailable" without touching the shared one."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.socket_path, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        probe = redis_lib.Redis(unix_socket_path=self.socket_path, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                probe.ping()
                break
            except redis_lib.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("private redis-server did not start") from None
                time.sleep(0.02)
        probe.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not on PATH")
    server = PrivateRedis(str(tmp_path / "redis.sock"))
    server.start()
    client = redis_lib.Redis(unix_socket_path=server.socket_path, socket_timeout=1, socket_connect_timeout=0.5)
    try:
        yield client, server
    finally:
        client.close()
        server.stop()
