"""Fixtures of the prop tests."""

import importlib

import pytest
from django.apps import apps


@pytest.fixture
def seeded(db):
    """The rows the data migrations create (the example profiles, the guard's beat entry), again:
    a transactional test elsewhere in a reused test database flushes them."""
    for name in ("prop.migrations.0002_default_and_example_profiles", "prop.migrations.0003_guard_beat"):
        module = importlib.import_module(name)
        (getattr(module, "forwards", None) or module.create)(apps, None)
