"""workers.stopping: SIGTERM / SIGINT set the command's stop Event and nothing else."""

from __future__ import annotations

import signal

import pytest

from workers.stopping import StopOnSignal


@pytest.fixture
def restore_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sets_the_stop_and_is_named_once(restore_handlers, sig):
    stopper = StopOnSignal().install()
    assert not stopper.event.is_set() and stopper.received is None
    signal.raise_signal(sig)
    assert stopper.event.is_set()
    assert stopper.received == sig.name
    signal.raise_signal(signal.SIGINT if sig == signal.SIGTERM else signal.SIGTERM)
    assert stopper.received == sig.name, "the first signal is the one reported"


def test_the_handler_writes_nothing(restore_handlers, capsys, caplog):
    stopper = StopOnSignal().install()
    signal.raise_signal(signal.SIGTERM)
    out, err = capsys.readouterr()
    assert stopper.event.is_set() and (out, err) == ("", "") and not caplog.records
