"""Worker and beat heartbeats: written by Celery signals, read by the healthcheck."""

from __future__ import annotations

import time
from celery import signals

from workers import heartbeat


class Obj:
    """A hashable stand-in for the Celery objects the signals carry (senders must be hashable)."""

    def __init__(self, **attrs):
        self.__dict__.update(attrs)


def test_worker_heartbeat_round_trip_and_clean_shutdown(redis_client, monkeypatch):
    monkeypatch.setattr(heartbeat, "_redis", lambda: redis_client)
    # an analysis worker: the order engine's own worker_ready hook (reconcile) ignores it
    consumer = Obj(hostname="analysis@box", task_consumer=Obj(queues=[Obj(name="analysis"), Obj(name="default")]))
    signals.worker_ready.send(sender=consumer)
    signals.heartbeat_sent.send(sender=Obj(eventer=Obj(hostname="analysis@box")))
    workers = heartbeat.read_workers(redis_client)
    assert workers["analysis@box"]["queues"] == ["analysis", "default"]
    assert abs(workers["analysis@box"]["at_ms"] - time.time() * 1000) < 5_000
    # a worker that vanished a day ago is pruned on read
    heartbeat.write_worker(redis_client, "gone@box", ["orders"], at_ms=1)
    assert "gone@box" not in heartbeat.read_workers(redis_client)
    assert not redis_client.hexists(heartbeat.WORKERS_KEY, "gone@box")
    signals.worker_shutdown.send(sender=None)
    assert heartbeat.read_workers(redis_client) == {}


def test_beat_heartbeat_only_after_beat_init(redis_client, monkeypatch):
    monkeypatch.setattr(heartbeat, "_redis", lambda: redis_client)
    monkeypatch.setattr(heartbeat, "_last_beat_write", 0.0)
    signals.before_task_publish.send(sender="signals.analyze_market")
    assert redis_client.get(heartbeat.BEAT_KEY) is None  # not a beat process: publishing says nothing
    try:
        signals.beat_init.send(sender=None)
        redis_client.delete(heartbeat.BEAT_KEY)
        monkeypatch.setattr(heartbeat, "_last_beat_write", 0.0)
        signals.before_task_publish.send(sender="signals.analyze_market")
        assert abs(int(redis_client.get(heartbeat.BEAT_KEY)) - time.time() * 1000) < 5_000
    finally:
        signals.before_task_publish.disconnect(heartbeat._on_beat_publish)
