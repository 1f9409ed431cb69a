"""The fault-test harness: real components a test starts, breaks and restarts itself.

* :class:`PrivateRedis` — a ``redis-server`` on a free port, in a temporary directory, with the
  persistence ``scripts/setup.sh`` ships (append-only, fsync every second). The shared Redis on
  6379 is never restarted by a test; a test that needs Redis to die uses one of these.
* :class:`TcpProxy` — a small asyncio TCP proxy in a thread, in front of PostgreSQL (or anything):
  ``cut()`` drops every connection and refuses new ones, ``restore()`` lets them through again.
* :func:`start_orders_worker` — the Procfile's orders worker (``celery -A tradeops worker -Q
  orders,default``), as a subprocess with the SHIPPED settings: only the URLs of this test's
  Redis, database and simulator are passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal as signals
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis as redis_lib

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A private ``redis-server``: ``start()``, ``kill()`` (SIGKILL), ``restart()`` on the same
    port and data directory, so what its append-only file kept comes back."""

    def __init__(self, port: int | None = None, *, appendonly: bool = True, extra: tuple[str, ...] = ()):
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tradeops-redis-"))
        self.appendonly = appendonly
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
                "--save", "", "--daemonize", "no", "--logfile", str(self.dir / "redis.log")]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        self.proc = subprocess.Popen([*args, *self.extra], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis_lib.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_for(lambda: _pings(client), 10, f"redis-server on port {self.port}", procs=[self.proc])
        client.close()
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signals.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


class TcpProxy:
    """``127.0.0.1:<port>`` → ``target``: an asyncio proxy in a daemon thread. ``cut()`` closes
    every open connection and refuses new ones (the target looks unreachable); ``restore()``."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.open = True
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="tcp-proxy")

    def start(self) -> "TcpProxy":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop).result(5)
        return self

    async def _handle(self, reader, writer):
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        def _cut():
            self.open = False
            for w in list(self._writers):
                with contextlib.suppress(Exception):
                    w.transport.abort()  # RST, as a network failure looks
            self._writers.clear()
        self._loop.call_soon_threadsafe(_cut)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "open", True)

    def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def worker_env(*, database_url: str, redis_url: str, simulator_url: str, **extra) -> dict:
    """The environment of a Procfile process in this test: the shipped settings, only the URLs of
    this test's database, Redis and simulator (never a lowered timeout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "ORDERS_"))}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, SIMULATOR_URL=simulator_url,
               SIMULATION_MODE="true", LOG_LEVEL=os.environ.get("WORKER_LOG_LEVEL", "INFO"), PYTHONUNBUFFERED="1")
    env.pop("CELERY_BROKER_URL", None)
    env.pop("CELERY_RESULT_BACKEND", None)
    env.update(extra)
    return env


def start_orders_worker(env: dict, log_path: Path, *, concurrency: int = 4) -> subprocess.Popen:
    """The Procfile's ``worker`` line (prefork pool, queues orders and default)."""
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tradeops", "worker", "-Q", "orders,default", "--concurrency",
         str(concurrency), "--without-gossip", "--without-mingle", "-n", f"orders-{time.monotonic_ns()}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(proc: subprocess.Popen, log_path: Path, timeout: float = 60.0) -> None:
    wait_for(lambda: b"ready." in log_path.read_bytes(), timeout, "the orders worker to be ready", procs=[proc])


def kill_group(proc: subprocess.Popen, sig=signals.SIGKILL) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signals.SIGKILL)
            proc.wait(10)
