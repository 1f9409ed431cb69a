"""SIGTERM / SIGINT for the long-running commands (``run_feed``, ``run_account_stream``).

The handler only records the signal and sets an Event; the command logs what it received once
the stop is under way. Nothing else happens inside a signal handler: it runs between two
bytecodes of the main thread, wherever that thread is. A log line there can meet the main
thread half-way through its own write to stdout (``BufferedWriter`` refuses the re-entrant
write; logging then prints a traceback instead of the line); a query there can wait forever on
a lock the interrupted frame holds (beat hung that way until SIGKILL: ``tradeops.celery.Beat``).
"""

from __future__ import annotations

import signal
import threading


class StopOnSignal:
    """``StopOnSignal().install()``: ``.event`` is set by SIGTERM or SIGINT; ``.received`` names
    the first signal (None until one comes). Install from the main thread."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._signum: int | None = None

    def install(self) -> StopOnSignal:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    def _on_signal(self, signum, _frame) -> None:
        if self._signum is None:
            self._signum = signum
        self.event.set()

    @property
    def received(self) -> str | None:
        return signal.Signals(self._signum).name if self._signum is not None else None
