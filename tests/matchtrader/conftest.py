"""Fixtures: one real simulator per module (127.0.0.1, ephemeral port), faults reset per test."""

from __future__ import annotations

import itertools
import time

import pytest

from matchtrader.client import MatchTraderClient
from matchtrader.ratelimit import NoLimit
from matchtrader.simulator.faults import FaultConfig
from matchtrader.simulator.testing import running_simulator

_ids = itertools.count()


@pytest.fixture(scope="module")
def sim():
    with running_simulator(seed=7, tick_rate=20, heartbeat_s=1.0) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _reset_faults(request):
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").control.set_faults(**FaultConfig().to_dict())


@pytest.fixture
def account(sim):
    """A fresh simulator account: {email, password, systemUuid, tradingAccountId}."""
    email = f"user{next(_ids)}-{time.monotonic_ns()}@sim.test"
    acc = sim.control.create_account(email, "pw", balance=10000, leverage=100)
    return dict(acc, password="pw")


@pytest.fixture
def client(sim, account):
    c = MatchTraderClient(sim.url, account["email"], "pw", "0", rate_limiter=NoLimit(), timeout=(2, 5))
    yield c
    c.session.close()

