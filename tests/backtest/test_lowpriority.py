"""The sweep worker's priority wrapper (``backtest.lowpriority``): in a session of its own (as
honcho starts every Procfile process) its autogroup gets nice 19, else the session is left alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroup scheduling")


def autogroup_seen_by_wrapped_command(new_session: bool) -> str:
    out = subprocess.run([sys.executable, "-m", "backtest.lowpriority", "cat", "/proc/self/autogroup"], cwd=ROOT,
                         capture_output=True, text=True, check=True, start_new_session=new_session, timeout=30)
    return out.stdout.strip()


def test_in_its_own_session_the_command_runs_in_an_autogroup_at_nice_19():
    assert autogroup_seen_by_wrapped_command(new_session=True).endswith("nice 19")


def test_in_someone_elses_session_the_autogroup_is_left_alone():
    mine = Path("/proc/self/autogroup").read_text().strip()
    assert autogroup_seen_by_wrapped_command(new_session=False) == mine
    assert Path("/proc/self/autogroup").read_text().strip() == mine
