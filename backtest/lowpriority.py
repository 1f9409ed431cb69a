"""Run a command at the lowest CPU priority the kernel will actually honour (the Procfile's
``backtest`` worker): ``python -m backtest.lowpriority CMD ARGS...``.

Why not ``nice`` alone: with the kernel's autogroup scheduling (``kernel.sched_autogroup_enabled``,
on by default on desktop and many server kernels, and on this project's machines) CPU is shared
between *sessions* first, and a process's nice value only counts inside its own session. Process
managers (honcho, which ``make run`` uses) start every Procfile process in a session of its own,
so a ``nice -n 10`` sweep worker still got a full equal share next to the order workers
(measured: ``nice -n 10`` in its own session 1.89 vs 1.96 CPU-s of a plain process on one core;
with its autogroup at nice 19, 0.12 vs 3.72; ``bench/fanout_sweep.py``). So, when this process
leads its own session (it then owns the autogroup), the autogroup's nice is set to 19 as well;
when it does not (started by hand from a shell), the session is someone else's and only the
process nice applies. Where autogroups do not exist or apply (no ``/proc/self/autogroup``, a
cgroup of its own under systemd: give it a low ``CPUWeight``), this changes nothing.
"""

from __future__ import annotations

import os
import sys

AUTOGROUP_NICE = 19


def lower_autogroup(path: str = "/proc/self/autogroup") -> bool:
    """Set this session's autogroup to nice 19 if this process leads the session. True if done."""
    if os.getsid(0) != os.getpid():
        return False
    try:
        with open(path, "w") as f:
            f.write(str(AUTOGROUP_NICE))
        return True
    except OSError:  # no autogroup support, or not allowed: the process nice still applies
        return False


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m backtest.lowpriority COMMAND [ARGS...]")
    lower_autogroup()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
