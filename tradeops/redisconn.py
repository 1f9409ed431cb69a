"""One place that turns a Redis URL into a client, so a production deployment can fail over.

Why: a single Redis is the Celery broker, the market-data store, the token cache and the rate
limiter. With Redis Sentinel, a failed master is replaced by a replica within seconds, but only
clients that ask the sentinels where the master is follow it. Every Redis client of the project
is built through here (``redis_from_url``, called by :mod:`tradeops.redis_clients`), and the
Celery settings translate the same URL into kombu's
sentinel form (``celery_url_and_options``), so one ``REDIS_URL`` describes the deployment.

URL forms:

* ``redis://[:password@]host:port/db`` (and ``rediss://``, ``unix://``): a plain Redis.
* ``redis+sentinel://[:password@]host1:26379,host2:26379,host3:26379/<master name>[/<db>]``:
  the sentinels to ask, the monitored master's name and the database number (default 0). The
  password is the data node's; ``REDIS_SENTINEL_PASSWORD`` (environment) is the sentinels' own,
  if they require one. ``sentinel://`` is accepted as the same scheme.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis as redis_lib
from redis.sentinel import Sentinel

SENTINEL_SCHEMES = ("redis+sentinel", "sentinel")
DEFAULT_SENTINEL_PORT = 26379


class RedisUrlError(ValueError):
    """A Redis URL that cannot be used; the message says which part is wrong."""


@dataclass(frozen=True)
class SentinelSpec:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    password: str | None = None
    sentinel_password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str, sentinel_password: str | None = None) -> SentinelSpec:
    """``redis+sentinel://[:pw@]h1:p1,h2:p2/master[/db]`` → :class:`SentinelSpec` (clear errors)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise RedisUrlError(f"not a sentinel URL (scheme must be redis+sentinel://): {_redact(url)}")
    netloc, _, path = rest.partition("/")
    password = None
    if "@" in netloc:
        auth, _, netloc = netloc.rpartition("@")
        user, _, pw = auth.partition(":")
        password = unquote(pw) if pw else (unquote(user) or None)
    hosts = []
    for part in filter(None, netloc.split(",")):
        if part.startswith("["):  # [ipv6]:port
            host, _, port = part[1:].partition("]")
            port = port.lstrip(":")
        else:
            host, _, port = part.partition(":")
        try:
            hosts.append((host, int(port) if port else DEFAULT_SENTINEL_PORT))
        except ValueError:
            raise RedisUrlError(f"sentinel port is not a number in {_redact(url)}") from None
    if not hosts:
        raise RedisUrlError(f"no sentinel host in {_redact(url)}")
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise RedisUrlError(f"the master name is missing (…/<master name>/<db>) in {_redact(url)}")
    db = 0
    if len(segments) > 1:
        try:
            db = int(segments[1])
        except ValueError:
            raise RedisUrlError(f"the database must be a number in {_redact(url)}") from None
    if len(segments) > 2:
        raise RedisUrlError(f"unexpected path after the database in {_redact(url)}")
    if sentinel_password is None:
        sentinel_password = os.environ.get("REDIS_SENTINEL_PASSWORD") or None
    return SentinelSpec(tuple(hosts), unquote(segments[0]), db, password, sentinel_password or None)


def redis_from_url(url: str, **kwargs) -> redis_lib.Redis:
    """A client for ``url``: ``Redis.from_url`` for a plain URL; for a sentinel URL, the master
    as the sentinels name it (re-asked on every reconnect, so a fail-over is followed)."""
    if not is_sentinel_url(url):
        return redis_lib.Redis.from_url(url, **kwargs)
    spec = parse_sentinel_url(url)
    timeouts = {k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout") if k in kwargs}
    sentinel = Sentinel(list(spec.sentinels), sentinel_kwargs={"password": spec.sentinel_password, **timeouts},
                        **timeouts)
    return sentinel.master_for(spec.master, db=spec.db, password=spec.password, **kwargs)


def celery_url_and_options(url: str) -> tuple[str, dict]:
    """The URL and transport options kombu / Celery's Redis backend want for ``url``:
    ``sentinel://:pw@h1:p1/db;sentinel://:pw@h2:p2/db`` plus ``master_name`` (and the sentinels'
    password in ``sentinel_kwargs``). A plain URL is returned as is, with no options."""
    if not is_sentinel_url(url):
        return url, {}
    spec = parse_sentinel_url(url)
    auth = f":{spec.password}@" if spec.password else ""
    joined = ";".join(f"sentinel://{auth}{_host(h)}:{p}/{spec.db}" for h, p in spec.sentinels)
    options: dict = {"master_name": spec.master}
    if spec.sentinel_password:
        options["sentinel_kwargs"] = {"password": spec.sentinel_password}
    return joined, options


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _redact(url: str) -> str:
    """The URL without its password (error messages end up in logs)."""
    try:
        parts = urlsplit(url.replace(",", "_"))  # urlsplit copes with one host only
    except ValueError:
        return "<unparseable URL>"
    if parts.password:
        return url.replace(parts.password, "***")
    return url
