"""Choose this process's Prometheus multiprocess directory BEFORE prometheus_client is imported
(the client picks its value store at import time from ``PROMETHEUS_MULTIPROC_DIR``).

Each process type gets its own directory, ``METRICS_DIR/<role>``, so the web's ``/metrics``
aggregates exactly its gunicorn workers, and an orders worker's port exactly its prefork
children — never another process type's numbers twice. The role comes from the command line:

==================================================  ============================================
command                                             role
==================================================  ============================================
gunicorn …                                          web
celery … worker -n orders@%h (the -n name's prefix)  orders (analysis, ops, … likewise)
celery … beat                                       beat
manage.py run_feed                                  feed
anything else (tests, manage.py shell, migrate)     none: metrics stay in-process, nothing served
==================================================  ============================================

A ``PROMETHEUS_MULTIPROC_DIR`` already in the environment (inherited by a forked child, or set by
the operator) is kept as it is. ``METRICS_ROLE`` overrides the detection.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def detect_role(argv: list[str]) -> str | None:
    explicit = os.environ.get("METRICS_ROLE")
    if explicit:
        return explicit
    prog = Path(argv[0]).name if argv else ""
    if prog == "__main__.py":  # python -m celery / python -m gunicorn
        prog = Path(argv[0]).parent.name
    args = argv[1:]
    if prog == "gunicorn" or (prog.startswith("python") and args[:2] == ["-m", "gunicorn"]):
        return "web"
    if prog == "celery" or "celery" in args[:3]:
        if "worker" in args:
            for i, a in enumerate(args):
                name = a[len("--hostname="):] if a.startswith("--hostname=") else (
                    args[i + 1] if a in ("-n", "--hostname") and i + 1 < len(args) else None)
                if name:
                    return name.split("@", 1)[0] or "worker"
            return "worker"
        if "beat" in args:
            return "beat"
        return None
    if prog == "manage.py" and args[:1] == ["run_feed"]:
        return "feed"
    return None


def default_base() -> Path:
    """``$TMPDIR/tradeops-metrics-<uid>/<deployment>``: one directory per checkout and Redis
    database, so two systems on one host (two developers, a test run next to ``make run``) never
    share — and never clear — each other's files."""
    import hashlib

    deployment = f"{Path.cwd()}|{os.environ.get('REDIS_URL', '')}|{os.environ.get('DATABASE_URL', '')}"
    digest = hashlib.sha256(deployment.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tradeops-metrics-{os.getuid()}" / digest


def configure(argv: list[str] | None = None) -> str | None:
    """Set PROMETHEUS_MULTIPROC_DIR for this process (and its children). -> the role, or None."""
    argv = sys.argv if argv is None else argv
    role = detect_role(argv)
    os.environ["TRADEOPS_METRICS_ROLE"] = role or ""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") or not role:
        return role
    if os.environ.get("METRICS_ENABLED", "true").lower() in ("0", "false", "no", "off"):
        return None
    base = Path(os.environ.get("METRICS_DIR") or default_base())
    path = base / role
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        # Imported already (the celery CLI loads Flower's command plugin, which imports it): the
        # metrics created from now on (ours) must still use the multiprocess value store.
        values.ValueClass = values.get_value_class()
    return role


def clear_stale(keep_pid: int | None = None) -> int:
    """Delete the metric files of earlier runs of this process type (called by the process type's
    master at start: gunicorn ``on_starting``, Celery ``worker_init``, beat, feed). -> files removed."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path or not os.path.isdir(path):
        return 0
    keep = f"_{keep_pid or os.getpid()}.db"
    removed = 0
    for f in Path(path).glob("*.db"):
        if not f.name.endswith(keep):
            f.unlink(missing_ok=True)
            removed += 1
    return removed
