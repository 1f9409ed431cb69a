"""The account-state commands refuse bad arguments with a clear error."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError


@pytest.mark.parametrize("kw", [dict(duration=0), dict(every=-1), dict(max_age=0)])
def test_check_state_sync_refuses_bad_numbers(kw):
    with pytest.raises(CommandError):
        call_command("check_state_sync", **kw)


@pytest.mark.django_db
def test_check_state_sync_with_nothing_to_compare_passes(capsys):
    call_command("check_state_sync", duration=0.01, every=0.01, json=True)
    assert '"late_differences": 0' in capsys.readouterr().out


@pytest.mark.parametrize("kw", [dict(mode="sideways"), dict(threads=0), dict(threads=1000)])
def test_run_account_stream_refuses_bad_arguments(kw):
    with pytest.raises((CommandError, SystemExit)):
        call_command("run_account_stream", **kw)
