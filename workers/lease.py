"""One active feed per Redis database: a lease on redis-py's ``Lock``, renewed while the feed runs.

Two feeds writing the same streams would interleave duplicate ticks and double every bar's volume
(``heroku ps:scale feed=2``, a second ``make run`` against the same Redis). The feed takes the lease
before it connects to the broker; a second feed waits as a hot standby and takes over within
``ttl_s`` of the first one dying. The lease's value names its holder (host, pid), so
``manage.py feed_status`` can say who is feeding.

Renewal failing because Redis is unreachable is not a loss: the feed keeps buffering and retries.
A lease found in another holder's hands (this process stalled longer than ``ttl_s`` and a standby
took over) is a loss: the feed must stop writing (:class:`LeaseLost`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import redis as redis_lib
from redis.exceptions import LockError, LockNotOwnedError

from tradeops.logging import get_logger

log = get_logger(__name__)


class LeaseLost(Exception):
    """Another holder has the lease: this process must stop writing."""


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(self, redis: redis_lib.Redis, key: str, ttl_s: float = 10.0, holder: str | None = None):
        self.redis = redis
        self.key = key
        self.ttl_s = ttl_s
        self.holder = holder or holder_id()
        self._lock = redis.lock(key, timeout=ttl_s, thread_local=False)
        self.held = False
        self.renew_every_s = ttl_s / 3

    def current_holder(self) -> str | None:
        try:
            raw = self.redis.get(self.key)
        except redis_lib.RedisError:
            return None
        return raw.decode() if isinstance(raw, bytes) else raw

    def try_acquire(self) -> bool:
        try:
            self.held = bool(self._lock.acquire(blocking=False, token=self.holder))
        except redis_lib.RedisError as exc:
            log.warning("lease_unreachable", key=self.key, error=type(exc).__name__)
            self.held = False
        return self.held

    def wait(self, stop: threading.Event) -> bool:
        """Block until the lease is ours (True) or ``stop`` is set (False); say who holds it."""
        announced = None
        while not stop.is_set():
            if self.try_acquire():
                log.info("lease_acquired", key=self.key, holder=self.holder)
                return True
            owner = self.current_holder()
            if owner != announced:
                log.warning("lease_standby", key=self.key, held_by=owner, holder=self.holder)
                announced = owner
            stop.wait(self.renew_every_s)
        return False

    def renew(self) -> bool:
        """Extend the lease to ``ttl_s`` from now. False: Redis unreachable (try again later).
        Raises :class:`LeaseLost` when another holder has it."""
        try:
            self._lock.reacquire()
            return True
        except LockNotOwnedError:
            # expired while Redis was away: take it back if nobody else did
            if self.try_acquire():
                log.warning("lease_reacquired_after_expiry", key=self.key, holder=self.holder)
                return True
            self.held = False
            raise LeaseLost(f"lease {self.key} is held by {self.current_holder()!r}") from None
        except redis_lib.RedisError as exc:
            log.warning("lease_renew_failed", key=self.key, error=type(exc).__name__)
            return False

    def release(self) -> None:
        if not self.held:
            return
        try:
            self._lock.release()
        except (LockError, redis_lib.RedisError):  # expired or Redis away: it lapses on its own
            pass
        self.held = False


class LeaseKeeper:
    """Renews a lease from the owner's loop: call :meth:`tick` often; it renews when due."""

    def __init__(self, lease: Lease):
        self.lease = lease
        self._next = time.monotonic() + lease.renew_every_s

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now < self._next:
            return
        ok = self.lease.renew()  # raises LeaseLost
        self._next = now + (self.lease.renew_every_s if ok else min(1.0, self.lease.renew_every_s))
