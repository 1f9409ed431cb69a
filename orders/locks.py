"""The per-account lock that serialises risk check + submit (and reconciliation) for one account.

A PostgreSQL *session-level advisory lock* keyed by the account id, rather than
``select_for_update``: a row lock lives only as long as its transaction, and our "submitted" state
must be COMMITTED before the broker call (so a worker killed mid-call leaves evidence for the next
delivery). Holding a transaction open across the HTTP call would roll that evidence back on a
crash. An advisory lock is held by the database session instead: it spans several committed
statements, and if the worker process dies (SIGKILL) the connection drops and PostgreSQL releases
the lock at once -- no lease to expire, unlike a Redis lock with a TTL.
"""

from __future__ import annotations

import contextlib
import time

from django.db import connection

# First key of the two-int advisory lock namespace: "orders" accounts (arbitrary constant).
LOCK_NAMESPACE = 0x0DE5


class AccountLockTimeout(Exception):
    def __init__(self, account_id: int, waited: float):
        super().__init__(f"account {account_id} lock not acquired within {waited:.1f}s")
        self.account_id = account_id


@contextlib.contextmanager
def account_lock(account_id: int, wait_s: float = 20.0, poll_s: float = 0.01):
    """Hold the account's advisory lock for the block; raise AccountLockTimeout after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    delay = poll_s
    with connection.cursor() as cur:
        while True:
            cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, int(account_id)])
            if cur.fetchone()[0]:
                break
            if time.monotonic() >= deadline:
                raise AccountLockTimeout(account_id, wait_s)
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
    try:
        yield
    finally:
        try:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, int(account_id)])
        except Exception:  # connection gone: the server released the lock with the session
            connection.close()
