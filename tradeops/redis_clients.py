"""The one Redis client factory: every process's clients, by named profile.

A profile is the set of socket options that suits one kind of caller; the reason is in its
comment. ``shared(profile)`` returns one client per (profile, URL) per process (redis-py's
connection pool is thread-safe and re-created after a fork); ``new(profile)`` a client with a
pool of its own, for a caller that checks connections out itself (the feed's writer) or must not
share (a test's separate client).

Everything uses ``settings.REDIS_URL`` unless given another URL; a ``redis+sentinel://`` URL
gives a client of the master the sentinels name (:mod:`tradeops.redisconn`).
"""

from __future__ import annotations

from functools import lru_cache

import redis

from tradeops.redisconn import redis_from_url

PROFILES: dict[str, dict] = {
    # Tasks and commands: a hung Redis surfaces as an error within seconds, not as a stuck worker.
    "default": dict(socket_timeout=5.0, socket_connect_timeout=2.0),
    # The feed's writer: as "default", and a connection idle for 30 s is checked before reuse
    # (the writer keeps one connection for hours; an idle one may have been dropped by a proxy).
    "feed": dict(socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=30),
    # Order work: a broker call may wait on a lock or the rate limiter; checked like the feed's.
    "orders": dict(socket_timeout=5.0, socket_connect_timeout=3.0, health_check_interval=30),
    # Heartbeats and health checks: answer "down" within a second rather than hang a probe.
    "probe": dict(socket_timeout=1.0, socket_connect_timeout=1.0),
    # A web page: an unreachable Redis shows as "unavailable" on the page, not as a hang.
    "page": dict(socket_timeout=0.5, socket_connect_timeout=0.5),
}


def _url(url: str | None) -> str:
    if url:
        return url
    from django.conf import settings

    return settings.REDIS_URL


def new(profile: str = "default", url: str | None = None, **overrides) -> redis.Redis:
    """A client with a connection pool of its own."""
    try:
        options = PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown Redis profile {profile!r} (one of {', '.join(PROFILES)})") from None
    return redis_from_url(_url(url), **{**options, **overrides})


@lru_cache(maxsize=32)
def _shared(profile: str, url: str) -> redis.Redis:
    return new(profile, url)


def shared(profile: str = "default", url: str | None = None) -> redis.Redis:
    """The process's client for ``profile`` and ``url`` (created on first use)."""
    return _shared(profile, _url(url))
