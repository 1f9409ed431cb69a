"""Process heartbeats in Redis, read by ``dashboard.health`` (healthcheck, /healthz, dashboard).

- Celery workers: field ``<hostname>`` of the hash ``ops:hb:workers`` (a small JSON: time, pid,
  queues), refreshed on every ``worker-heartbeat`` event Celery sends anyway (every 2 s,
  ``heartbeat_sent`` signal) and removed on a clean shutdown. One hash, not a key per worker,
  so reading them is one HGETALL, never a SCAN of a keyspace full of task results; a worker
  that died without cleaning up shows as stale and is pruned after ``WORKER_PRUNE_S``.
- Celery beat: ``ops:hb:beat`` (epoch ms), written each time beat publishes a task (the analysis
  task goes out every second) and at start-up. Only the beat process registers this hook (on
  ``beat_init``), so a web process sending a task does not pass for beat.

Handlers never raise: a missing heartbeat shows in the healthcheck, a failing one must not break
the worker or beat.
"""

from __future__ import annotations

import json
import os
import time

import redis as redis_lib
from celery import signals as celery_signals

from tradeops import redis_clients

BEAT_KEY = "ops:hb:beat"
WORKERS_KEY = "ops:hb:workers"
WORKER_PRUNE_S = 24 * 3600
_BEAT_MIN_INTERVAL_S = 0.5  # at most two writes a second, however many tasks beat sends

_last_beat_write = 0.0


def _redis() -> redis_lib.Redis:
    return redis_clients.shared("probe")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def write_worker(client, hostname: str, queues: list[str], at_ms: int | None = None) -> None:
    payload = json.dumps({"at_ms": at_ms or _now_ms(), "pid": os.getpid(), "queues": sorted(queues)})
    client.hset(WORKERS_KEY, hostname, payload)


def write_beat(client, at_ms: int | None = None) -> None:
    client.set(BEAT_KEY, at_ms or _now_ms(), ex=24 * 3600)


def read_workers(client) -> dict[str, dict]:
    """hostname -> {at_ms, pid, queues} of every worker that reported (fresh or not: the caller
    judges the age). Entries older than WORKER_PRUNE_S are deleted on the way."""
    out, stale = {}, []
    now = _now_ms()
    for name, raw in client.hgetall(WORKERS_KEY).items():
        key = name.decode() if isinstance(name, bytes) else name
        try:
            record = json.loads(raw)
        except ValueError:
            stale.append(key)
            continue
        if now - int(record.get("at_ms", 0)) > WORKER_PRUNE_S * 1000:
            stale.append(key)
            continue
        out[key] = record
    if stale:
        client.hdel(WORKERS_KEY, *stale)
    return out


def remove_worker(client, hostname: str) -> None:
    client.hdel(WORKERS_KEY, hostname)


def _consumer_queues(consumer) -> list[str]:
    try:
        return [q.name for q in consumer.task_consumer.queues]
    except Exception:  # noqa: BLE001
        try:
            return list(consumer.app.amqp.queues.consume_from)
        except Exception:  # noqa: BLE001
            return []


_worker_queues: dict[str, list[str]] = {}


@celery_signals.worker_ready.connect(weak=False)
def _on_worker_ready(sender=None, **_kw):
    try:
        hostname = sender.hostname
        _worker_queues[hostname] = _consumer_queues(sender)
        write_worker(_redis(), hostname, _worker_queues[hostname])
    except Exception:  # noqa: BLE001
        pass


@celery_signals.heartbeat_sent.connect(weak=False)
def _on_heartbeat(sender=None, **_kw):
    try:
        hostname = sender.eventer.hostname
        write_worker(_redis(), hostname, _worker_queues.get(hostname, []))
    except Exception:  # noqa: BLE001
        pass


@celery_signals.worker_shutdown.connect(weak=False)
def _on_worker_shutdown(sender=None, **_kw):
    try:
        for hostname in list(_worker_queues):
            remove_worker(_redis(), hostname)
    except Exception:  # noqa: BLE001
        pass


def _on_beat_publish(sender=None, **_kw):
    global _last_beat_write
    now = time.monotonic()
    if now - _last_beat_write < _BEAT_MIN_INTERVAL_S:
        return
    _last_beat_write = now
    try:
        write_beat(_redis())
    except Exception:  # noqa: BLE001
        pass


@celery_signals.beat_init.connect(weak=False)
def _on_beat_init(sender=None, **_kw):
    celery_signals.before_task_publish.connect(_on_beat_publish, weak=False)
    try:
        write_beat(_redis())
    except Exception:  # noqa: BLE001
        pass
