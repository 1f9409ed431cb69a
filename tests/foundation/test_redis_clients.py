"""The one Redis client factory: named profiles, one shared client per profile and URL."""

import pytest
from django.conf import settings

from tradeops import redis_clients


def test_profiles_set_the_socket_timeouts_and_talk_to_the_configured_redis():
    page = redis_clients.new("page")
    kwargs = page.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.5 and kwargs["socket_connect_timeout"] == 0.5
    assert page.ping()
    assert redis_clients.new("feed").connection_pool.connection_kwargs["health_check_interval"] == 30
    assert redis_clients.new("default").connection_pool.connection_kwargs["db"] == int(settings.REDIS_URL.rsplit("/", 1)[1])


def test_shared_is_one_client_per_profile_and_url_new_is_always_fresh():
    assert redis_clients.shared("probe") is redis_clients.shared("probe", settings.REDIS_URL)
    assert redis_clients.shared("probe") is not redis_clients.shared("default")
    assert redis_clients.new("probe") is not redis_clients.new("probe")


def test_an_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown Redis profile 'fast'.*default"):
        redis_clients.new("fast")
