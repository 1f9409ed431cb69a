"""How fast a wake-up reaches the analysis: a Celery task on a queue vs a Redis stream (issue 16).

    .venv/bin/python bench/wake_path.py [--n 300] [--gap-ms 20] [--redis-url redis://127.0.0.1:6379/6]

The event path's choice, measured in one run on the same Redis:

- **Celery**: ``send_task`` of a tiny task (``bench.wake_path.woken``) to a queue of its own, consumed
  by a real ``celery worker -c 1`` (prefork, as the Procfile's analysis worker) subprocess; the task
  records ``time.monotonic()`` on arrival.
- **stream**: ``XADD`` to a stream that a subprocess blocks on with ``XREAD BLOCK`` (what a
  dedicated analysis loop would do), recording ``time.monotonic()`` on arrival.

One-way latency sender → receiver (CLOCK_MONOTONIC is one clock for the host), p50/p95 over
``--n`` messages sent ``--gap-ms`` apart, and the sender's cost per message (the feed pays it on its
writer thread). Only keys ``bench:wake:*`` and the queue ``bench-wake`` are used, deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradeops.settings")

STREAM = "bench:wake:stream"
OUT = "bench:wake:out:{kind}"
QUEUE = "bench-wake"
TASK = "bench.wake_path.woken"

try:  # the worker imports this module (-I bench.wake_path) to register the task
    from celery import shared_task

    @shared_task(name=TASK, ignore_result=True)
    def woken(sent_mono: float) -> None:
        import redis
        from django.conf import settings

        now = time.monotonic()
        redis.Redis.from_url(settings.REDIS_URL).rpush(OUT.format(kind="celery"), json.dumps([sent_mono, now]))
except ImportError:  # pragma: no cover
    pass


def consumer(redis_url: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url, socket_timeout=5)
    last = "$"
    while True:
        got = r.xread({STREAM: last}, block=1000, count=100)
        now = time.monotonic()
        for _, entries in got:
            for entry_id, fields in entries:
                last = entry_id
                if fields.get(b"stop"):
                    return
                r.rpush(OUT.format(kind="stream"), json.dumps([float(fields[b"sent"]), now]))


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--gap-ms", type=float, default=20.0)
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/6"))
    ap.add_argument("--consumer", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ["REDIS_URL"] = args.redis_url
    if args.consumer:
        consumer(args.redis_url)
        return
    import django

    django.setup()
    import redis

    from tradeops.celery import app

    r = redis.Redis.from_url(args.redis_url)
    for key in (STREAM, OUT.format(kind="celery"), OUT.format(kind="stream"), QUEUE):
        r.delete(key)
    env = dict(os.environ, LOG_LEVEL="WARNING")
    procs = [
        subprocess.Popen([sys.executable, "-m", "celery", "-A", "tradeops", "worker", "-Q", QUEUE, "-c", "1",
                          "-I", "bench.wake_path", "-n", f"wake-{os.getpid()}@%h", "--without-gossip",
                          "--without-mingle", "--without-heartbeat", "-l", "WARNING"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, __file__, "--consumer", "--redis-url", args.redis_url], cwd=ROOT, env=env),
    ]
    results = {}
    try:
        # both receivers up: one message each until it arrives
        deadline = time.monotonic() + 60
        while r.llen(OUT.format(kind="celery")) == 0 and time.monotonic() < deadline:
            app.send_task(TASK, args=[time.monotonic()], queue=QUEUE, ignore_result=True)
            time.sleep(0.5)
        while r.llen(OUT.format(kind="stream")) == 0 and time.monotonic() < deadline:
            r.xadd(STREAM, {"sent": time.monotonic()})
            time.sleep(0.2)
        r.delete(OUT.format(kind="celery"), OUT.format(kind="stream"))
        for kind in ("celery", "stream"):
            cost = 0.0
            for _ in range(args.n):
                t = time.monotonic()
                if kind == "celery":
                    app.send_task(TASK, args=[t], queue=QUEUE, expires=1, ignore_result=True)
                else:
                    r.xadd(STREAM, {"sent": t}, maxlen=1000, approximate=True)
                cost += time.monotonic() - t
                time.sleep(args.gap_ms / 1000)
            key = OUT.format(kind=kind)
            deadline = time.monotonic() + 30
            while r.llen(key) < args.n and time.monotonic() < deadline:
                time.sleep(0.05)
            rows = [json.loads(x) for x in r.lrange(key, 0, -1)]
            lat = [(b - a) * 1000 for a, b in rows]
            results[kind] = (lat, cost / args.n * 1e6)
    finally:
        r.xadd(STREAM, {"stop": 1})
        procs[0].terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for key in (STREAM, OUT.format(kind="celery"), OUT.format(kind="stream"), QUEUE):
            r.delete(key)
    print(f"wake-up one-way latency, {args.n} messages {args.gap_ms:g} ms apart (load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
    for kind, (lat, cost_us) in results.items():
        print(f"  {kind:7} p50 {statistics.median(lat):6.2f} ms  p95 {pct(lat, 0.95):6.2f} ms  max {max(lat):7.2f} ms"
              f"  received {len(lat)}/{args.n}; sender cost {cost_us:.0f} us/message")
    if len(results) == 2:
        c, s = statistics.median(results["celery"][0]), statistics.median(results["stream"][0])
        print(f"  celery / stream p50: {c / s:.1f}x (difference {c - s:.2f} ms)")


if __name__ == "__main__":
    main()
