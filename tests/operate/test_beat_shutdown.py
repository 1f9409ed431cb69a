"""Beat stops on SIGTERM within the supervisor's grace period, whatever it was doing.

honcho (``make run``) and Heroku send SIGKILL a few seconds after SIGTERM. A beat that does not
exit by then loses its last schedule save and, under ``make run``, fails the whole stop. Found
by CI: the smoke run's beat was SIGKILLed once when the SIGTERM came while its tick was waiting
on PostgreSQL. The test makes that moment certain: it holds a lock on the table the
DatabaseScheduler reads at every tick, so the tick is inside a query when the signal comes.
"""

from __future__ import annotations

import contextlib
import signal as os_signal
import subprocess
import sys

import psycopg
import pytest
from django.db import connection

from tests.signals.test_beat_e2e import ROOT, only_the_analysis_beat_entry, subprocess_env
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# what honcho waits between SIGTERM and SIGKILL (honcho.manager.KILL_WAIT)
SUPERVISOR_GRACE_S = 5


# beat's sessions are told apart from every other one in the test database (this test's, the
# locker's, any left by earlier tests in the same run) by their application name
BEAT_APPLICATION_NAME = "tradeops-beat-under-test"


def _beat_waiting_on_a_lock() -> dict | None:
    with connection.cursor() as cur:
        cur.execute("SELECT pid, query FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                    [BEAT_APPLICATION_NAME])
        row = cur.fetchone()
    return {"pid": row[0], "query": row[1]} if row else None


@pytest.mark.parametrize("moment", ["setting_up", "ticking"])
def test_sigterm_while_beat_waits_on_postgresql_stops_it_cleanly(tmp_path, moment):
    """``setting_up``: the table is locked before beat starts, so the scheduler's set-up is
    inside its read when the signal comes (Celery's handler deadlocked there, every time: it
    built a second scheduler whose first query waited for the connection lock the interrupted
    query held). ``ticking``: locked after the first task is sent, so it is a tick's check for
    schedule changes that waits."""
    only_the_analysis_beat_entry()
    db = connection.settings_dict["NAME"]
    cmd = [sys.executable, "-m", "celery", "-A", "tradeops", "beat", "-S",
           "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile=", "-l", "INFO"]
    log_path = tmp_path / "beat.log"
    log = open(log_path, "wb")
    locker = psycopg.connect(host="127.0.0.1", user="postgres", dbname=db)
    lock = "LOCK TABLE django_celery_beat_periodictasks IN ACCESS EXCLUSIVE MODE"
    beat = None
    try:
        if moment == "setting_up":
            locker.execute(lock)
        env = subprocess_env()
        env["DATABASE_URL"] += f"?application_name={BEAT_APPLICATION_NAME}"
        beat = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if moment == "ticking":
            wait_for(lambda: b"Sending due task" in log_path.read_bytes(), 60, "beat's first sent task", [beat])
            locker.execute(lock)
        blocked = wait_for(_beat_waiting_on_a_lock, 60,
                           f"beat waiting on the locked table ({moment})", [beat])
        assert "django_celery_beat_periodictasks" in blocked["query"], blocked
        beat.send_signal(os_signal.SIGTERM)
        # the handler runs now, while the query still waits: give it the time to finish the stop
        # without the table, or to wait for the lock (then the release below lets it go on)
        with contextlib.suppress(subprocess.TimeoutExpired):
            beat.wait(1)
        locker.rollback()
        try:
            rc = beat.wait(SUPERVISOR_GRACE_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"beat still running {SUPERVISOR_GRACE_S} s after the lock was released:\n"
                                 + log_path.read_text(errors="replace")[-3000:]) from None
        assert rc == 0, log_path.read_text(errors="replace")[-3000:]
    finally:
        locker.close()
        if beat is not None and beat.poll() is None:
            beat.kill()
            beat.wait(5)
        log.close()
