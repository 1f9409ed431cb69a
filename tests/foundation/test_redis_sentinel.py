"""Redis URLs: plain and Sentinel (tradeops/redisconn.py), parsed and connected for real.

The sentinel test starts its own ``redis-server`` and a ``redis-server --sentinel`` on free
ports (the shared Redis on 6379 is never touched)."""

from __future__ import annotations

import subprocess

import pytest
from kombu import Connection

from tests.harness import PrivateRedis, free_port
from tests.waiting import wait_for
from tradeops.redisconn import (
    RedisUrlError,
    SentinelSpec,
    celery_url_and_options,
    parse_sentinel_url,
    redis_from_url,
)


def test_sentinel_url_parsed_into_hosts_master_db_and_password():
    spec = parse_sentinel_url("redis+sentinel://:s3cret@h1:26379,h2:26380,h3/mymaster/4", sentinel_password="")
    assert spec == SentinelSpec((("h1", 26379), ("h2", 26380), ("h3", 26379)), "mymaster", 4, "s3cret", None)
    assert parse_sentinel_url("sentinel://[::1]:5000/m", sentinel_password="sp") == SentinelSpec(
        (("::1", 5000),), "m", 0, None, "sp")


@pytest.mark.parametrize("url, message", [
    ("redis+sentinel://h1:26379", "master name"),
    ("redis+sentinel:///mymaster/0", "no sentinel host"),
    ("redis+sentinel://h1:port/mymaster", "port is not a number"),
    ("redis+sentinel://h1/mymaster/zero", "database must be a number"),
    ("redis+sentinel://:pw@h1/m/0/extra", "unexpected path"),
    ("redis://h1:6379/0", "not a sentinel URL"),
])
def test_bad_sentinel_urls_say_what_is_wrong_without_the_password(url, message):
    with pytest.raises(RedisUrlError, match=message) as err:
        parse_sentinel_url(url)
    assert "pw" not in str(err.value).replace("password", "")


def test_celery_gets_kombus_sentinel_form_and_master_name():
    url, options = celery_url_and_options("redis+sentinel://:pw@h1:26379,h2:26380/mymaster/3")
    assert url == "sentinel://:pw@h1:26379/3;sentinel://:pw@h2:26380/3"
    assert options["master_name"] == "mymaster"
    assert celery_url_and_options("redis://127.0.0.1:6379/2") == ("redis://127.0.0.1:6379/2", {})


@pytest.fixture
def sentinel_setup(tmp_path):
    master = PrivateRedis(appendonly=False).start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor tmaster 127.0.0.1 {master.port} 1\n"
                    "sentinel down-after-milliseconds tmaster 5000\n")
    proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        import redis

        probe = redis.Redis(port=port, socket_connect_timeout=0.2)

        def knows_master():
            try:
                return probe.sentinel_get_master_addr_by_name("tmaster")
            except redis.RedisError:
                return None
        wait_for(knows_master, 10, "the sentinel to monitor the master", procs=[proc])
        yield master, port
    finally:
        proc.terminate()
        proc.wait(10)
        master.stop()


def test_data_store_and_celery_broker_connect_through_a_real_sentinel(sentinel_setup):
    master, sentinel_port = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/tmaster/2"
    # the data store client finds the master through the sentinel
    client = redis_from_url(url, socket_timeout=2, socket_connect_timeout=2)
    client.set("probe", "via-sentinel")
    import redis

    direct = redis.Redis(port=master.port, db=2)
    assert direct.get("probe") == b"via-sentinel"
    # and kombu (Celery's broker) publishes and consumes through the same URL
    broker_url, options = celery_url_and_options(url)
    with Connection(broker_url, transport_options=options) as conn:
        queue = conn.SimpleQueue("sentinel-probe")
        queue.put({"n": 1})
        assert queue.get(timeout=5).payload == {"n": 1}
        queue.close()
    assert direct.exists("_kombu.binding.sentinel-probe") or direct.keys("*sentinel-probe*")
