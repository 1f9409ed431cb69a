"""Waiting for an event in a test: poll a condition with a deadline, never sleep a fixed time."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 10.0, what: str = "condition", procs=(), interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes
    (AssertionError naming ``what``). ``procs``: subprocesses the wait depends on; one that exits
    fails the wait at once instead of at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for p in procs or ():
            if p.poll() is not None:
                raise AssertionError(f"{p.args[3:5]} exited with {p.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
