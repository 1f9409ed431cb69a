"""Shared fixtures: the real Redis and PostgreSQL, never stand-ins.

Several test runs can share one machine (developers side by side, CI): each run picks its own
Redis database with REDIS_URL and its own test database with TEST_DATABASE_NAME.
"""

from __future__ import annotations

import pytest
import redis as redis_lib
from django.conf import settings


@pytest.fixture
def redis_client():
    """A real Redis connection on the run's database, emptied before and after the test."""
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
