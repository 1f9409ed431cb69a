"""Fixtures of the analysis service/task tests (helpers in ``tests/signals/fixtures.py``).

Only the service/task/e2e/admin tests use them; the pure analysis tests need none.
"""

from __future__ import annotations

import pytest

from .fixtures import TICK_SIZE, Market


@pytest.fixture
def market(redis_client):
    m = Market(redis_client)
    yield m
    m.close()


@pytest.fixture
def symbol_factory(db):
    from tests.factories import make_symbol

    def make(name: str, **kw):
        kw.setdefault("tick_size", TICK_SIZE)
        return make_symbol(name, **kw)

    return make
