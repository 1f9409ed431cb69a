"""The Procfile follows the Heroku conventions and every process can be stopped cleanly."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_process_types():
    procs = procfile()
    assert {"release", "web", "worker", "analysis", "beat", "sim", "feed", "flower"} <= set(procs)
    assert "migrate" in procs["release"]
    # a PaaS routes to 0.0.0.0:$PORT; make run sets WEB_HOST=127.0.0.1 (scripts/run.sh)
    assert re.search(r"--bind \$\{WEB_HOST:-0\.0\.0\.0\}:\$\{PORT(:-\d+)?\}", procs["web"])
    assert "--provision-from-db" in procs["sim"]


def test_long_running_processes_exec_so_sigterm_reaches_them():
    # honcho runs each line through /bin/sh (dash), which does not exec the last command: without
    # "exec" SIGTERM would kill the shell and orphan the real process.
    for name, command in procfile().items():
        if name != "release":
            assert "exec " in command, name


def test_flower_refuses_to_start_without_basic_auth():
    command = procfile()["flower"].replace("exec celery", "exec true")
    env = {"PATH": "/usr/bin:/bin"}
    refused = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "FLOWER_BASIC_AUTH" in refused.stderr
    allowed = subprocess.run(["sh", "-c", command], env={**env, "FLOWER_BASIC_AUTH": "u:p"}, capture_output=True)
    assert allowed.returncode == 0


def test_run_script_leaves_release_out_of_honcho():
    run = (ROOT / "scripts" / "run.sh").read_text()
    assert "grep -v '^release$'" in run and "migrate" in run and "seed_demo" in run and "collectstatic" in run
